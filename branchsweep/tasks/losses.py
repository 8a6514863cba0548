"""Task losses as defined in the BMTAS supplement (A) and Learning to Branch (4.1, 4.2).

Every loss returns a scalar that is exactly zero (and still attached to the graph) when the batch holds
no valid label for the task, so a multi-task step never sees NaN from an unlabelled task.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def _zero(pred: torch.Tensor) -> torch.Tensor:
    return pred.sum() * 0.0


def cross_entropy(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel-wise cross-entropy over labelled pixels (semseg, human parts); ``ignore_index`` is skipped."""
    target = target.long()
    if not (target != ignore_index).any():
        return _zero(pred)
    return F.cross_entropy(pred, target, ignore_index=ignore_index)


def balanced_bce(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Class-balanced binary cross-entropy (saliency).

    With ``w = #negatives / #valid`` the loss is ``-(w · y log σ(x) + (1 - w)(1 - y) log(1 - σ(x)))``
    averaged over valid pixels, so the rarer class weighs more.
    """
    valid = target != ignore_index
    if not valid.any():
        return _zero(pred)
    y = target[valid].float()
    x = pred[valid]
    w = 1.0 - y.mean()
    weight = torch.where(y > 0.5, w, 1.0 - w)
    return F.binary_cross_entropy_with_logits(x, y, weight=weight)


def weighted_bce(
    pred: torch.Tensor, target: torch.Tensor, pos_weight: float = 0.95, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Weighted binary cross-entropy for edges: positives weigh ``pos_weight``, negatives ``1 - pos_weight``."""
    valid = target != ignore_index
    if not valid.any():
        return _zero(pred)
    y = target[valid].float()
    weight = torch.where(y > 0.5, pos_weight, 1.0 - pos_weight)
    return F.binary_cross_entropy_with_logits(pred[valid], y, weight=weight)


def normals_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between unit-normalised predicted normals and the label, over valid pixels.

    A pixel is valid when its label is not the zero vector (and not ``ignore_index``).
    """
    valid = (target.abs().sum(1, keepdim=True) > 0) & (target != IGNORE_INDEX).all(1, keepdim=True)
    if not valid.any():
        return _zero(pred)
    unit = F.normalize(pred, dim=1)
    mask = valid.expand_as(pred)
    return F.l1_loss(unit[mask], target[mask].float())


def depth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 depth loss over pixels with a valid (non-zero, finite) depth label."""
    valid = (target > 0) & torch.isfinite(target) & (target != IGNORE_INDEX)
    if not valid.any():
        return _zero(pred)
    return F.l1_loss(pred[valid], target[valid].float())


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error (L2) for the synthetic regression tasks of Learning to Branch."""
    return F.mse_loss(pred, target.float())


def binary_bce(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Binary cross-entropy for one attribute (CelebA); labels are 0/1, ``ignore_index`` skipped."""
    target = target.reshape(pred.shape)
    valid = target != ignore_index
    if not valid.any():
        return _zero(pred)
    return F.binary_cross_entropy_with_logits(pred[valid], target[valid].float())
