"""``resnet50``: torchvision's ResNet-50 as 16 bottleneck layers + ASPP, DeepLabv3+ decoders;
``resnet34``: ResNet-34 as 16 residual blocks with one ASPP decoder per task (Learning to Branch, Taskonomy).

Dilated to output stride 16 (``replace_stride_with_dilation=[False, False, True]``), the stem (conv1,
bn, relu, max-pool) always shared, each bottleneck block one branchable layer and ASPP (rates 6, 12,
18; 256 channels; dropout 0.1 before the projection, none in the supergraph) the last one. Each task has a DeepLabv3+ decoder fed by the last block of stage 1
(stride 4). ``width`` scales every stage's bottleneck channels (the stem keeps 64), so CPU tests can
use a narrow ResNet-50 of the same depth. ResNet-50's layers that do not start from ImageNet weights
(ASPP, decoders; every layer without ``pretrained``) are initialised as in the BMTAS authors' code:
Kaiming normal (fan_out), logits N(0, 0.01²) (:func:`~branchsweep.backbones.base.kaiming_fan_out_`).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet34_Weights, ResNet50_Weights
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from branchsweep.backbones.base import BackboneSpec, fresh_copy, kaiming_fan_out_
from branchsweep.backbones.heads import ASPP_DROPOUT, ASPPHead, DeepLabV3PlusDecoder, aspp
from branchsweep.backbones.pretrained import load_pretrained
from branchsweep.errors import ConfigError
from branchsweep.tasks import Task

LOW_LEVEL_LAYER = 2  # 0-based: the last block of stage 1 (256·width channels, stride 4)


class _ScaledResNet(ResNet):
    """torchvision's ResNet with every stage's ``planes`` multiplied by ``width``."""

    def __init__(self, width: float, block: type[nn.Module] = Bottleneck, **kwargs) -> None:
        self._width = width
        super().__init__(block, [3, 4, 6, 3], **kwargs)

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
        stem=lambda: fresh_copy(stem, reinit, kaiming_fan_out_),
        layers=[(lambda t=t, pre=(reinit or t is aspp_layer): fresh_copy(t, pre, kaiming_fan_out_))
                for t in [*blocks, aspp_layer]],
        layer_names=[*names, "aspp"],
        make_head=make_head,
        input_shape=(3, input_size, input_size),
        skip_layers=(LOW_LEVEL_LAYER,),
        params={"width": width, "pretrained": bool(pretrained), "aspp_channels": aspp_ch,
                "decoder_channels": dec_ch, "atrous_rates": list(atrous_rates), "aspp_dropout": ASPP_DROPOUT},
    )


def _dilate(stage: nn.Sequential, dilation: int) -> None:
    """Turn a BasicBlock stage's stride 2 into dilation (torchvision's BasicBlock refuses dilation > 1)."""
    for block in stage:
        for conv in (block.conv1, block.conv2):
            if conv.stride == (2, 2):
                conv.stride = (1, 1)
            conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


def resnet34(
    width: float = 1.0, pretrained: str | None = None, input_size: int = 256, aspp_channels: int = 256,
    atrous_rates: tuple[int, ...] = (6, 12, 18), output_stride: int = 8,
) -> BackboneSpec:
    """ResNet-34 (16 branchable residual blocks) + one ASPP decoder per task (Learning to Branch §4.3).

    The stem (conv1, bn, relu, max-pool) is always shared; each BasicBlock is one branchable layer, so a
    Learning-to-Branch search can branch after every residual block. Stages 3 and 4 are dilated
    (rates 2 and 4) for output stride 8, or stage 4 only (rate 2) for 16, the DeepLab convention for
    dense prediction. Each task's head is :class:`ASPPHead` (``aspp_channels``, ``atrous_rates``).
    ``width`` scales every stage (the stem keeps 64) so CPU tests can use a narrow network.
    """
    if output_stride not in (8, 16, 32):
        raise ConfigError(f"resnet34: output_stride must be 8, 16 or 32, got {output_stride}")
    model = _ScaledResNet(width, block=BasicBlock)
    if pretrained:
        load_pretrained(model, pretrained, ResNet34_Weights.IMAGENET1K_V1, width)
    if output_stride <= 16:
        _dilate(model.layer4, 2 if output_stride == 16 else 4)
    if output_stride == 8:
        _dilate(model.layer3, 2)
    reinit = not pretrained
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
    last_channels = blocks[-1].bn2.num_features
    aspp_ch = max(8, round(aspp_channels * width))
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    names = [f"s{s}b{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(1, n + 1)]

    def make_head(task: Task) -> nn.Module:
        return ASPPHead(last_channels, task.out_channels, aspp_ch, atrous_rates)

    return BackboneSpec(
        name="resnet34",
        stem=lambda: fresh_copy(stem, reinit),
        layers=[(lambda t=t: fresh_copy(t, reinit)) for t in blocks],
        layer_names=names,
        make_head=make_head,
        input_shape=(3, input_size, input_size),
        params={"width": width, "pretrained": bool(pretrained), "aspp_channels": aspp_ch,
                "atrous_rates": list(atrous_rates), "output_stride": output_stride},
    )
