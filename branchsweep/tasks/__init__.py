"""Tasks by name.

``TASKS`` maps a task *kind* to a factory ``(**params) -> Task``. The fixed names of the dense
benchmarks (``semseg``, ``human_parts``, ``sal``, ``normals``, ``edge``, ``depth``, plus ``parts`` for
the embedded scenes) are kinds whose defaults are the PASCAL-Context ones; a data set overrides what
differs (NYUD-v2: 40 semseg classes, edge positive weight 0.8). Generic kinds (``regression``,
``binary``) are instantiated with a per-task name by the data sets that have many tasks.

Adding a task for a custom data set is one registration::

    from branchsweep.tasks import TASKS, Task
    from branchsweep.tasks import losses, metrics

    @TASKS.register("roughness")
    def roughness(weight: float = 1.0, name: str = "roughness") -> Task:
        # surface roughness: L1 over valid pixels, RMSE
        return Task(name, "roughness", 1, losses.depth_l1, metrics.DepthRMSE,
                    {"rmse": "min"}, "rmse", weight)

A factory takes keyword parameters with defaults (at least ``weight`` and ``name``) so that
``create_task(kind)`` works and the tests in ``tests/tasks`` cover the new kind automatically.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from branchsweep.errors import ConfigError
from branchsweep.registry import Registry
from branchsweep.tasks import losses, metrics
from branchsweep.tasks.base import Direction, Metric, Task

TASKS: Registry[Callable[..., Task]] = Registry("task")


def create_task(kind: str, **params) -> Task:
    """Build a task of ``kind`` (see ``TASKS.names()``), overriding its defaults with ``params``.

    An unknown kind or a parameter the kind does not take is a :class:`ConfigError` naming both.
    """
    factory = TASKS.get(kind)
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"task kind {kind!r} takes no parameter {unknown[0]!r} (parameters: {', '.join(accepted)})"
        )
    return factory(**params)


def _segmentation(kind: str, name: str, num_classes: int, weight: float) -> Task:
    """A pixel-wise classification task: cross-entropy with ignore 255, confusion-matrix mIoU."""
    if num_classes < 2:
        raise ConfigError(f"task {name!r} ({kind}): num_classes must be at least 2, got {num_classes}")
    return Task(
        name, kind, num_classes, losses.cross_entropy, partial(metrics.ConfusionMIoU, num_classes),
        {"mIoU": "max"}, "mIoU", weight, params={"num_classes": num_classes}, trivial="majority",
    )


@TASKS.register("semseg")
def semseg(num_classes: int = 21, weight: float = 1.0, name: str = "semseg") -> Task:
    """Semantic segmentation: cross-entropy (ignore 255), mIoU (21 classes PASCAL, 40 NYUD-v2)."""
    return _segmentation("semseg", name, num_classes, weight)


@TASKS.register("human_parts")
def human_parts(num_classes: int = 7, weight: float = 2.0, name: str = "human_parts") -> Task:
    """Human part segmentation (6 parts + background): cross-entropy (ignore 255), mIoU."""
    return _segmentation("human_parts", name, num_classes, weight)


@TASKS.register("parts")
def parts(num_classes: int = 3, weight: float = 2.0, name: str = "parts") -> Task:
    """Object part segmentation of the embedded scenes: cross-entropy (ignore 255), mIoU."""
    return _segmentation("parts", name, num_classes, weight)


@TASKS.register("sal")
def sal(weight: float = 5.0, name: str = "sal") -> Task:
    """Saliency: class-balanced BCE; max-F (β²=0.3) and mIoU over thresholds (primary: mIoU)."""
    return Task(
        name, "sal", 1, losses.balanced_bce, partial(metrics.SaliencyMeter, beta2=0.3),
        {"maxF": "max", "mIoU": "max"}, "mIoU", weight, trivial="probability",
    )


@TASKS.register("normals")
def normals(weight: float = 10.0, name: str = "normals") -> Task:
    """Surface normals: L1 on unit-normalised predictions; angular errors in degrees."""
    return Task(
        name, "normals", 3, losses.normals_l1, metrics.AngularError,
        {"mean": "min", "median": "min", "within_11.25": "max", "within_22.5": "max", "within_30": "max"},
        "mean", weight, trivial="unit_mean",
    )


@TASKS.register("edge")
def edge(
    pos_weight: float = 0.95,
    weight: float = 50.0,
    name: str = "edge",
    max_dist: float = 0.0075,
    thresholds: int = 99,
) -> Task:
    """Edge detection: weighted BCE (positives ``pos_weight``); odsF at tolerance ``max_dist``.

    PASCAL-Context: ``pos_weight=0.95, max_dist=0.0075``; NYUD-v2: ``pos_weight=0.8, max_dist=0.011``.
    ``thresholds``: how many binarisation thresholds odsF tries (99 as BSDS; fewer is faster).
    """
    if not 0.0 < pos_weight < 1.0:
        raise ConfigError(f"edge task: pos_weight must be in (0, 1), got {pos_weight}")
    if max_dist <= 0.0:
        raise ConfigError(f"edge task: max_dist must be positive, got {max_dist}")
    if thresholds < 1:
        raise ConfigError(f"edge task: thresholds must be at least 1, got {thresholds}")
    return Task(
        name, "edge", 1, partial(losses.weighted_bce, pos_weight=pos_weight),
        partial(metrics.EdgeODS, max_dist=max_dist, thresholds=thresholds),
        {"odsF": "max"}, "odsF", weight,
        params={"pos_weight": pos_weight, "max_dist": max_dist, "thresholds": thresholds}, trivial="probability",
    )


@TASKS.register("depth")
def depth(weight: float = 1.0, name: str = "depth") -> Task:
    """Depth (metres): L1 over valid pixels (0 = invalid); RMSE pixel-wise over the set."""
    return Task(name, "depth", 1, losses.depth_l1, metrics.DepthRMSE, {"rmse": "min"}, "rmse", weight)


@TASKS.register("regression")
def regression(name: str = "regression", out_channels: int = 100, weight: float = 1.0) -> Task:
    """Vector regression (Learning to Branch synthetic tasks): L2 loss, MSE (NaN target = no label)."""
    return Task(
        name, "regression", out_channels, losses.mse, metrics.MeanSquaredError, {"mse": "min"}, "mse",
        weight, dense=False,
    )


@TASKS.register("binary")
def binary(name: str = "binary", weight: float = 1.0) -> Task:
    """One binary attribute (CelebA, one task per attribute): BCE, accuracy in %."""
    return Task(
        name, "binary", 1, losses.binary_bce, metrics.BinaryAccuracy, {"accuracy": "max"}, "accuracy",
        weight, dense=False, trivial="probability",
    )


# Taskonomy (Learning to Branch §4.3 and Appendix A, after Sun et al. 2019): the task names are the
# data set's domains; losses, loss weights 1/3/2/7/7 and the Table 2 metrics (test losses).
@TASKS.register("segment_semantic")
def segment_semantic(num_classes: int = 16, weight: float = 1.0, name: str = "segment_semantic") -> Task:
    """Taskonomy semantic segmentation (16 classes; uncertain/background ignored): cross-entropy;
    metric: mean pixel cross-entropy (Table 2)."""
    if num_classes < 2:
        raise ConfigError(f"task {name!r} (segment_semantic): num_classes must be at least 2, got {num_classes}")
    return Task(name, "segment_semantic", num_classes, losses.cross_entropy, metrics.PixelCrossEntropy,
                {"ce": "min"}, "ce", weight, params={"num_classes": num_classes}, trivial="class_prior")


@TASKS.register("normal")
def normal(weight: float = 3.0, name: str = "normal") -> Task:
    """Taskonomy surface normals in [-1, 1]: cosine-similarity loss; metric: mean cosine similarity."""
    return Task(name, "normal", 3, losses.cosine_loss, metrics.CosineSimilarity, {"cosine": "max"}, "cosine", weight,
                trivial="unit_mean")


@TASKS.register("depth_zbuffer")
def depth_zbuffer(weight: float = 2.0, name: str = "depth_zbuffer") -> Task:
    """Taskonomy depth, log z-buffer / log 2^16 (0 = invalid): L1; metric: mean absolute error."""
    return Task(name, "depth_zbuffer", 1, losses.depth_l1, partial(metrics.MeanAbsoluteError, "depth"),
                {"mae": "min"}, "mae", weight)


@TASKS.register("keypoints2d")
def keypoints2d(weight: float = 7.0, name: str = "keypoints2d") -> Task:
    """Taskonomy 2D keypoint heatmaps in about [-1, 1] (NaN = padding): L1; metric: mean absolute error."""
    return Task(name, "keypoints2d", 1, losses.l1_finite, partial(metrics.MeanAbsoluteError, "finite"),
                {"mae": "min"}, "mae", weight)


@TASKS.register("edge_texture")
def edge_texture(weight: float = 7.0, name: str = "edge_texture") -> Task:
    """Taskonomy 2D texture edges in about [-1, 1] (NaN = padding): L1; metric: mean absolute error."""
    return Task(name, "edge_texture", 1, losses.l1_finite, partial(metrics.MeanAbsoluteError, "finite"),
                {"mae": "min"}, "mae", weight)


def metric_directions() -> dict[str, Direction]:
    """Direction of every ``task/metric`` column of the registered fixed-name tasks."""
    out: dict[str, Direction] = {}
    for kind in TASKS.names():
        task = create_task(kind)
        for metric, direction in task.directions.items():
            out[f"{task.name}/{metric}"] = direction
    return out


def primary_metrics() -> dict[str, str]:
    """Primary metric of every registered fixed-name task, ``{"semseg": "mIoU", "depth": "rmse", ...}``:
    the metric Δm uses for it (plain data for :func:`analysis.primary_metric_columns`)."""
    return {task.name: task.primary for task in map(create_task, TASKS.names())}


__all__ = ["TASKS", "Task", "Metric", "Direction", "create_task", "metric_directions", "primary_metrics"]
