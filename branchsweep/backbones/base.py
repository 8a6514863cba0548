"""Backbones as layer lists.

A :class:`BackboneSpec` is the one description of a network that every part of branchsweep builds
from: the branched network (one copy of a layer per task group), the MAdds look-up table (one copy of
each layer, priced once), the BMTAS supergraph (T copies per layer) and the Learning-to-Branch blocks
(J_l copies per layer). A spec is:

* ``stem``: a factory for the always-shared input block (e.g. MobileNetV2's first conv);
* ``layers``: one factory per *branchable* layer; each call returns a fresh copy;
* ``skip_layers``: 0-based layer indices whose outputs the heads also receive (DeepLabv3+ low-level
  features); each task gets the skip features from its own path through the tree;
* ``make_head(task)``: a task-specific head called as ``head(final, skips, out_size)`` with the last
  layer's output, the skip features (in ``skip_layers`` order) and the label resolution (or None).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from branchsweep.tasks import Task


def kaiming_fan_out_(module: nn.Module) -> nn.Module:
    """Re-initialise ``module`` in place as the BMTAS authors' code initialises its networks
    (``src/models.py``, ``_initialize_weights``) before loading ImageNet weights into the encoder: every
    convolution Kaiming-normal with ``mode="fan_out"`` (ReLU gain) and zero bias, except a convolution
    named ``logits`` (a task's prediction layer), N(0, 0.01²); BatchNorm weight 1, bias 0.

    >>> conv = kaiming_fan_out_(nn.Sequential(nn.Conv2d(4, 400, 1)))[0]
    >>> round(float(conv.weight.std()), 1), float(conv.bias.abs().max())  # √(2 / fan_out) = 0.07
    (0.1, 0.0)
    """
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            if name.split(".")[-1] == "logits":
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def fresh_copy(template: nn.Module, reinit: bool, init: Callable[[nn.Module], object] | None = None) -> nn.Module:
    """Deep-copy ``template``; with ``reinit`` draw new random weights (``reset_parameters``, then
    ``init`` when given, e.g. :func:`kaiming_fan_out_`).

    Pretrained templates are copied as they are (every copy starts from the same ImageNet weights, as
    in BMTAS); random ones are re-initialised so that copies do not start identical.
    """
    module = copy.deepcopy(template)
    if reinit:
        for m in module.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        if init is not None:
            init(module)
    return module


@dataclass
class BackboneSpec:
    """Everything needed to build any network over one backbone (see the module docstring)."""

    name: str
    stem: Callable[[], nn.Module]
    layers: list[Callable[[], nn.Module]]
    layer_names: list[str]
    make_head: Callable[[Task], nn.Module]
    input_shape: tuple[int, ...]
    skip_layers: tuple[int, ...] = ()
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.layer_names) != len(self.layers):
            raise ValueError("one layer name per layer")
        if any(not 0 <= s < len(self.layers) for s in self.skip_layers):
            raise ValueError("skip layer out of range")

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def example_input(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, *self.input_shape)

    def cache_key(self) -> dict:
        """What determines this spec's costs (for the MAdds table cache)."""
        return {"backbone": self.name, "input_shape": list(self.input_shape), **self.params}
