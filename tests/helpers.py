"""Small builders shared by tests: a tiny instance of every registered backbone with fitting tasks."""

from __future__ import annotations

import inspect

from branchsweep.backbones import BACKBONES, BackboneSpec, create_backbone
from branchsweep.tasks import Task, create_task

TINY = {"mobilenet_v2": {"width": 0.25}, "resnet50": {"width": 0.0625}, "resnet34": {"width": 0.0625},
        "mlp": {"hidden": 16, "input_dim": 12}}
#: Image backbones whose heads predict dense maps without skip features (ASPP heads).
DENSE_WITHOUT_SKIPS = {"resnet34", "convnet"}


def dense_heads(spec: BackboneSpec) -> bool:
    """Whether the backbone's heads predict dense maps at the input resolution."""
    return bool(spec.skip_layers) or spec.name in DENSE_WITHOUT_SKIPS


def tiny_backbone(name: str, size: int = 32) -> BackboneSpec:
    params = inspect.signature(BACKBONES.get(name)).parameters
    kwargs = dict(TINY.get(name, {"width": 0.25}))
    if "input_size" in params:
        kwargs["input_size"] = size
    return create_backbone(name, **kwargs)


def tasks_for(spec: BackboneSpec, n: int = 3) -> list[Task]:
    """Dense tasks for backbones with skip features, vector tasks otherwise."""
    if len(spec.input_shape) == 1:
        return [create_task("regression", name=f"r{i}", out_channels=5) for i in range(n)]
    if dense_heads(spec):
        return [create_task(k) for k in ("semseg", "depth", "normals", "edge", "sal")[:n]]
    return [create_task("binary", name=f"attr{i}") for i in range(n)]
