"""A plain residual convolutional backbone for CPU-scale experiments (the embedded benchmark).

MobileNetV2 and ResNet-50 are the papers' backbones, but at the resolutions a laptop trains in
minutes (16–32 pixels) their output stride of 16 leaves one or two feature pixels, and a dense task
cannot beat a constant prediction. This backbone keeps the resolution high and is cheap per layer:

* layer 0, ``stem``: 3×3 convolution to ``c`` channels with batch norm and no activation, stride 1 —
  branchable like every other layer (the always-shared stem of the spec is the identity), so the
  Single network is T separate networks, as in the papers;
* ``num_layers`` branchable basic residual blocks (two 3×3 convolutions with batch norm); block
  ``downsample_at`` halves the resolution (and doubles the channels with ``widen``), so the output
  stride is 2;
* a per-task head: 3×3 convolution, ReLU, 1×1 convolution to the task's channels, bilinear upsampling
  to the label size.

``c = round(channels · width)``. Every layer is a branch point, so trees differ only in which of these
blocks tasks share, and the MAdds table prices each block exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from branchsweep import fused
from branchsweep.backbones.base import BackboneSpec, fresh_copy
from branchsweep.backbones.heads import to_label_size
from branchsweep.errors import ConfigError
from branchsweep.tasks import Task


class BasicBlock(nn.Module):
    """``relu(x' + bn(conv(relu(bn(conv(x))))))`` with ``x'`` a strided 1×1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.project = None
        if stride != 1 or cin != cout:
            self.project = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.project is None else self.project(x)))


class ConvHead(nn.Module):
    """3×3 conv + ReLU + 1×1 conv to ``out_channels``, upsampled bilinearly to the label size."""

    def __init__(self, in_channels: int, out_channels: int, channels: int) -> None:
        super().__init__()
        self.refine = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU())
        self.logits = nn.Conv2d(channels, out_channels, 1)

    def forward(self, final: torch.Tensor, skips: Sequence[torch.Tensor], out_size) -> torch.Tensor:
        return to_label_size(self.logits(self.refine(final)), out_size)


def _fused_basic_block(mods: Sequence[BasicBlock], value: fused.Wide) -> fused.Wide:
    """``k`` :class:`BasicBlock` copies as one wide block (:mod:`branchsweep.fused`), as their ``forward``."""
    out = fused.run([m.conv1 for m in mods], value)
    out = fused.run([m.bn1 for m in mods], out)
    out = fused.run([m.conv2 for m in mods], (F.relu(out[0]), out[1]))
    out = fused.run([m.bn2 for m in mods], out)
    identity = value if mods[0].project is None else fused.run([m.project for m in mods], value)
    y, shared = fused.add_residual(out, identity, len(mods))
    return F.relu(y), shared


def _fused_conv_head(heads: Sequence[ConvHead], final: torch.Tensor, skips, out_size) -> torch.Tensor:
    """``k`` :class:`ConvHead` copies on a wide input, as their ``forward``."""
    x = fused.run([h.refine for h in heads], (final, False))
    return to_label_size(fused.as_wide(fused.run([h.logits for h in heads], x), len(heads)), out_size)


fused.register(BasicBlock, _fused_basic_block)
fused.register_head(ConvHead, _fused_conv_head)


def convnet(width: float = 1.0, input_size: int = 32, channels: int = 32, num_layers: int = 6,
            downsample_at: int = 1, widen: bool = False, pretrained: str | None = None) -> BackboneSpec:
    """A residual conv net: a branchable stem and ``num_layers`` branchable blocks (see the module docstring).

    >>> spec = convnet(width=0.5, input_size=16)
    >>> spec.num_layers, spec.layer_names[:3], spec.params["channels"]
    (7, ['stem', 'block1', 'block2/2'], 16)
    """
    if pretrained:
        raise ConfigError("convnet has no pretrained weights; leave --pretrained unset")
    if num_layers < 1 or not 0 <= downsample_at < num_layers:
        raise ConfigError(f"convnet: need num_layers >= 1 and 0 <= downsample_at < num_layers, got "
                          f"{num_layers} and {downsample_at}")
    c = max(4, round(channels * width))
    # A linear stem (no ReLU) as the first branchable layer: with the stem shared by every task (even in
    # the Single network) a segmentation branch stayed at the all-background prediction on some seeds
    # (docs/embedded.md).
    stem = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
    templates, names, cin = [stem], ["stem"], c
    for i in range(num_layers):
        down = i == downsample_at
        cout = 2 * cin if down and widen else cin
        templates.append(BasicBlock(cin, cout, 2 if down else 1))
        names.append(f"block{i + 1}" + ("/2" if down else ""))
        cin = cout

    def make_head(task: Task) -> nn.Module:
        return ConvHead(cin, task.out_channels, c)

    return BackboneSpec(
        name="convnet",
        stem=nn.Identity,
        layers=[(lambda t=t: fresh_copy(t, True)) for t in templates],
        layer_names=names,
        make_head=make_head,
        input_shape=(3, input_size, input_size),
        params={"width": width, "channels": c, "num_layers": num_layers, "downsample_at": downsample_at,
                "widen": widen},
    )
