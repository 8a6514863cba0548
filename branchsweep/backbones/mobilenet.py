"""``mobilenet_v2``: torchvision's MobileNetV2 as 17 inverted-residual layers + R-ASPP (BMTAS setup).

Output stride 16: the stride-2 block of the 160-channel stage runs at stride 1 and the blocks after it
use dilation 2 (as DeepLab does). The first convolution is the always-shared stem; layer 1 is the
first inverted-residual block, layer 18 the R-ASPP module (a 1×1 branch plus image pooling, i.e.
torchvision's ASPP without atrous branches, 128 channels, ReLU6 and dropout 0.1 before the projection
as in the BMTAS reference code; the supergraph drops the dropout). Each task has a DeepLabv3+
decoder with depthwise-separable convolutions fed by layer 3's stride-4 features. Layers that do not
start from ImageNet weights (R-ASPP, decoders; every layer without ``pretrained``) are initialised as
in the authors' code: Kaiming normal (fan_out), logits N(0, 0.01²) (:func:`kaiming_fan_out_`).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import MobileNet_V2_Weights
from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

from branchsweep.backbones.base import BackboneSpec, fresh_copy, kaiming_fan_out_
from branchsweep.backbones.heads import ASPP_DROPOUT, DeepLabV3PlusDecoder, aspp
from branchsweep.backbones.pretrained import load_pretrained
from branchsweep.tasks import Task

LOW_LEVEL_LAYER = 2  # 0-based: the third inverted-residual block, 24·width channels at stride 4


def _dilate(block: nn.Module, stride_to_one: bool, dilation: int) -> None:
    """Make an inverted-residual block atrous: its depthwise 3×3 conv gets ``dilation``."""
    dw = block.conv[-3][0]
    if stride_to_one:
        dw.stride = (1, 1)
    dw.dilation = (dilation, dilation)
    dw.padding = (dilation, dilation)


def mobilenet_v2(
    width: float = 1.0, pretrained: str | None = None, input_size: int = 512, aspp_channels: int = 128,
    decoder_channels: int = 128,
) -> BackboneSpec:
    """MobileNetV2 + R-ASPP + DeepLabv3+ decoders, output stride 16, width multiplier ``width``."""
    model = tv_mobilenet_v2(weights=None, width_mult=width)
    if pretrained:
        load_pretrained(model, pretrained, MobileNet_V2_Weights.IMAGENET1K_V1, width)
    reinit = not pretrained
    feats = model.features
    _dilate(feats[14], stride_to_one=True, dilation=1)
    for i in (15, 16, 17):
        _dilate(feats[i], stride_to_one=False, dilation=2)
    blocks = [feats[i] for i in range(1, 18)]
    last_channels = blocks[-1].conv[-1].num_features
    low_channels = blocks[LOW_LEVEL_LAYER].conv[-1].num_features
    aspp_ch = max(8, round(aspp_channels * width))
    dec_ch = max(8, round(decoder_channels * width))
    raspp = aspp(last_channels, [], aspp_ch, activation=nn.ReLU6)
    templates: list[nn.Module] = [*blocks, raspp]
    stem = feats[0]

    def make_head(task: Task) -> nn.Module:
        return DeepLabV3PlusDecoder(aspp_ch, low_channels, task.out_channels, dec_ch, separable=True,
                                    activation=nn.ReLU6)

    return BackboneSpec(
        name="mobilenet_v2",
        stem=lambda: fresh_copy(stem, reinit, kaiming_fan_out_),
        layers=[(lambda t=t, pre=(reinit or t is raspp): fresh_copy(t, pre, kaiming_fan_out_)) for t in templates],
        layer_names=[f"ir{i}" for i in range(1, 18)] + ["r-aspp"],
        make_head=make_head,
        input_shape=(3, input_size, input_size),
        skip_layers=(LOW_LEVEL_LAYER,),
        params={"width": width, "pretrained": bool(pretrained), "aspp_channels": aspp_ch, "decoder_channels": dec_ch,
                "aspp_dropout": ASPP_DROPOUT},
    )
