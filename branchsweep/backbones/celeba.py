"""The two convolutional backbones of the Learning-to-Branch CelebA experiment (paper Section 4.2).

Both take ``3 × input_size × input_size`` images (default 64) and end in one logit per binary attribute.
Convolutions are 3×3 + BatchNorm + ReLU (BatchNorm is our addition: it makes the thin nets trainable
from scratch with the paper's Adam settings); every max-pool uses ``ceil_mode`` so small test inputs
(16×16) keep at least one pixel.

``celeba_vgg`` (LearnToBranch-VGG, after Branch-VGG of Lu et al. 2017): a truncated VGG19, conv channels
``32·width``, FC layers ``64·width``. Its **8 branchable layers** are the points where the paper branches
(the end of each resolution stage, plus the FC layers), so ``--child-nodes 3,3,5,5,10,20,30,40`` fits:

====  ==============================  ===========================
 #    layer                           output
====  ==============================  ===========================
 1    stage1: 2 conv + max-pool       32 × s/2
 2    stage2: 2 conv + max-pool       32 × s/4
 3    stage3: 4 conv + max-pool       32 × s/8
 4    stage4: 4 conv + max-pool       32 × s/16
 5    stage5: 4 conv + max-pool       32 × s/32
 6    fc6: flatten + linear + ReLU    64
 7    fc7: linear + ReLU              64
 8    fc8: linear + ReLU              64
====  ==============================  ===========================

The head is a linear map to one logit (VGG's classifier layer, one per attribute).

``celeba_deep_wide`` (LearnToBranch-Deep-Wide, after GNAS-Deep-Wide of Huang et al. 2018): 5 conv layers
and 2 FC layers. The paper branches after every conv layer (``--child-nodes 2,4,8,16,40``), so the
**5 branchable layers** are the conv layers (channels ``32, 32, 64, 64, 128`` × width, each followed by a
2×2 max-pool); with 40 nodes in the last layer every task owns its FC layers, which therefore form its
head: flatten → ``fc·width`` units (64) → ReLU → linear to one logit.

**Sizes.** The paper does not state its input size. With every child node in use (the capacity the
paper's child-node counts were chosen to match), the parameters depend on it through the first FC
layer: ``celeba_vgg`` with ``3,3,5,5,10,20,30,40`` has 1.29 M parameters at 64×64 and 2.15 M at
160×160; ``celeba_deep_wide`` with ``2,4,8,16,40`` has 5.05 M at 64×64 and 6.69 M at 96×96. The CelebA
presets (``sweeps/celeba_ltb.py``) use 160 and 96: within 5 % of the published Branch-VGG (2.09 M) and
GNAS-Deep-Wide (6.41 M) baselines (``tests/sweep/test_celeba_presets.py``).

No ImageNet weights exist for these thin nets: ``pretrained`` raises :class:`ConfigError`.
"""

from __future__ import annotations

import math

from torch import nn

from branchsweep.backbones.base import BackboneSpec, fresh_copy
from branchsweep.backbones.heads import LinearHead
from branchsweep.errors import ConfigError
from branchsweep.tasks import Task


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _pooled(size: int, pools: int) -> int:
    """Spatial size after ``pools`` ceil-mode 2×2 max-pools (``⌈size / 2^pools⌉``)."""
    for _ in range(pools):
        size = math.ceil(size / 2)
    return size


def _check(name: str, input_size: int, width: float, pretrained: str | None) -> None:
    if pretrained:
        raise ConfigError(f"{name} has no pretrained weights (train it from scratch; drop --pretrained)")
    if input_size < 4:
        raise ConfigError(f"{name} needs input_size >= 4, got {input_size}")
    if not 0 < width <= 4:
        raise ConfigError(f"width must be in (0, 4], got {width}")


def _spec(name: str, templates: list[nn.Module], layer_names: list[str], make_head, input_size: int,
          params: dict) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        stem=nn.Identity,
        layers=[(lambda t=t: fresh_copy(t, reinit=True)) for t in templates],
        layer_names=layer_names,
        make_head=make_head,
        input_shape=(3, input_size, input_size),
        params={"input_size": input_size, **params},
    )


def celeba_vgg(width: float = 1.0, input_size: int = 64, pretrained: str | None = None) -> BackboneSpec:
    """Truncated VGG19 (32-channel convs, 64-unit FCs) with 8 branchable layers (module docstring)."""
    _check("celeba_vgg", input_size, width, pretrained)
    c, f = max(1, round(32 * width)), max(1, round(64 * width))
    templates: list[nn.Module] = []
    cin = 3
    for convs in (2, 2, 4, 4, 4):
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += _conv(cin, c)
            cin = c
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
        templates.append(nn.Sequential(*layers))
    flat = c * _pooled(input_size, 5) ** 2
    templates.append(nn.Sequential(nn.Flatten(), nn.Linear(flat, f), nn.ReLU(inplace=True)))
    templates += [nn.Sequential(nn.Linear(f, f), nn.ReLU(inplace=True)) for _ in range(2)]

    def make_head(task: Task) -> nn.Module:
        return LinearHead(f, task.out_channels)

    names = [f"stage{i}" for i in range(1, 6)] + ["fc6", "fc7", "fc8"]
    return _spec("celeba_vgg", templates, names, make_head, input_size, {"width": width})


class _MLPHead(nn.Module):
    """Task-owned FC layers of Deep-Wide: flatten → hidden → ReLU → ``out`` logits."""

    def __init__(self, in_features: int, hidden: int, out: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, out))

    def forward(self, final, skips, out_size):
        return self.fc(final)


def celeba_deep_wide(width: float = 1.0, input_size: int = 64, pretrained: str | None = None) -> BackboneSpec:
    """GNAS-Deep-Wide style: 5 branchable conv layers, 2 task-owned FC layers (module docstring)."""
    _check("celeba_deep_wide", input_size, width, pretrained)
    channels = [max(1, round(ch * width)) for ch in (32, 32, 64, 64, 128)]
    hidden = max(1, round(64 * width))
    templates: list[nn.Module] = []
    cin = 3
    for ch in channels:
        templates.append(nn.Sequential(*_conv(cin, ch), nn.MaxPool2d(2, ceil_mode=True)))
        cin = ch
    flat = channels[-1] * _pooled(input_size, 5) ** 2

    def make_head(task: Task) -> nn.Module:
        return _MLPHead(flat, hidden, task.out_channels)

    names = [f"conv{i}" for i in range(1, 6)]
    return _spec("celeba_deep_wide", templates, names, make_head, input_size, {"width": width})
