"""Trivial predictors: the score a model gets without looking at the image.

Every number a sweep reports is only evidence if it beats the best *constant* prediction computed from
the training labels, scored with the same metrics:

============================  ===============================================  ==========================
rule                          constant                                          tasks
============================  ===============================================  ==========================
``majority``                  the most frequent class (all-background)          semseg, parts, human_parts
``class_prior``               logits = log of the class frequencies             segment_semantic (CE)
``probability``               the positive rate ``p`` (logit ``log p/(1-p)``)   sal, edge, binary
``mean``                      the mean of the valid labels, per channel         depth, regression, others
``unit_mean``                 the normalised mean normal                        normals, normal
============================  ===============================================  ==========================

A task names its rule in ``Task.trivial``; kinds without one use ``mean``. :func:`fit_trivial` reads
the training labels once (without augmentation) and returns a :class:`TrivialModel`, an ``nn.Module``
whose outputs have a network's shapes, so :func:`branchsweep.train.evaluate_network` scores it like
any model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from branchsweep.errors import ConfigError
from branchsweep.registry import Registry
from branchsweep.tasks import Task
from branchsweep.tasks.losses import IGNORE_INDEX, depth_valid, normals_valid

#: A rule: ``(task, labels) -> constant output [C]`` from a list of training label tensors.
TRIVIAL_RULES: Registry[Callable[[Task, list[torch.Tensor]], torch.Tensor]] = Registry("trivial rule")


def _flat_channels(task: Task, label: torch.Tensor) -> torch.Tensor:
    """Labels as ``[N, C]`` rows (dense ``[C, H, W]`` or ``[H, W]`` → pixels; vectors → one row)."""
    if task.dense:
        label = label.unsqueeze(0) if label.dim() == 2 else label
        return label.reshape(label.shape[0], -1).t()
    return label.reshape(1, -1)


def _class_counts(task: Task, labels: list[torch.Tensor]) -> torch.Tensor:
    """How often each class occurs among the valid (not ``IGNORE_INDEX``) label pixels."""
    counts = torch.zeros(task.out_channels, dtype=torch.int64)
    for label in labels:
        valid = label[label != IGNORE_INDEX].long()
        counts += torch.bincount(valid.flatten(), minlength=task.out_channels)[: task.out_channels]
    return counts


@TRIVIAL_RULES.register("majority")
def majority(task: Task, labels: list[torch.Tensor]) -> torch.Tensor:
    """Logits that pick the most frequent valid class everywhere.

    >>> from branchsweep.tasks import create_task
    >>> majority(create_task("semseg", num_classes=3), [torch.tensor([[0, 0], [2, 255]])]).argmax().item()
    0
    """
    counts = _class_counts(task, labels)
    out = torch.full((task.out_channels,), -10.0)
    out[int(counts.argmax())] = 10.0
    return out


@TRIVIAL_RULES.register("class_prior")
def class_prior(task: Task, labels: list[torch.Tensor]) -> torch.Tensor:
    """Logits ``log p_c`` of the valid class frequencies (the best constant under cross-entropy).

    >>> from branchsweep.tasks import create_task
    >>> torch.softmax(class_prior(create_task("semseg", num_classes=3), [torch.tensor([[0, 0, 2, 255]])]), 0).round(decimals=4)
    tensor([0.6667, 0.0000, 0.3333])
    """
    counts = _class_counts(task, labels).double()
    if counts.sum() == 0:
        raise ConfigError(f"task {task.name}: no valid training label to fit a trivial predictor on")
    return torch.log(counts / counts.sum()).clamp(min=-30.0).float()


@TRIVIAL_RULES.register("probability")
def probability(task: Task, labels: list[torch.Tensor]) -> torch.Tensor:
    """The logit of the positive rate ``p`` of the valid 0/1 labels (clipped to [1e-4, 1 - 1e-4]).

    >>> from branchsweep.tasks import create_task
    >>> round(float(torch.sigmoid(probability(create_task("sal"), [torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])]))), 4)
    0.25
    """
    positives, total = 0.0, 0
    for label in labels:
        valid = label[(label != IGNORE_INDEX) & torch.isfinite(label)].double()
        positives += float(valid.sum())
        total += valid.numel()
    if total == 0:
        raise ConfigError(f"task {task.name}: no valid training label to fit a trivial predictor on")
    p = min(max(positives / total, 1e-4), 1 - 1e-4)
    return torch.full((task.out_channels,), math.log(p / (1 - p)))


def _valid(task: Task, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows [N, C], mask [N, C])``: the labels as rows and which entries are valid (depth: ``d > 0``;
    normals: a finite non-zero vector; others: finite and not the 255 ignore value)."""
    rows = _flat_channels(task, label.float())
    if task.kind == "depth":
        mask = depth_valid(label.float()).reshape(-1, 1).expand_as(rows)
    elif task.kind == "normals":
        mask = normals_valid(label.float().unsqueeze(0)).reshape(-1, 1).expand_as(rows)
    else:
        mask = torch.isfinite(rows) & (rows != IGNORE_INDEX)
    return rows, mask


