"""Metrics accumulated over a whole evaluation set (never averaged per batch).

Every metric is an accumulator: ``update(pred, target)`` per batch adds set-level sufficient statistics
(counts, sums, histograms), ``compute()`` turns them into numbers once. Splitting the set into batches
differently therefore gives the same result. Predictions arrive as the network outputs them (logits;
``sigmoid`` is applied here for saliency and edges); labels follow :mod:`branchsweep.data.base`, and
label regions marked invalid (255, zero depth, zero normal) — e.g. the padding around an image that was
padded to the input size — are left out, so scoring happens on the original image region.

The definitions follow the evaluation code of ASTMT/MTI-Net that BMTAS reports with; see
``docs/metrics.md`` for the per-task summary.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from functools import cache
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F

from branchsweep.errors import ConfigError, DataError
from branchsweep.tasks.losses import IGNORE_INDEX, binary_valid, depth_valid, normals_valid


def _as_thresholds(thresholds: int | Sequence[float], name: str) -> torch.Tensor:
    """``n`` evenly spaced thresholds strictly inside (0, 1) (``k/(n+1)``, as BSDS) or explicit values."""
    if isinstance(thresholds, int):
        if thresholds < 1:
            raise ConfigError(f"{name}: the number of thresholds must be at least 1, got {thresholds}")
        return torch.arange(1, thresholds + 1, dtype=torch.float64) / (thresholds + 1)
    values = torch.as_tensor(list(thresholds), dtype=torch.float64)
    if values.numel() == 0 or not ((values > 0) & (values < 1)).all():
        raise ConfigError(f"{name}: thresholds must be a non-empty list of values in (0, 1)")
    return values


class ConfusionMIoU:
    """Mean intersection-over-union from a confusion matrix accumulated over the set.

    ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``, ``mIoU = 100 · mean_c IoU_c`` over the classes that occur in
    the labels or the predictions of the set (a class absent from both has no defined IoU). Pixels
    labelled ``ignore_index`` are left out.

    >>> m = ConfusionMIoU(2)
    >>> m.update(torch.tensor([[[0, 1, 1]]]), torch.tensor([[[0, 1, 0]]]))  # IoU 1/2 and 1/2
    >>> m.compute()
    {'mIoU': 50.0}
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: logits ``[B, C, H, W]`` or a label map ``[B, H, W]``; ``target``: ``[B, H, W]``."""
        label = pred.argmax(1) if pred.dim() == target.dim() + 1 else pred
        valid = target != self.ignore_index
        y = target[valid].long().cpu()
        bad = (y < 0) | (y >= self.num_classes)
        if bad.any():
            raise DataError(
                f"label value {int(y[bad][0])} is outside 0..{self.num_classes - 1} and is not the ignore "
                f"value {self.ignore_index}"
            )
        idx = y * self.num_classes + label[valid].long().cpu()
        self.confusion += torch.bincount(idx, minlength=self.num_classes**2).view(self.num_classes, -1)

    def compute(self) -> dict[str, float]:
        c = self.confusion.double()
        tp = c.diag()
        denom = c.sum(0) + c.sum(1) - tp
        present = denom > 0
        miou = (tp[present] / denom[present]).mean().item() if present.any() else float("nan")
        return {"mIoU": 100.0 * miou}


class AngularError:
    """Surface-normal angular error in degrees over every valid pixel of the set.

    ``e_p = acos(⟨x_p/‖x_p‖, n_p/‖n_p‖⟩)`` in degrees; reported: ``mean``, ``median`` and the % of
    pixels with ``e < 11.25``, ``< 22.5``, ``< 30``. The mean and the percentages are exact; the median
    comes from a histogram with ``resolution``-degree bins (exact to ``resolution / 2``), so a full
    PASCAL-Context evaluation (over 10⁹ pixels) needs no per-pixel storage. For an even count it is the
    mean of the two middle values, as ``numpy.median``.

    >>> m = AngularError()
    >>> x = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])   # (1,0,0) and (0,1,0)
    >>> m.update(x, torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]]]))  # errors 0° and 90°
    >>> {k: round(v, 2) for k, v in m.compute().items()}
    {'mean': 45.0, 'median': 45.0, 'within_11.25': 50.0, 'within_22.5': 50.0, 'within_30': 50.0}
    """

    WITHIN = (11.25, 22.5, 30.0)

    def __init__(self, resolution: float = 0.01) -> None:
        self.resolution = resolution
        self.bins = int(math.ceil(180.0 / resolution)) + 1
        self.hist = torch.zeros(self.bins, dtype=torch.int64)
        self.total = 0.0
        self.n = 0
        self.within = [0] * len(self.WITHIN)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: ``[B, 3, H, W]`` (any scale); ``target``: unit normals, zero vector = invalid."""
        valid = normals_valid(target)[:, 0]
        p = F.normalize(pred.detach().double(), dim=1)
        t = F.normalize(torch.nan_to_num(target.double()), dim=1)
        cos = (p * t).sum(1).clamp(-1.0, 1.0)
        e = torch.rad2deg(torch.acos(cos[valid])).cpu()
        self.total += float(e.sum())
        self.n += e.numel()
        for i, limit in enumerate(self.WITHIN):
            self.within[i] += int((e < limit).sum())
        idx = torch.clamp((e / self.resolution).floor().long(), 0, self.bins - 1)
        self.hist += torch.bincount(idx, minlength=self.bins)

    def _kth(self, cum: torch.Tensor, k: int) -> float:
        """The ``k``-th smallest error (0-based), as the centre of its histogram bin."""
        b = int(torch.searchsorted(cum, torch.tensor(k + 1)))
        return (b + 0.5) * self.resolution

    def compute(self) -> dict[str, float]:
        names = ("mean", "median", *(f"within_{w:g}" for w in self.WITHIN))
        if self.n == 0:
            return {k: float("nan") for k in names}
        cum = self.hist.cumsum(0)
        lo, hi = (self.n - 1) // 2, self.n // 2
        median = 0.5 * (self._kth(cum, lo) + self._kth(cum, hi))
        pct = [100.0 * c / self.n for c in self.within]
        return dict(zip(names, [self.total / self.n, median, *pct]))


