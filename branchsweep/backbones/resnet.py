"""``resnet50``: torchvision's ResNet-50 as 16 bottleneck layers + ASPP, DeepLabv3+ decoders.

Dilated to output stride 16 (``replace_stride_with_dilation=[False, False, True]``), the stem (conv1,
bn, relu, max-pool) always shared, each bottleneck block one branchable layer and ASPP (rates 6, 12,
18; 256 channels; dropout 0.1 before the projection, none in the supergraph) the last one. Each task has a DeepLabv3+ decoder fed by the last block of stage 1
(stride 4). ``width`` scales every stage's bottleneck channels (the stem keeps 64), so CPU tests can
use a narrow ResNet-50 of the same depth.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.resnet import Bottleneck, ResNet

from branchsweep.backbones.base import BackboneSpec, fresh_copy
from branchsweep.backbones.heads import ASPP_DROPOUT, DeepLabV3PlusDecoder, aspp
from branchsweep.backbones.pretrained import load_pretrained
from branchsweep.tasks import Task

LOW_LEVEL_LAYER = 2  # 0-based: the last block of stage 1 (256·width channels, stride 4)


class _ScaledResNet(ResNet):
    """torchvision's ResNet with every stage's ``planes`` multiplied by ``width``."""

    def __init__(self, width: float, **kwargs) -> None:
        self._width = width
        super().__init__(Bottleneck, [3, 4, 6, 3], **kwargs)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        return super()._make_layer(block, max(4, round(planes * self._width)), blocks, stride, dilate)


def resnet50(
    width: float = 1.0, pretrained: str | None = None, input_size: int = 512, aspp_channels: int = 256,
    decoder_channels: int = 256, atrous_rates: tuple[int, ...] = (6, 12, 18),
) -> BackboneSpec:
    """Dilated ResNet-50 (output stride 16) + ASPP + DeepLabv3+ decoders."""
    model = _ScaledResNet(width, replace_stride_with_dilation=[False, False, True])
    if pretrained:
        load_pretrained(model, pretrained, ResNet50_Weights.IMAGENET1K_V1, width)
    reinit = not pretrained
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
    last_channels = blocks[-1].bn3.num_features
    low_channels = blocks[LOW_LEVEL_LAYER].bn3.num_features
    aspp_ch = max(8, round(aspp_channels * width))
    dec_ch = max(8, round(decoder_channels * width))
    aspp_layer = aspp(last_channels, atrous_rates, aspp_ch)
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    names = [f"s{s}b{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(1, n + 1)]

    def make_head(task: Task) -> nn.Module:
        return DeepLabV3PlusDecoder(aspp_ch, low_channels, task.out_channels, dec_ch, separable=False)

    return BackboneSpec(
        name="resnet50",
        stem=lambda: fresh_copy(stem, reinit),
        layers=[(lambda t=t, pre=(reinit or t is aspp_layer): fresh_copy(t, pre)) for t in [*blocks, aspp_layer]],
        layer_names=[*names, "aspp"],
        make_head=make_head,
        input_shape=(3, input_size, input_size),
        skip_layers=(LOW_LEVEL_LAYER,),
        params={"width": width, "pretrained": bool(pretrained), "aspp_channels": aspp_ch,
                "decoder_channels": dec_ch, "atrous_rates": list(atrous_rates), "aspp_dropout": ASPP_DROPOUT},
    )
