"""Metrics accumulated over a whole evaluation set (never averaged per batch)."""

from __future__ import annotations

import math

import torch

from branchsweep.tasks.losses import IGNORE_INDEX


class ConfusionMIoU:
    """Mean intersection-over-union from a confusion matrix accumulated over the set.

    ``mIoU = mean_c TP_c / (TP_c + FP_c + FN_c)`` over classes that occur in labels or predictions.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        label = pred.argmax(1) if pred.dim() == target.dim() + 1 else pred
        valid = target != self.ignore_index
        idx = target[valid].long() * self.num_classes + label[valid].long()
        self.confusion += torch.bincount(idx.cpu(), minlength=self.num_classes**2).view(
            self.num_classes, self.num_classes
        )

    def compute(self) -> dict[str, float]:
        c = self.confusion.double()
        tp = c.diag()
        denom = c.sum(0) + c.sum(1) - tp
        present = denom > 0
        miou = (tp[present] / denom[present]).mean().item() if present.any() else float("nan")
        return {"mIoU": 100.0 * miou}


class AngularError:
    """Surface-normal angular error in degrees over valid pixels: mean, median, % under 11.25/22.5/30."""

    def __init__(self) -> None:
        self.errors: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = target.abs().sum(1) > 0
        p = torch.nn.functional.normalize(pred.detach().float(), dim=1)
        t = torch.nn.functional.normalize(target.float(), dim=1)
        cos = (p * t).sum(1).clamp(-1.0, 1.0)
        self.errors.append(torch.rad2deg(torch.acos(cos[valid])).cpu())

    def compute(self) -> dict[str, float]:
        e = torch.cat(self.errors) if self.errors else torch.empty(0)
        if e.numel() == 0:
            return {k: float("nan") for k in ("mean", "median", "within_11.25", "within_22.5", "within_30")}
        return {
            "mean": e.mean().item(),
            "median": e.median().item(),
            "within_11.25": 100.0 * (e < 11.25).double().mean().item(),
            "within_22.5": 100.0 * (e < 22.5).double().mean().item(),
            "within_30": 100.0 * (e < 30).double().mean().item(),
        }


class DepthRMSE:
    """Root mean squared depth error, pixel-wise over every valid pixel of the set."""

    def __init__(self) -> None:
        self.sq = 0.0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = (target > 0) & torch.isfinite(target)
        d = (pred.detach().float() - target.float())[valid]
        self.sq += float((d * d).sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"rmse": math.sqrt(self.sq / self.n) if self.n else float("nan")}


class BinaryFMeasure:
    """Binary maps (saliency, edges): max-F over thresholds and mIoU over thresholds, over the set.

    Precision/recall counts are accumulated per threshold over all pixels of the set; ``maxF`` is the
    best F-measure (β² = 0.3 for saliency, 1 for edges), ``mIoU`` the best foreground/background mIoU.
    """

    def __init__(self, beta2: float = 0.3, thresholds: int = 21, ignore_index: int = IGNORE_INDEX, key: str = "maxF"):
        self.beta2 = beta2
        self.key = key
        self.ignore_index = ignore_index
        self.thresholds = torch.linspace(0.0, 1.0, thresholds)[1:-1]
        n = len(self.thresholds)
        self.tp = torch.zeros(n, dtype=torch.float64)
        self.fp = torch.zeros(n, dtype=torch.float64)
        self.fn = torch.zeros(n, dtype=torch.float64)
        self.tn = torch.zeros(n, dtype=torch.float64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != self.ignore_index
        prob = torch.sigmoid(pred.detach().float())[valid].cpu()
        y = (target[valid] > 0.5).cpu()
        for i, th in enumerate(self.thresholds):
            p = prob > th
            self.tp[i] += (p & y).sum()
            self.fp[i] += (p & ~y).sum()
            self.fn[i] += (~p & y).sum()
            self.tn[i] += (~p & ~y).sum()

    def compute(self) -> dict[str, float]:
        prec = self.tp / (self.tp + self.fp).clamp(min=1)
        rec = self.tp / (self.tp + self.fn).clamp(min=1)
        f = (1 + self.beta2) * prec * rec / (self.beta2 * prec + rec).clamp(min=1e-12)
        iou_fg = self.tp / (self.tp + self.fp + self.fn).clamp(min=1)
        iou_bg = self.tn / (self.tn + self.fp + self.fn).clamp(min=1)
        return {self.key: 100.0 * f.max().item(), "mIoU": 100.0 * ((iou_fg + iou_bg) / 2).max().item()}


class MeanSquaredError:
    """Mean squared error over every element of the set."""

    def __init__(self) -> None:
        self.sq = 0.0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        d = pred.detach().float() - target.float()
        self.sq += float((d * d).sum())
        self.n += d.numel()

    def compute(self) -> dict[str, float]:
        return {"mse": self.sq / self.n if self.n else float("nan")}


class BinaryAccuracy:
    """Accuracy of a binary attribute (logit > 0) over the set, in percent."""

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        self.ignore_index = ignore_index
        self.correct = 0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target = target.reshape(pred.shape)
        valid = target != self.ignore_index
        hit = ((pred.detach() > 0) == (target > 0.5)) & valid
        self.correct += int(hit.sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"accuracy": 100.0 * self.correct / self.n if self.n else float("nan")}