class DepthRMSE:
    """Root mean squared depth error, pixel-wise over every valid pixel of the set.

    ``RMSE = sqrt(Σ_{p∈V} (x_p - d_p)² / |V|)`` with ``V`` all pixels of the set with ``d > 0`` (not a
    mean of per-image RMSEs).

    >>> m = DepthRMSE()
    >>> m.update(torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[4.0, 0.0]]]]))   # one valid pixel
    >>> m.compute()
    {'rmse': 3.0}
    """

    def __init__(self) -> None:
        self.sq = 0.0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = depth_valid(target)
        d = (pred.detach().double() - target.double())[valid]
        self.sq += float((d * d).sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"rmse": math.sqrt(self.sq / self.n) if self.n else float("nan")}


class SaliencyMeter:
    """Saliency: max-F (β² = 0.3) and mIoU, each maximised over binarisation thresholds of ``σ(x)``.

    * ``maxF``: at each threshold ``t`` of ``f_thresholds`` (default 0.05, 0.10, …, 0.95) the counts
      TP/FP/FN are summed over every valid pixel of the set; ``P = TP/(TP+FP)``, ``R = TP/(TP+FN)``,
      ``F = (1+β²)PR/(β²P+R)``; ``maxF = 100 · max_t F``.
    * ``mIoU``: at each threshold of ``iou_thresholds`` (default 15 values from 0.2 to 0.9) the
      foreground IoU ``|G∩M|/|G∪M|`` of every image (1 when both are empty), averaged over the images
      of the set that have a valid pixel; ``mIoU = 100 · max_t mean IoU``. This is the ASTMT/MTI-Net definition BMTAS reports.

    >>> m = SaliencyMeter(f_thresholds=[0.5], iou_thresholds=[0.5])
    >>> m.update(torch.tensor([[[[5.0, 5.0, -5.0]]]]), torch.tensor([[[[1.0, 0.0, 0.0]]]]))
    >>> {k: round(v, 2) for k, v in m.compute().items()}   # P = 1/2, R = 1, IoU = 1/2
    {'maxF': 56.52, 'mIoU': 50.0}
    """

    def __init__(
        self,
        beta2: float = 0.3,
        f_thresholds: int | Sequence[float] = tuple(i / 20 for i in range(1, 20)),
        iou_thresholds: int | Sequence[float] = tuple(np.linspace(0.2, 0.9, 15).tolist()),
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.beta2 = beta2
        self.ignore_index = ignore_index
        self.f_thresholds = _as_thresholds(f_thresholds, "saliency f_thresholds")
        self.iou_thresholds = _as_thresholds(iou_thresholds, "saliency iou_thresholds")
        n = len(self.f_thresholds)
        self.tp = torch.zeros(n, dtype=torch.float64)
        self.pred_pos = torch.zeros(n, dtype=torch.float64)
        self.true_pos = 0.0
        self.iou_sum = torch.zeros(len(self.iou_thresholds), dtype=torch.float64)
        self.images = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: logits ``[B, 1, H, W]``; ``target``: ``[B, 1, H, W]`` in {0, 1}, 255 = ignore."""
        prob = torch.sigmoid(pred.detach().double()).cpu().flatten(1)
        target = target.cpu().flatten(1)
        valid = binary_valid(target, self.ignore_index)
        y = (target > 0.5) & valid
        self.true_pos += float(y.sum())
        for i, th in enumerate(self.f_thresholds):
            p = (prob > th) & valid
            self.tp[i] += float((p & y).sum())
            self.pred_pos[i] += float(p.sum())
        labelled = valid.any(1)
        for i, th in enumerate(self.iou_thresholds):
            p = (prob > th) & valid
            inter = (p & y).sum(1).double()
            union = (p | y).sum(1).double()
            iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)
            self.iou_sum[i] += float(iou[labelled].sum())
        self.images += int(labelled.sum())

    def compute(self) -> dict[str, float]:
        if self.images == 0:
            return {"maxF": float("nan"), "mIoU": float("nan")}
        prec = self.tp / self.pred_pos.clamp(min=1)
        rec = self.tp / max(self.true_pos, 1.0)
        f = (1 + self.beta2) * prec * rec / (self.beta2 * prec + rec).clamp(min=1e-12)
        return {"maxF": 100.0 * f.max().item(), "mIoU": 100.0 * (self.iou_sum / self.images).max().item()}


@cache
def _pyedgeeval() -> tuple:
    """``(correspond_pixels, binary_thin)`` from the PyPI package ``pyedgeeval``.

    ``pyEdgeEval.preprocess`` imports OpenCV for its NMS on import; the thinning module itself needs
    only numpy, so it is loaded from its file to avoid an OpenCV dependency.
    """
    try:
        import pyEdgeEval
        from pyEdgeEval import correspond_pixels
    except ImportError as err:
        raise ConfigError(
            f"edge odsF needs the package pyedgeeval (BSDS correspondPixels): pip install pyedgeeval ({err})"
        ) from None
    path = f"{pyEdgeEval.__path__[0]}/preprocess/thin/thin.py"
    spec = importlib.util.spec_from_file_location("_branchsweep_pyedgeeval_thin", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"edge odsF: cannot load pyedgeeval's thinning module {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return correspond_pixels, module.binary_thin


class EdgeODS:
    """Edge detection: optimal-dataset-scale F-measure (odsF) with BSDS pixel correspondence.

    For each image the valid region (label ≠ ``ignore_index``: the original image inside any padding)
    is cropped; at each threshold ``t`` the map ``σ(x) ≥ t`` is thinned to one-pixel width and matched
    to the label edges with ``pyedgeeval.correspond_pixels`` (the BSDS ``correspondPixels`` minimum-cost
    bipartite matching) at tolerance ``max_dist`` × image diagonal (0.0075 PASCAL-Context, 0.011
    NYUD-v2). Matched/total counts for recall and precision are summed over the set per threshold;
    ``odsF = 100 · max_t 2PR/(P+R)`` over the ``thresholds`` (default 99, ``k/100``, as BSDS; fewer is
    faster). The BSDS benchmark additionally interpolates between neighbouring thresholds; this does not.

    The matcher links each edge pixel to ``min(6, n - 1)`` random others in its outlier graph (a C++
    RNG seeded from the clock): beyond 7 edge pixels in an image a perfect prediction occasionally
    loses one matched pair, as in the reference benchmark. Up to 6 the result is exact:

    >>> m = EdgeODS(thresholds=[0.5])
    >>> gt = torch.zeros(1, 1, 8, 8); gt[0, 0, 4, 1:7] = 1            # a 6-pixel horizontal edge
    >>> m.update(torch.where(gt > 0, 5.0, -5.0), gt)
    >>> m.compute()
    {'odsF': 100.0}
    """

    def __init__(
        self,
        max_dist: float = 0.0075,
        thresholds: int | Sequence[float] = 99,
        thin: bool = True,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if max_dist <= 0:
            raise ConfigError(f"edge max_dist must be positive, got {max_dist}")
        self.correspond, self.binary_thin = _pyedgeeval()
        self.max_dist = max_dist
        self.thin = thin
        self.ignore_index = ignore_index
        self.thresholds = _as_thresholds(thresholds, "edge thresholds").numpy()
        n = len(self.thresholds)
        self.count_r = np.zeros(n)
        self.sum_r = np.zeros(n)
        self.count_p = np.zeros(n)
        self.sum_p = np.zeros(n)

    def _image(self, prob: np.ndarray, target: np.ndarray) -> None:
        valid = (target != self.ignore_index) & np.isfinite(target)
        if not valid.any():
            return
        rows, cols = np.flatnonzero(valid.any(1)), np.flatnonzero(valid.any(0))
        box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        prob, gt, valid = prob[box], (target[box] > 0.5) & valid[box], valid[box]
        prob = np.where(valid, prob, 0.0)
        n_gt = int(gt.sum())
        for i, th in enumerate(self.thresholds):
            edges = prob >= th
            if self.thin and edges.any():
                edges = self.binary_thin(edges)
            n_pred = int(edges.sum())
            self.sum_r[i] += n_gt
            self.sum_p[i] += n_pred
            if n_gt and n_pred:
                match_pred, match_gt, _, _ = self.correspond(edges, gt, max_dist=self.max_dist)
                self.count_p[i] += int((match_pred > 0).sum())
                self.count_r[i] += int((match_gt > 0).sum())

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: logits ``[B, 1, H, W]``; ``target``: ``[B, 1, H, W]`` in {0, 1}, 255 = ignore."""
        prob = torch.sigmoid(pred.detach().double()).cpu().numpy().reshape(pred.shape[0], *pred.shape[-2:])
        target = target.detach().cpu().double().numpy().reshape(prob.shape)
        for b in range(prob.shape[0]):
            self._image(prob[b], target[b])

    def compute(self) -> dict[str, float]:
        if self.sum_r.sum() == 0 and self.sum_p.sum() == 0:
            return {"odsF": float("nan")}
        rec = self.count_r / np.maximum(self.sum_r, 1)
        prec = self.count_p / np.maximum(self.sum_p, 1)
        f = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
        return {"odsF": 100.0 * float(f.max())}


class MeanSquaredError:
    """Mean squared error ``Σ (x_i - y_i)² / N`` over every finite target entry of the set.

    >>> m = MeanSquaredError()
    >>> m.update(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 2.0]]))
    >>> m.compute()
    {'mse': 2.0}
    """

    def __init__(self) -> None:
        self.sq = 0.0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target = target.reshape(pred.shape)
        valid = torch.isfinite(target)
        d = (pred.detach().double() - target.double())[valid]
        self.sq += float((d * d).sum())
        self.n += d.numel()

    def compute(self) -> dict[str, float]:
        return {"mse": self.sq / self.n if self.n else float("nan")}


class BinaryAccuracy:
    """Accuracy of one binary attribute over the set, in percent: ``100 · #[(x > 0) = y] / N``.

    A logit ``x > 0`` (``σ(x) > 0.5``) predicts 1; labels are 0/1, ``ignore_index`` is left out. The
    CelebA score of Learning to Branch is the mean of this over the 40 attributes.

    >>> m = BinaryAccuracy()
    >>> m.update(torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([1.0, 1.0, 0.0]))
    >>> round(m.compute()["accuracy"], 2)
    33.33
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        self.ignore_index = ignore_index
        self.correct = 0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target = target.reshape(pred.shape)
        valid = binary_valid(target, self.ignore_index)
        hit = ((pred.detach() > 0) == (target > 0.5)) & valid
        self.correct += int(hit.sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"accuracy": 100.0 * self.correct / self.n if self.n else float("nan")}


class PixelCrossEntropy:
    """Mean pixel-wise cross-entropy over every labelled pixel of the set (Taskonomy, Table 2 protocol).

    ``CE = Σ_{p∈V} -log softmax(x_p)[y_p] / |V|`` with ``V`` all pixels of the set whose label is not
    ``ignore_index`` (Taskonomy: uncertain and background pixels are ignored by the loader).

    >>> m = PixelCrossEntropy()
    >>> m.update(torch.zeros(1, 2, 1, 2), torch.tensor([[[1, 255]]]))   # one pixel, uniform logits
    >>> round(m.compute()["ce"], 4)
    0.6931
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        self.ignore_index = ignore_index
        self.total = 0.0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target = target.long()
        valid = target != self.ignore_index
        if not valid.any():
            return
        ce = F.cross_entropy(pred.detach().double(), target, ignore_index=self.ignore_index, reduction="sum")
        self.total += float(ce)
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"ce": self.total / self.n if self.n else float("nan")}


