"""Task losses as defined in the BMTAS supplement (A) and Learning to Branch (4.1, 4.2).

Every loss is a mean over the *valid* label entries of the batch (normals: the channel sum averaged over
valid pixels, as in the reference code) (ignore value 255, zero depth, zero
normal vector, NaN regression target are "no label here"). When the batch holds no valid label for the
task the loss is exactly zero and still attached to the graph (``pred.sum() * 0``), so a multi-task
step never sees NaN from an unlabelled task and ``backward()`` still works.

Padding: dense predictions may be larger than the original label (evaluation pads to the input size);
loaders fill the padded label region with 255 (0 for depth and normals), so it is ignored here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def _zero(pred: torch.Tensor) -> torch.Tensor:
    """A graph-attached exact zero: the loss of a batch without a valid label."""
    return pred.sum() * 0.0


def _mean_over(loss, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``loss(pred[V], target[V])`` (a mean) over the entries ``V = valid``; :func:`_zero` when there are none."""
    if not valid.any():
        return _zero(pred)
    return loss(pred[valid], target[valid].float())


def binary_valid(target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Valid pixels of a {0, 1} map: not ``ignore_index`` and finite."""
    return (target != ignore_index) & torch.isfinite(target)


def depth_valid(target: torch.Tensor) -> torch.Tensor:
    """Valid depth pixels: positive, finite, not the 255 padding value."""
    return (target > 0) & torch.isfinite(target) & (target != IGNORE_INDEX)


def normals_valid(target: torch.Tensor) -> torch.Tensor:
    """Valid normal pixels ``[B, 1, H, W]``: finite, not the zero vector, not 255 padding."""
    finite = torch.isfinite(target).all(1, keepdim=True)
    t = torch.where(torch.isfinite(target), target, torch.zeros_like(target))
    return finite & (t.abs().sum(1, keepdim=True) > 0) & (t != IGNORE_INDEX).all(1, keepdim=True)


def cross_entropy(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel-wise cross-entropy over labelled pixels (semseg, human parts).

    ``L = -1/|V| Σ_{p∈V} log softmax(x_p)[y_p]`` with ``V`` the pixels whose label is not
    ``ignore_index``. ``pred``: logits ``[B, C, H, W]``; ``target``: ``int64 [B, H, W]``.

    >>> round(float(cross_entropy(torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 255]]]))), 4)  # log 2
    0.6931
    """
    target = target.long()
    if not (target != ignore_index).any():
        return _zero(pred)
    return F.cross_entropy(pred, target, ignore_index=ignore_index)


def balanced_bce(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Class-balanced binary cross-entropy (saliency), balanced over the whole batch.

    With ``w = #negatives / #valid`` over the batch,
    ``L = -1/|V| Σ_{p∈V} [w · y log σ(x) + (1 - w)(1 - y) log(1 - σ(x))]``, so the rarer class weighs
    more (the ASTMT/BMTAS ``BalancedCrossEntropyLoss``). ``target``: ``[B, 1, H, W]`` in {0, 1}, 255 ignored.

    >>> # one positive, three negatives, all logits 0: w = 3/4, L = (3/4 + 3 · 1/4) · log 2 / 4 = 0.2599
    >>> round(float(balanced_bce(torch.zeros(1, 1, 2, 2), torch.tensor([[[[1., 0.], [0., 0.]]]]))), 4)
    0.2599
    """
    valid = binary_valid(target, ignore_index)
    if not valid.any():
        return _zero(pred)
    y = target[valid].float()
    w = 1.0 - y.mean()
    weight = torch.where(y > 0.5, w, 1.0 - w)
    return F.binary_cross_entropy_with_logits(pred[valid], y, weight=weight)


def weighted_bce(
    pred: torch.Tensor, target: torch.Tensor, pos_weight: float = 0.95, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Weighted binary cross-entropy for edges with a fixed positive weight.

    ``L = -1/|V| Σ_{p∈V} [w+ · y log σ(x) + (1 - w+)(1 - y) log(1 - σ(x))]`` with ``w+ = pos_weight``
    (0.95 on PASCAL-Context, 0.8 on NYUD-v2, BMTAS supplement A).

    >>> # one positive, one negative, logits 0: L = (0.95 + 0.05) · log 2 / 2
    >>> round(float(weighted_bce(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1., 0.]]]]))), 4)
    0.3466
    """
    valid = binary_valid(target, ignore_index)
    if not valid.any():
        return _zero(pred)
    y = target[valid].float()
    weight = torch.where(y > 0.5, pos_weight, 1.0 - pos_weight)
    return F.binary_cross_entropy_with_logits(pred[valid], y, weight=weight)


def normals_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between unit-normalised predicted normals and the label, summed over the 3 channels and
    averaged over valid *pixels* (the BMTAS reference code's reduction; ω = 10 was tuned on this scale).

    ``L = 1/|V| Σ_{p∈V} Σ_c |x_p/‖x_p‖ - n_p|_c``; a pixel is valid when its label is finite and not
    the zero vector (nor the 255 padding value).

    >>> pred = torch.tensor([[[[2.0]], [[0.0]], [[0.0]]]])        # normalises to (1, 0, 0)
    >>> float(normals_l1(pred, torch.tensor([[[[0.0]], [[1.0]], [[0.0]]]])))  # 1 + 1 + 0
    2.0
    """
    valid = normals_valid(target)
    if not valid.any():
        return _zero(pred)
    unit = F.normalize(pred, dim=1)
    mask = valid.expand_as(pred)
    return F.l1_loss(unit[mask], target[mask].float(), reduction="sum") / valid.sum()


def depth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 depth loss ``1/|V| Σ_{p∈V} |x_p - d_p|`` over pixels with a valid depth (``d > 0``, finite).

    >>> float(depth_l1(torch.tensor([[[[1.0, 5.0]]]]), torch.tensor([[[[3.0, 0.0]]]])))  # 0 = invalid
    2.0
    """
    return _mean_over(F.l1_loss, pred, target, depth_valid(target))


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L2 loss (mean squared error) of the Learning to Branch synthetic regression tasks.

    ``L = 1/|V| Σ_{i∈V} (x_i - y_i)²`` over the finite target entries (NaN marks a missing label).

    >>> float(mse(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[3.0, 2.0, float("nan")]])))
    2.0
    """
    target = target.reshape(pred.shape)
    return _mean_over(F.mse_loss, pred, target, torch.isfinite(target))


def binary_bce(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Binary cross-entropy of one attribute (CelebA, one such loss per attribute, equal weights).

    ``L = -1/|V| Σ_{i∈V} [y log σ(x) + (1 - y) log(1 - σ(x))]``; labels are 0/1, ``ignore_index`` skipped.

    >>> round(float(binary_bce(torch.zeros(2, 1), torch.tensor([1.0, 0.0]))), 4)  # log 2
    0.6931
    """
    target = target.reshape(pred.shape)
    return _mean_over(F.binary_cross_entropy_with_logits, pred, target, binary_valid(target, ignore_index))


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine-similarity loss of surface normals (Learning to Branch, Taskonomy): ``1 - mean cos``.

    ``L = 1 - 1/|V| Σ_{p∈V} ⟨x_p, n_p⟩ / (‖x_p‖ ‖n_p‖)`` over the pixels whose label is not the zero
    vector (padding); the label need not be unit length.

    >>> pred = torch.tensor([[[[1.0, 1.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])   # (1,0,0) and (1,1,0)/√2
    >>> round(float(cosine_loss(pred, torch.tensor([[[[2.0, 0.0]], [[0.0, 3.0]], [[0.0, 0.0]]]]))), 4)
    0.1464
    """
    valid = normals_valid(target)[:, 0]
    if not valid.any():
        return _zero(pred)
    t = torch.where(torch.isfinite(target), target, torch.zeros_like(target)).float()
    cos = F.cosine_similarity(pred, t, dim=1, eps=1e-8)
    return 1.0 - cos[valid].mean()


def l1_finite(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 loss ``1/|V| Σ_{p∈V} |x_p - y_p|`` over the finite label entries (NaN = no label, e.g. padding).

    Learning to Branch's keypoint and edge losses on Taskonomy (labels normalised to about [-1, 1]).

    >>> float(l1_finite(torch.tensor([[[[0.5, 2.0]]]]), torch.tensor([[[[-0.5, float("nan")]]]])))
    1.0
    """
    target = target.reshape(pred.shape)
    return _mean_over(F.l1_loss, pred, target, torch.isfinite(target))
