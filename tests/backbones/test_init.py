"""New layers of the BMTAS backbones start as in the authors' code (``src/models.py``,
``_initialize_weights``): Kaiming normal with fan_out for every convolution, zero biases, BatchNorm 1/0,
and the prediction layer (``logits``) N(0, 0.01²); not PyTorch's default (Kaiming uniform, a = √5)."""

import math

import pytest
import torch
from torch import nn

from branchsweep.arch import BranchConfig
from branchsweep.backbones import create_backbone
from branchsweep.network import BranchedNetwork
from branchsweep.tasks import create_task


def _convs(module: nn.Module):
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]


def _check_kaiming_fan_out(module: nn.Module) -> int:
    checked = 0
    for name, conv in _convs(module):
        if conv.bias is not None:
            assert float(conv.bias.detach().abs().max()) == 0.0, name
        if name.endswith("logits"):
            assert abs(float(conv.weight.detach().std()) - 0.01) < 0.002, name
            continue
        if conv.weight.numel() < 2000:  # too few weights for a sharp std estimate
            continue
        _, fan_out = nn.init._calculate_fan_in_and_fan_out(conv.weight)
        expected = math.sqrt(2.0 / fan_out)
        assert abs(float(conv.weight.detach().std()) / expected - 1) < 0.15, (name, float(conv.weight.detach().std()), expected)
        checked += 1
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()
    return checked


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet50"])
def test_aspp_decoders_and_random_layers_use_kaiming_fan_out(backbone):
    torch.manual_seed(0)
    spec = create_backbone(backbone, width=0.5, input_size=32)
    tasks = [create_task("semseg", num_classes=21), create_task("normals")]
    net = BranchedNetwork(spec, tasks, BranchConfig.single([t.name for t in tasks], spec.num_layers))
    aspp = net.blocks[-1][0]
    assert _check_kaiming_fan_out(aspp) >= 1
    for head in net.heads.values():
        assert _check_kaiming_fan_out(head) >= 2
        assert abs(float(head.logits.weight.detach().std()) - 0.01) < 0.002
    # without ImageNet weights the encoder blocks and the stem start the same way
    assert _check_kaiming_fan_out(net.stem) + sum(_check_kaiming_fan_out(b[0]) for b in net.blocks[:-1]) >= 10


def test_pytorch_default_init_would_fail_the_check():
    """The check tells the two initialisations apart (PyTorch's default std is √(1 / (3·fan_in)))."""
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 256, 3, bias=False)  # fan_in 576, fan_out 2304: default std 0.024, Kaiming fan_out 0.029
    with pytest.raises(AssertionError):
        _check_kaiming_fan_out(nn.Sequential(conv))
