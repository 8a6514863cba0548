"""Fused (wide) candidate evaluation equals the candidate-by-candidate one: values, gradients, buffers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.segmentation.deeplabv3 import ASPP

from branchsweep import fused


def _blocks(make, k: int = 3) -> list[nn.Module]:
    torch.manual_seed(0)
    blocks = [make().double().train() for _ in range(k)]
    for b in blocks:  # non-trivial BatchNorm parameters and statistics
        for m in b.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.affine:
                    nn.init.uniform_(m.weight, 0.5, 1.5)
                    nn.init.uniform_(m.bias, -0.5, 0.5)
                m.running_mean.uniform_(-1, 1)
    return blocks


def _compare(make, x: torch.Tensor, k: int = 3, shared: bool = True, train: bool = True) -> None:
    """``fused.evaluate`` vs each block on its own: outputs, input/parameter gradients, buffers."""
    blocks = _blocks(make, k)
    twins = copy.deepcopy(blocks)
    for b in blocks + twins:
        b.train(train)
    assert fused.fusable(blocks)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    wide = fused.evaluate(blocks, xa) if shared else fused.as_wide(fused.run(blocks, (xa, False)), k)
    parts = xb.chunk(k, 1) if not shared else [xb] * k
    ref = torch.cat([b(p) for b, p in zip(twins, parts)], dim=1)
    torch.testing.assert_close(wide, ref)
    g = torch.randn_like(ref)
    (wide * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    for pa, pb in zip((p for b in blocks for p in b.parameters()), (p for b in twins for p in b.parameters())):
        torch.testing.assert_close(pa.grad, pb.grad)
    for ba, bb in zip((t for b in blocks for t in b.buffers()), (t for b in twins for t in b.buffers())):
        torch.testing.assert_close(ba, bb)


def test_inverted_residual_with_and_without_residual():
    x = torch.randn(4, 8, 6, 6, dtype=torch.float64)
    _compare(lambda: InvertedResidual(8, 8, 1, 6), x)  # residual, expansion
    _compare(lambda: InvertedResidual(8, 12, 2, 1), x)  # stride 2, no expansion: depthwise on the shared input
    _compare(lambda: InvertedResidual(8, 8, 1, 6), x.repeat(1, 3, 1, 1), shared=False)  # wide input


def test_dilated_depthwise_path():
    def dilated():
        block = InvertedResidual(8, 8, 1, 6)
        dw = block.conv[1][0]
        dw.dilation, dw.padding = (2, 2), (2, 2)
        return block

    x = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    _compare(dilated, x)
    _compare(dilated, x.contiguous(memory_format=torch.channels_last))
    _compare(dilated, torch.randn(2, 8, 20, 20, dtype=torch.float64))
    _compare(dilated, torch.randn(2, 8, 20, 20, dtype=torch.float64).contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("size,kernel,dilation", [((2, 5, 4, 4), 3, (2, 2)), ((3, 4, 6, 5), 3, (1, 3)),
                                                  ((1, 6, 7, 7), 5, (2, 1)), ((2, 3, 3, 3), 3, (4, 4)),
                                                  ((4, 3, 12, 12), 3, (2, 2))])
def test_depthwise_weight_grad_equals_pytorchs(size, kernel, dilation, channels_last):
    # shifted-slice taps on small channels-last maps (incl. taps wholly in the padding), PyTorch's kernel
    # otherwise (the last size has 576 > SMALL_MAP positions)
    x = torch.randn(size, dtype=torch.float64)
    g = torch.randn(size, dtype=torch.float64)
    if channels_last:
        x, g = x.contiguous(memory_format=torch.channels_last), g.contiguous(memory_format=torch.channels_last)
    w = torch.randn(size[1], 1, kernel, kernel, dtype=torch.float64)
    padding = (dilation[0] * (kernel - 1) // 2, dilation[1] * (kernel - 1) // 2)
    expected = torch.ops.aten.convolution_backward(g.contiguous(), x.contiguous(), w, None, [1, 1], list(padding),
                                                   list(dilation), False, [0, 0], size[1], [False, True, False])[1]
    got = fused.depthwise_weight_grad(g, x, w, padding, dilation)
    assert got.shape == w.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("block", ["bottleneck", "bottleneck-down", "basic"])
def test_resnet_blocks(block):
    down = lambda: nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))  # noqa: E731
    makers = {"bottleneck": lambda: Bottleneck(16, 4), "bottleneck-down": lambda: Bottleneck(8, 4, 2, down()),
              "basic": lambda: BasicBlock(8, 8)}
    channels = 16 if block == "bottleneck" else 8
    _compare(makers[block], torch.randn(3, channels, 5, 5, dtype=torch.float64))


def test_aspp_in_eval_and_training():
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    _compare(lambda: ASPP(8, [2], 6), x, train=False)
    torch.manual_seed(3)
    blocks = _blocks(lambda: ASPP(8, [2], 6))
    twins = copy.deepcopy(blocks)
    torch.manual_seed(7)
    wide = fused.evaluate(blocks, x)
    torch.manual_seed(7)  # dropout masks are drawn candidate by candidate, in order
    ref = torch.cat([b(x) for b in twins], dim=1)
    torch.testing.assert_close(wide, ref)


def test_linear_layers_and_vector_inputs():
    make = lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4, bias=False))  # noqa: E731
    _compare(make, torch.randn(3, 6, dtype=torch.float64))
    _compare(make, torch.randn(3, 18, dtype=torch.float64), shared=False)


def test_batchnorm_cumulative_average_with_unequal_counts():
    def make():
        return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=None))

    blocks = _blocks(make)
    blocks[1][1].num_batches_tracked += 3  # candidate 1 has seen more batches: factors differ
    twins = copy.deepcopy(blocks)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(fused.evaluate(blocks, x), torch.cat([b(x) for b in twins], dim=1))
    for a, b in zip(blocks, twins):
        torch.testing.assert_close(a[1].running_mean, b[1].running_mean)
        assert int(a[1].num_batches_tracked) == int(b[1].num_batches_tracked)


def test_dilated_depthwise_gradcheck():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w, b: fused._DilatedDepthwise.apply(x, w, b, (2, 2), (2, 2))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    torch.testing.assert_close(fn(x, w, b), F.conv2d(x, w, b, 1, 2, 2, 3))
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(fn, (xc, w, b))


def test_what_is_not_fusable():
    class Custom(nn.Module):
        def forward(self, x):
            return x * 2

    assert not fused.fusable([nn.Sequential(nn.Conv2d(2, 2, 1), Custom()) for _ in range(2)])
    assert not fused.fusable([nn.Conv2d(2, 2, 1), nn.Conv2d(2, 3, 1)])  # different shapes
    assert not fused.fusable([nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect") for _ in range(2)])
    assert fused.random_ops(nn.Sequential(nn.Dropout(0.5), nn.Dropout(0.0), nn.ReLU())) == 1


def test_fusion_policy():
    assert fused.worth_fusing(torch.zeros(4, 16, 4, 4), 3, 5)  # CPU: small tensors
    assert not fused.worth_fusing(torch.zeros(4, 32, 64, 64), 5, 5)
    meta = torch.zeros(4, 32, 64, 64, device="meta")  # not a CPU tensor: all candidates or none
    assert fused.worth_fusing(meta, 5, 5) and not fused.worth_fusing(meta, 3, 5)