class CosineSimilarity:
    """Mean cosine similarity of predicted and labelled normals over every pixel of the set (Taskonomy).

    ``cos = Σ_p ⟨x_p, n_p⟩ / (‖x_p‖ ‖n_p‖) / |V|``; only the zero-vector padding is left out.

    >>> m = CosineSimilarity()
    >>> m.update(torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]]), torch.tensor([[[[2.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]]]))
    >>> m.compute()
    {'cosine': 0.5}
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = normals_valid(target)[:, 0]
        t = torch.nan_to_num(target.double())
        cos = F.cosine_similarity(pred.detach().double(), t, dim=1, eps=1e-12)
        self.total += float(cos[valid].sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"cosine": self.total / self.n if self.n else float("nan")}


class MeanAbsoluteError:
    """Mean absolute error ``Σ_{p∈V} |x_p - y_p| / |V|`` over the valid pixels of the set (Taskonomy).

    ``valid="depth"``: pixels with a valid depth (``d > 0``; Taskonomy: z-buffer ≤ 64500); ``"finite"``:
    every finite label entry (NaN marks padding).

    >>> m = MeanAbsoluteError("finite")
    >>> m.update(torch.tensor([[[[1.0, 0.0, 3.0]]]]), torch.tensor([[[[0.0, 2.0, float("nan")]]]]))
    >>> m.compute()
    {'mae': 1.5}
    """

    def __init__(self, valid: str = "finite") -> None:
        if valid not in ("finite", "depth"):
            raise ConfigError(f"MeanAbsoluteError: valid must be 'finite' or 'depth', got {valid!r}")
        self.valid = valid
        self.total = 0.0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target = target.reshape(pred.shape)
        valid = depth_valid(target) if self.valid == "depth" else torch.isfinite(target)
        d = (pred.detach().double() - target.double())[valid]
        self.total += float(d.abs().sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"mae": self.total / self.n if self.n else float("nan")}
