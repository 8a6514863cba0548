"""Task heads: the DeepLabv3+ decoder for dense tasks and small heads for vector tasks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.ops import Conv2dNormActivation

from branchsweep import fused
from branchsweep.backbones.base import kaiming_fan_out_

#: Dropout of the (R-)ASPP module when a branched network is trained (the BMTAS reference code's
#: ``drop_rate=0.1`` on the retrained network; the supergraph runs without dropout).
ASPP_DROPOUT = 0.1


def to_label_size(x: torch.Tensor, out_size) -> torch.Tensor:
    """Dense head output ``x`` upsampled bilinearly to the label resolution ``out_size`` (None: as it is)."""
    if out_size is None:
        return x
    return F.interpolate(x, size=tuple(out_size), mode="bilinear", align_corners=False)


def aspp(in_channels: int, atrous_rates: Sequence[int], out_channels: int, activation: type[nn.Module] = nn.ReLU,
         dropout: float = ASPP_DROPOUT) -> ASPP:
    """torchvision's ASPP with the BMTAS reference layout: ``activation`` everywhere and ``dropout`` on the
    concatenated branches *before* the 1×1 projection (torchvision: ReLU, Dropout(0.5) after it).

    With no atrous rates this is the R-ASPP of MobileNetV2 (a 1×1 branch plus image pooling).
    """
    module = ASPP(in_channels, list(atrous_rates), out_channels)
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, activation())
    conv, bn, act, _ = module.project
    module.project = nn.Sequential(nn.Dropout(dropout), conv, bn, act)
    return module


class DeepLabV3PlusDecoder(nn.Module):
    """DeepLabv3+ decoder (Chen et al., ECCV 2018), one per task.

    The encoder output (after (R-)ASPP, stride 16) is upsampled to the low-level skip features
    (stride 4), concatenated with their 48-channel 1×1 projection, refined by two 3×3 convolutions
    (depthwise-separable for MobileNetV2, as in BMTAS) and mapped to ``out_channels`` logits, which are
    upsampled bilinearly to the input resolution.
    """

    def __init__(
        self,
        in_channels: int,
        low_channels: int,
        out_channels: int,
        channels: int = 256,
        separable: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        low = 48
        self.low_reduce = Conv2dNormActivation(low_channels, low, 1, activation_layer=activation)
        cin = in_channels + low
        if separable:
            self.refine = nn.Sequential(
                Conv2dNormActivation(cin, cin, 3, groups=cin, activation_layer=activation),
                Conv2dNormActivation(cin, channels, 1, activation_layer=activation),
                Conv2dNormActivation(channels, channels, 3, groups=channels, activation_layer=activation),
                Conv2dNormActivation(channels, channels, 1, activation_layer=activation),
            )
        else:
            self.refine = nn.Sequential(
                Conv2dNormActivation(cin, channels, 3, activation_layer=activation),
                Conv2dNormActivation(channels, channels, 3, activation_layer=activation),
            )
        self.logits = nn.Conv2d(channels, out_channels, 1)
        kaiming_fan_out_(self)  # the BMTAS reference's init: Kaiming normal (fan_out), logits N(0, 0.01²)

    def forward(self, final: torch.Tensor, skips: Sequence[torch.Tensor], out_size) -> torch.Tensor:
        low = skips[0]
        x = F.interpolate(final, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([self.low_reduce(low), x], dim=1)
        return to_label_size(self.logits(self.refine(x)), out_size)


class ASPPHead(nn.Module):
    """A task's ASPP decoder (DeepLabv3, Chen et al. 2017): atrous spatial pyramid pooling over the
    last layer's features, a 1×1 convolution to ``out_channels`` logits, bilinear upsampling to the
    input resolution. Learning to Branch's Taskonomy heads (ResNet-34 + ASPP, after Sun et al. 2019)."""

    def __init__(self, in_channels: int, out_channels: int, channels: int = 256,
                 atrous_rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import ASPP

        self.aspp = ASPP(in_channels, list(atrous_rates), channels)
        self.logits = nn.Conv2d(channels, out_channels, 1)

    def forward(self, final: torch.Tensor, skips: Sequence[torch.Tensor], out_size) -> torch.Tensor:
        return to_label_size(self.logits(self.aspp(final)), out_size)


class LinearHead(nn.Module):
    """A linear map from the last layer's features to the task output (vector tasks)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, final: torch.Tensor, skips: Sequence[torch.Tensor], out_size) -> torch.Tensor:
        return self.fc(torch.flatten(final, 1))


class BiasHead(nn.Module):
    """A task-specific bias on the last layer's output (Learning to Branch, synthetic experiment)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, final: torch.Tensor, skips: Sequence[torch.Tensor], out_size) -> torch.Tensor:
        return final + self.bias


# ------------------------------------------------------------------------------- fused forms (k copies)
def _fused_linear_head(heads: Sequence[LinearHead], final: torch.Tensor, skips, out_size) -> torch.Tensor:
    return fused.as_wide(fused.run([h.fc for h in heads], (torch.flatten(final, 1), False)), len(heads))


def _fused_bias_head(heads: Sequence[BiasHead], final: torch.Tensor, skips, out_size) -> torch.Tensor:
    return final + torch.cat([h.bias for h in heads])


fused.register_head(LinearHead, _fused_linear_head)
fused.register_head(BiasHead, _fused_bias_head)
