"""Backbones by name: ``create_backbone("mobilenet_v2", width=0.25, input_size=64)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from branchsweep.backbones.base import BackboneSpec, fresh_copy
from branchsweep.backbones.celeba import celeba_deep_wide, celeba_vgg
from branchsweep.backbones.convnet import convnet
from branchsweep.backbones.mlp import mlp, mlp_select
from branchsweep.backbones.mobilenet import mobilenet_v2
from branchsweep.backbones.resnet import resnet34, resnet50
from branchsweep.errors import ConfigError
from branchsweep.registry import Registry

BACKBONES: Registry[Callable[..., BackboneSpec]] = Registry("backbone")
BACKBONES.register("mlp", mlp)
BACKBONES.register("mlp_select", mlp_select)
BACKBONES.register("mobilenet_v2", mobilenet_v2)
BACKBONES.register("resnet50", resnet50)
BACKBONES.register("resnet34", resnet34)
BACKBONES.register("celeba_vgg", celeba_vgg)
BACKBONES.register("celeba_deep_wide", celeba_deep_wide)
BACKBONES.register("convnet", convnet)


def create_backbone(name: str, **kwargs) -> BackboneSpec:
    """Build the spec of backbone ``name``; keyword arguments it does not take are rejected clearly."""
    factory = BACKBONES.get(name)
    accepted = inspect.signature(factory).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ConfigError(f"backbone {name!r} takes no option {unknown[0]!r} (options: {', '.join(accepted)})")
    if "width" in kwargs and not 0 < float(kwargs["width"]) <= 4:
        raise ConfigError(f"width must be in (0, 4], got {kwargs['width']}")
    return factory(**kwargs)


__all__ = ["BACKBONES", "BackboneSpec", "create_backbone", "fresh_copy"]