@TRIVIAL_RULES.register("mean")
def mean(task: Task, labels: list[torch.Tensor]) -> torch.Tensor:
    """The per-channel mean of the valid label entries (depth: ``d > 0``; others: finite).

    >>> from branchsweep.tasks import create_task
    >>> mean(create_task("depth"), [torch.tensor([[[2.0, 4.0, 0.0]]])])   # 0 = no depth
    tensor([3.])
    """
    total = torch.zeros(task.out_channels, dtype=torch.float64)
    count = torch.zeros(task.out_channels, dtype=torch.float64)
    for label in labels:
        rows, mask = _valid(task, label)
        total += torch.where(mask, rows.double(), 0.0).sum(dim=0)
        count += mask.double().sum(dim=0)
    if bool((count == 0).any()):
        raise ConfigError(f"task {task.name}: no valid training label to fit a trivial predictor on")
    return (total / count).float()


@TRIVIAL_RULES.register("unit_mean")
def unit_mean(task: Task, labels: list[torch.Tensor]) -> torch.Tensor:
    """The mean of the valid unit normals, normalised (the constant normal closest to all of them).

    >>> from branchsweep.tasks import create_task
    >>> n = torch.tensor([[[0.0, 0.0]], [[0.0, 0.6]], [[1.0, 0.8]]])    # two pixels
    >>> unit_mean(create_task("normals"), [n])
    tensor([0.0000, 0.3162, 0.9487])
    """
    return nn.functional.normalize(mean(task, labels), dim=0)


class TrivialModel(nn.Module):
    """Constant outputs per task, shaped like a network's (dense: ``[B, C, H, W]`` at the input size)."""

    def __init__(self, constants: dict[str, torch.Tensor], dense: dict[str, bool]) -> None:
        super().__init__()
        self.names = list(constants)
        self.dense = dict(dense)
        for name, value in constants.items():
            self.register_buffer(f"const_{name}", value.clone())

    def constant(self, name: str) -> torch.Tensor:
        return getattr(self, f"const_{name}")

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        b, h, w = image.shape[0], image.shape[-2], image.shape[-1]
        out = {}
        for name in self.names:
            c = self.constant(name).to(image.device)
            out[name] = c.view(1, -1, 1, 1).expand(b, -1, h, w) if self.dense[name] else c.view(1, -1).expand(b, -1)
        return out


def fit_trivial(data, tasks: Sequence[Task], max_samples: int | None = None) -> TrivialModel:
    """The trivial predictor of every task, fitted on ``data``'s training labels (no augmentation).

    ``max_samples`` caps how many training samples are read (None: all of them).
    """
    split = data.split("train", train=False)
    n = len(split) if max_samples is None else min(len(split), max_samples)
    labels: dict[str, list[torch.Tensor]] = {t.name: [] for t in tasks}
    for i in range(n):
        item = split[i]
        for t in tasks:
            labels[t.name].append(torch.as_tensor(item[t.name]))
    constants = {t.name: TRIVIAL_RULES.get(t.trivial)(t, labels[t.name]) for t in tasks}
    return TrivialModel(constants, {t.name: t.dense for t in tasks})


def trivial_metrics(data, tasks: Sequence[Task], cfg, max_samples: int | None = None) -> dict[str, float]:
    """``{"<task>/<metric>": value}`` of the trivial predictor on the validation split (``cfg``: a
    :class:`~branchsweep.config.TrainConfig` for the evaluation batch size and device)."""
    from branchsweep.train import evaluate_network

    return evaluate_network(fit_trivial(data, tasks, max_samples), data, tasks, cfg)
