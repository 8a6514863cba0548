"""Glue shared by the commands, the searches and the sweeps: a backbone spec that fits a data set."""

from __future__ import annotations

import inspect

from branchsweep.backbones import BACKBONES, BackboneSpec, create_backbone
from branchsweep.config import ModelConfig
from branchsweep.data.base import MultiTaskData


def build_spec(model: ModelConfig, data: MultiTaskData) -> BackboneSpec:
    """The backbone ``model`` names (the data set's default when None), sized for ``data``'s inputs.

    Its ``input_shape`` (what the MAdds table prices) is ``data.price_shape()``: the image, not the
    padded square, on a data set whose images are not square (NYUD-v2: 425×560 in 560² tensors).
    """
    name = model.backbone or data.default_backbone
    params = inspect.signature(BACKBONES.get(name)).parameters
    kwargs: dict = {"width": model.width}
    if model.pretrained:
        kwargs["pretrained"] = model.pretrained
    if len(data.input_shape) == 3 and "input_size" in params:
        kwargs["input_size"] = data.input_shape[-1]
    elif len(data.input_shape) == 1 and "input_dim" in params:
        kwargs["input_dim"] = data.input_shape[0]
    spec = create_backbone(name, **kwargs)
    priced = data.price_shape()
    if len(spec.input_shape) == len(priced) == 3 and priced != spec.input_shape:
        import dataclasses

        spec = dataclasses.replace(spec, input_shape=priced)
    return spec


def build_model(spec: BackboneSpec, tasks, config, seed: int):
    """A :class:`~branchsweep.network.BranchedNetwork` with seeded initial weights."""
    import torch

    from branchsweep.network import BranchedNetwork

    torch.manual_seed(seed)
    return BranchedNetwork(spec, tasks, config)


def resolve_arch(arch: str, task_names: list[str], num_layers: int):
    """``"single"``, ``"shared"`` or a path to a branch-config JSON, checked against tasks and layers."""
    from branchsweep.arch import BranchConfig

    if arch == "single":
        return BranchConfig.single(task_names, num_layers)
    if arch == "shared":
        return BranchConfig.shared(task_names, num_layers)
    config = BranchConfig.load(arch)
    config.check_tasks(task_names, num_layers)
    return config.reorder(task_names)
