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
    def roughness(weight: float = 1.0) -> Task:
        return Task("roughness", "roughness", 1, losses.depth_l1, metrics.DepthRMSE,
                    {"rmse": "min"}, "rmse", weight)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from branchsweep.registry import Registry
from branchsweep.tasks import losses, metrics
from branchsweep.tasks.base import Direction, Metric, Task

TASKS: Registry[Callable[..., Task]] = Registry("task")


def create_task(kind: str, **params) -> Task:
    """Build a task of ``kind`` (see ``TASKS.names()``), overriding its defaults with ``params``."""
    return TASKS.create(kind, **params)


@TASKS.register("semseg")
def semseg(num_classes: int = 21, weight: float = 1.0, name: str = "semseg") -> Task:
    """Semantic segmentation: cross-entropy (ignore 255), mIoU."""
    return Task(
        name, "semseg", num_classes, losses.cross_entropy, partial(metrics.ConfusionMIoU, num_classes),
        {"mIoU": "max"}, "mIoU", weight, params={"num_classes": num_classes},
    )


@TASKS.register("human_parts")
def human_parts(num_classes: int = 7, weight: float = 2.0, name: str = "human_parts") -> Task:
    """Human part segmentation (6 parts + background): cross-entropy (ignore 255), mIoU."""
    return Task(
        name, "human_parts", num_classes, losses.cross_entropy, partial(metrics.ConfusionMIoU, num_classes),
        {"mIoU": "max"}, "mIoU", weight, params={"num_classes": num_classes},
    )


@TASKS.register("parts")
def parts(num_classes: int = 3, weight: float = 2.0, name: str = "parts") -> Task:
    """Object part segmentation of the embedded scenes: cross-entropy (ignore 255), mIoU."""
    return Task(
        name, "parts", num_classes, losses.cross_entropy, partial(metrics.ConfusionMIoU, num_classes),
        {"mIoU": "max"}, "mIoU", weight, params={"num_classes": num_classes},
    )


@TASKS.register("sal")
def sal(weight: float = 5.0, name: str = "sal") -> Task:
    """Saliency: class-balanced BCE; max-F (β²=0.3) and mIoU over thresholds."""
    return Task(
        name, "sal", 1, losses.balanced_bce, partial(metrics.BinaryFMeasure, beta2=0.3),
        {"maxF": "max", "mIoU": "max"}, "mIoU", weight,
    )


@TASKS.register("normals")
def normals(weight: float = 10.0, name: str = "normals") -> Task:
    """Surface normals: L1 on unit-normalised predictions; angular errors in degrees."""
    return Task(
        name, "normals", 3, losses.normals_l1, metrics.AngularError,
        {"mean": "min", "median": "min", "within_11.25": "max", "within_22.5": "max", "within_30": "max"},
        "mean", weight,
    )


@TASKS.register("edge")
def edge(pos_weight: float = 0.95, weight: float = 50.0, name: str = "edge") -> Task:
    """Edge detection: weighted BCE (positives ``pos_weight``); F-measure."""
    return Task(
        name, "edge", 1, partial(losses.weighted_bce, pos_weight=pos_weight),
        partial(metrics.BinaryFMeasure, beta2=1.0, key="odsF"),
        {"odsF": "max", "mIoU": "max"}, "odsF", weight, params={"pos_weight": pos_weight},
    )


@TASKS.register("depth")
def depth(weight: float = 1.0, name: str = "depth") -> Task:
    """Depth: L1 over valid pixels (0 = invalid); RMSE over all valid pixels of the set."""
    return Task(name, "depth", 1, losses.depth_l1, metrics.DepthRMSE, {"rmse": "min"}, "rmse", weight)


@TASKS.register("regression")
def regression(name: str = "regression", out_channels: int = 100, weight: float = 1.0) -> Task:
    """Vector regression (Learning to Branch synthetic tasks): L2 loss, MSE."""
    return Task(
        name, "regression", out_channels, losses.mse, metrics.MeanSquaredError, {"mse": "min"}, "mse",
        weight, dense=False,
    )


@TASKS.register("binary")
def binary(name: str = "binary", weight: float = 1.0) -> Task:
    """One binary attribute (CelebA): BCE, accuracy."""
    return Task(
        name, "binary", 1, losses.binary_bce, metrics.BinaryAccuracy, {"accuracy": "max"}, "accuracy",
        weight, dense=False,
    )


def metric_directions() -> dict[str, Direction]:
    """Direction of every ``task/metric`` column of the registered fixed-name tasks."""
    out: dict[str, Direction] = {}
    for kind in TASKS.names():
        task = create_task(kind)
        for metric, direction in task.directions.items():
            out[f"{task.name}/{metric}"] = direction
    return out


__all__ = ["TASKS", "Task", "Metric", "Direction", "create_task", "metric_directions"]
