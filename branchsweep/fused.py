"""Evaluate ``k`` copies of one layer in a single *wide* call (horizontal fusion).

The BMTAS supergraph holds ``T`` copies of every backbone layer with the same structure and different
weights; fused retraining (:mod:`branchsweep.fused_train`) trains ``K`` networks of one backbone at
once, whose blocks of one layer are copies too. Where several of them read the same input (the tasks of one stream), running them one after
the other costs ``k`` small calls per operation; here they run as one operation over ``k`` times the
channels:

* a convolution on a shared input concatenates the ``k`` weights along the output channels (one
  convolution, ``k·C_out`` outputs); on a wide input it becomes a grouped convolution with ``k``
  times the groups (candidate ``j`` reads and writes channel block ``j``);
* BatchNorm is per channel, so the batch statistics, the normalisation and the running-statistics
  update of ``k·C`` channels are exactly those of the ``k`` separate BatchNorms (the concatenated running
  buffers are written back to each candidate);
* element-wise and per-channel operations (activations, pooling, interpolation) apply as they are;
  residual connections broadcast a shared input over the ``k`` blocks.

A *wide* tensor has candidate ``j``'s channels at ``[j·C, (j+1)·C)`` of dimension 1 (``[B, k·C, ...]``),
so ``wide.chunk(k, 1)[j]`` is exactly what candidate ``j`` alone returns. The result equals the
per-candidate evaluation up to floating-point summation order (tested), with the same parameters,
gradients and BatchNorm buffers; only the number of calls changes.

Fusion applies to layers built only from the modules listed in :data:`_HANDLERS` (sequential
containers, convolutions, BatchNorm, linear layers, activations, pooling, dropout, torchvision's
``InvertedResidual``, ``Bottleneck``, ``BasicBlock``, ``ASPP``); :func:`fusable` says whether a group of
candidates qualifies, and anything else runs candidate by candidate. Random operations (dropout in
training) draw their masks candidate by candidate in order, so even the random number stream is the
one of the sequential evaluation.

When to fuse is :func:`worth_fusing`: on a GPU when all candidates of a layer read the input (fewer,
larger kernels, shapes that stay the same from step to step), on a CPU only for small tensors, where
the calls are short and many. On a CPU, dilated depthwise convolutions take their input
gradient as a convolution with the flipped kernel (``_DilatedDepthwise``): PyTorch's CPU backward of
these takes 10–40 times the forward's time, most of all on the wide tensors of fused candidates; on
small channels-last maps their weight gradient is a sum of shifted products
(:func:`depthwise_weight_grad`). The same handlers evaluate single candidates too (``k = 1``), so this
applies without fusion as well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.segmentation.deeplabv3 import ASPP, ASPPPooling

Wide = tuple[torch.Tensor, bool]  # (tensor, shared): shared = one tensor that every candidate reads

_POINTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
    nn.GELU, nn.LeakyReLU, nn.ELU, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_RANDOM = (*_DROPOUT, nn.RReLU)
#: CPU: candidates are fused while their inputs together hold at most this many elements (:func:`worth_fusing`).
FUSE_LIMIT = 1 << 16


# ------------------------------------------------------------------------------------------ helpers
def spread(x: torch.Tensor, k: int) -> torch.Tensor:
    """The wide tensor of ``k`` candidates that all output ``x`` (``x`` repeated along dimension 1)."""
    return x if k == 1 else x.repeat(1, k, *([1] * (x.dim() - 2)))


def split(x: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """Candidate ``j``'s part of a wide tensor, for ``j < k`` (views)."""
    return x.chunk(k, dim=1)


def as_wide(value: Wide, k: int) -> torch.Tensor:
    """A wide tensor whatever ``value`` is (a shared tensor is spread over the ``k`` candidates)."""
    x, shared = value
    return spread(x, k) if shared else x


def add_residual(out: Wide, identity: Wide, k: int) -> Wide:
    """``identity + out`` per candidate, broadcasting whichever side is shared."""
    (y, y_shared), (x, x_shared) = out, identity
    if y_shared == x_shared:
        return x + y, y_shared
    if x_shared:
        return (x.unsqueeze(1) + y.unflatten(1, (k, -1))).flatten(1, 2), False
    return (x.unflatten(1, (k, -1)) + y.unsqueeze(1)).flatten(1, 2), False


class _DilatedDepthwise(torch.autograd.Function):
    """A stride-1 dilated depthwise convolution whose input gradient is a convolution too.

    The input gradient of a stride-1 convolution with "same" padding is the convolution of the output
    gradient with the flipped kernel; computed that way it costs what the forward costs, where
    PyTorch's CPU backward of dilated depthwise convolutions takes 10-40 times as long. The weight
    gradient is :func:`depthwise_weight_grad`.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding, dilation):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.conv = (padding, dilation, bias is not None)
        return F.conv2d(x, weight, bias, 1, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        padding, dilation, has_bias = ctx.conv
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip(-2, -1), None, 1, padding, dilation, x.shape[1])
        if has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(grad, x, weight, padding, dilation)
        return grad_x, grad_w, grad_b, None, None


#: Channels-last maps with at most this many positions (batch × height × width) take the depthwise
#: weight gradient by shifted slices (:func:`depthwise_weight_grad`).
SMALL_MAP = 512


def depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int],
                          dilation: tuple[int, int]) -> torch.Tensor:
    """The gradient of ``weight`` ``[C, 1, kh, kw]`` in a stride-1 depthwise convolution with "same" padding.

    ``dW[c, 0, i, j] = Σ_{n,y,x} g[n, c, y, x] · x[n, c, y + i·d_h - p_h, x + j·d_w - p_w]`` (out-of-range
    positions are the zero padding). On small channels-last maps (at most :data:`SMALL_MAP` positions)
    each tap is one product of the two overlapping windows, reduced over batch and space with the
    channels contiguous: on the 4×4 maps of the fused MobileNetV2 layers 4× faster than PyTorch's NCHW
    kernel and 8× its channels-last one, as fast as the latter on 8×8
    (``benchmarks/supergraph_cpu_profile.py --what kernels``). Larger maps use PyTorch's kernel in the
    tensors' own memory format, the faster one there.
    """
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    if not (x.is_contiguous(memory_format=torch.channels_last) and n * h * w <= SMALL_MAP):
        cl = x.is_contiguous(memory_format=torch.channels_last)
        fmt = torch.channels_last if cl else torch.contiguous_format
        return torch.ops.aten.convolution_backward(
            grad.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt), weight, None, [1, 1],
            list(padding), list(dilation), False, [0, 0], c, [False, True, False])[1]
    grad = grad.contiguous(memory_format=torch.channels_last)
    g_nhwc, x_nhwc = grad.permute(0, 2, 3, 1), x.permute(0, 2, 3, 1)  # contiguous: channels innermost
    out = x.new_zeros(kh * kw, c)  # a tap that reads only padding stays 0
    for i in range(kh):
        dy = i * dilation[0] - padding[0]
        y0, y1 = max(0, -dy), min(h, h - dy)
        for j in range(kw):
            dx = j * dilation[1] - padding[1]
            x0, x1 = max(0, -dx), min(w, w - dx)
            if y1 > y0 and x1 > x0:
                out[i * kw + j] = (g_nhwc[:, y0:y1, x0:x1] * x_nhwc[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx]).sum((0, 1, 2))
    return out.t().contiguous().view(c, 1, kh, kw)


def _fast_depthwise(conv: nn.Conv2d, x: torch.Tensor, groups: int) -> bool:
    """Whether :class:`_DilatedDepthwise` computes this convolution (CPU, depthwise, dilated, stride 1, same)."""
    if x.device.type != "cpu" or not isinstance(conv, nn.Conv2d) or groups != x.shape[1]:
        return False
    if torch.is_autocast_enabled("cpu") or x.dtype != conv.weight.dtype:
        return False  # mixed precision: PyTorch's own convolution casts; this Function would not
    if conv.stride != (1, 1) or conv.dilation == (1, 1) or conv.weight.shape[1] != 1:
        return False
    kh, kw = conv.kernel_size
    return 2 * conv.padding[0] == conv.dilation[0] * (kh - 1) and 2 * conv.padding[1] == conv.dilation[1] * (kw - 1)


def _cat(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """The tensors concatenated along dimension 0 (one of them as it is; None for absent parameters)."""
    if tensors[0] is None:
        return None
    return tensors[0] if len(tensors) == 1 else torch.cat(list(tensors))  # type: ignore[arg-type]


def _one_by_one(mods: Sequence[nn.Module], value: Wide) -> Wide:
    """Each candidate on its own part (or on the shared input), concatenated: the sequential order."""
    x, shared = value
    parts = [x] * len(mods) if shared else split(x, len(mods))
    return torch.cat([m(p) for m, p in zip(mods, parts)], dim=1), False


# ----------------------------------------------------------------------------------------- handlers
def _sequential(mods: Sequence[nn.Module], value: Wide) -> Wide:
    """Sequential containers: their children, position by position."""
    for children in zip(*(list(m) for m in mods)):
        value = run(children, value)
    return value


def _conv(mods: Sequence[nn.Conv2d | nn.Conv1d], value: Wide) -> Wide:
    """Convolutions: concatenated weights; ``k`` times the groups on a wide input."""
    c0, k = mods[0], len(mods)
    x, shared = value
    weight = _cat([m.weight for m in mods])
    bias = _cat([m.bias for m in mods])
    conv = F.conv2d if isinstance(c0, nn.Conv2d) else F.conv1d
    if shared and c0.groups != 1:  # grouped convolutions need each candidate's own copy of the input
        x, shared = spread(x, k), False
    groups = c0.groups if shared else c0.groups * k
    if _fast_depthwise(c0, x, groups) and weight.shape[0] == x.shape[1]:
        return _DilatedDepthwise.apply(x, weight, bias, c0.padding, c0.dilation), False
    return conv(x, weight, bias, c0.stride, c0.padding, c0.dilation, groups), False


def _batchnorm(mods: Sequence[nn.modules.batchnorm._BatchNorm], value: Wide) -> Wide:
    """BatchNorm over ``k·C`` channels, running statistics updated as ``k`` BatchNorms would."""
    b0, k = mods[0], len(mods)
    x = as_wide(value, k)
    factor = 0.0 if b0.momentum is None else b0.momentum
    if b0.training and b0.track_running_stats and b0.num_batches_tracked is not None:
        for m in mods:
            m.num_batches_tracked.add_(1)  # type: ignore[operator]
        if b0.momentum is None:  # cumulative average: 1 / batches seen, which may differ per candidate
            counts = {int(m.num_batches_tracked) for m in mods}  # type: ignore[arg-type]
            if len(counts) != 1:
                for m in mods:
                    m.num_batches_tracked.sub_(1)  # type: ignore[operator]
                return _one_by_one(mods, (x, False))
            factor = 1.0 / counts.pop()
    use_batch_stats = b0.training or (b0.running_mean is None and b0.running_var is None)
    keep = not b0.training or b0.track_running_stats
    mean = _cat([m.running_mean for m in mods]) if keep else None
    var = _cat([m.running_var for m in mods]) if keep else None
    y = F.batch_norm(x, mean, var, _cat([m.weight for m in mods]), _cat([m.bias for m in mods]),
                     use_batch_stats, factor, b0.eps)
    if mean is not None and use_batch_stats and k > 1:
        # Written through .data (no version bump), like BatchNorm's own update: a pending backward of
        # an earlier call of the same BatchNorm holds these buffers and checks their version.
        torch._foreach_copy_([m.running_mean.data for m in mods], list(mean.chunk(k)))
        torch._foreach_copy_([m.running_var.data for m in mods], list(var.chunk(k)))  # type: ignore[union-attr]
    return y, False


def _linear(mods: Sequence[nn.Linear], value: Wide) -> Wide:
    """Linear layers: one product on a shared input, a batched product on a wide one."""
    k = len(mods)
    x, shared = value
    bias = _cat([m.bias for m in mods])
    if shared:
        return F.linear(x, _cat([m.weight for m in mods]), bias), False  # type: ignore[arg-type]
    weight = torch.stack([m.weight for m in mods])  # [k, out, in]
    y = torch.bmm(x.unflatten(1, (k, -1)).transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1)
    if bias is not None:
        y = y + bias.view(k, -1)
    return y.flatten(1, 2), False


def _pointwise(mods: Sequence[nn.Module], value: Wide) -> Wide:
    """Parameter-free element-wise or per-channel modules: applied as they are (a shared input stays shared)."""
    x, shared = value
    return mods[0](x), shared


def _flatten(mods: Sequence[nn.Flatten], value: Wide) -> Wide:
    """``Flatten(1)``."""
    x, shared = value
    return mods[0](x), shared  # start_dim 1: candidate j's flattened features stay block j


def _dropout(mods: Sequence[nn.Module], value: Wide) -> Wide:
    """Dropout: nothing in evaluation or at p = 0, else masks drawn candidate by candidate."""
    m0 = mods[0]
    if not m0.training or getattr(m0, "p", 1.0) == 0.0:
        return value
    return _one_by_one(mods, value)  # masks drawn per candidate, in candidate order


def _inverted_residual(mods: Sequence[InvertedResidual], value: Wide) -> Wide:
    """torchvision's ``InvertedResidual``: its ``conv`` sequence plus the residual."""
    out = run([m.conv for m in mods], value)
    return add_residual(out, value, len(mods)) if mods[0].use_res_connect else out


def _bottleneck(mods: Sequence[Bottleneck | BasicBlock], value: Wide) -> Wide:
    """torchvision's ``Bottleneck`` and ``BasicBlock``, as their ``forward`` does it."""
    k = len(mods)
    names = ("conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3")
    if isinstance(mods[0], BasicBlock):
        names = ("conv1", "bn1", "relu", "conv2", "bn2")
    out = value
    for name in names:
        out = run([getattr(m, name) for m in mods], out)
    identity = value if mods[0].downsample is None else run([m.downsample for m in mods], value)
    out = add_residual(out, identity, k)
    return run([m.relu for m in mods], out)


def _aspp(mods: Sequence[ASPP], value: Wide) -> Wide:
    """torchvision's ``ASPP``: branches concatenated per candidate, then the projection."""
    k = len(mods)
    branches = [as_wide(run(group, value), k) for group in zip(*(list(m.convs) for m in mods))]
    res = torch.cat([b.unflatten(1, (k, -1)) for b in branches], dim=2).flatten(1, 2)
    return run([m.project for m in mods], (res, False))


def _aspp_pooling(mods: Sequence[ASPPPooling], value: Wide) -> Wide:
    """torchvision's ``ASPPPooling``: pooled branch, upsampled back to the input size."""
    size = value[0].shape[-2:]
    x, shared = _sequential(mods, value)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False), shared


_HANDLERS: dict[type, Callable[[Sequence, Wide], Wide]] = {
    nn.Sequential: _sequential,
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.Linear: _linear,
    nn.Flatten: _flatten,
    InvertedResidual: _inverted_residual,
    Bottleneck: _bottleneck,
    BasicBlock: _bottleneck,
    ASPP: _aspp,
    ASPPPooling: _aspp_pooling,
    **{t: _pointwise for t in _POINTWISE},
    **{t: _dropout for t in _DROPOUT},
}


def register(kind: type, handler: Callable[[Sequence, Wide], Wide]) -> None:
    """Give module type ``kind`` a fused form: ``handler(mods, value) -> value`` over ``k`` copies
    (a backbone registers its own block types next to their definition, e.g. ``convnet.BasicBlock``)."""
    _HANDLERS[kind] = handler


HeadHandler = Callable[[Sequence[nn.Module], torch.Tensor, Sequence[torch.Tensor], Any], torch.Tensor]
#: Fused forms of task heads (called ``head(final, skips, out_size)``): ``handler(heads, final, skips,
#: out_size)`` on wide tensors; heads without one run one by one (:func:`run_heads`).
_HEAD_HANDLERS: dict[type, HeadHandler] = {}


def register_head(kind: type, handler: HeadHandler) -> None:
    """Give head type ``kind`` a fused form (see :data:`_HEAD_HANDLERS`)."""
    _HEAD_HANDLERS[kind] = handler


def run_heads(heads: Sequence[nn.Module], final: torch.Tensor, skips: Sequence[torch.Tensor], out_size) -> torch.Tensor:
    """The ``k`` heads on their parts of the wide ``final`` and ``skips``, as one wide output."""
    handler = _HEAD_HANDLERS.get(type(heads[0]))
    if handler is not None:  # its submodules without a fused form fall back inside run()
        return handler(heads, final, skips, out_size)
    k = len(heads)
    parts = [split(s, k) for s in skips]
    return torch.cat([h(x, [p[j] for p in parts], out_size)
                      for j, (h, x) in enumerate(zip(heads, split(final, k)))], dim=1)


def unsupported(module: nn.Module) -> list[str]:
    """Names of the module types in ``module``'s tree that run copy by copy (no fused form)."""
    return sorted({type(m).__name__ for m in module.modules()
                   if _handler(m) is None and type(m) not in (nn.ModuleList, nn.ModuleDict)
                   and type(m) not in _HEAD_HANDLERS})


def _handler(module: nn.Module) -> Callable[[Sequence, Wide], Wide] | None:
    """The handler of ``module``'s type; ``Sequential`` subclasses that keep its ``forward`` count as one."""
    kind = type(module)
    if kind in _HANDLERS:
        return _HANDLERS[kind]
    if isinstance(module, nn.Sequential) and kind.forward is nn.Sequential.forward:
        return _sequential
    return None


def run(mods: Sequence[nn.Module], value: Wide) -> Wide:
    """Apply the ``k`` candidate modules ``mods`` to ``value`` (see the module docstring)."""
    handler = _handler(mods[0])
    if handler is None:
        return _one_by_one(mods, value)
    return handler(mods, value)


def worth_fusing(x: torch.Tensor, k: int, total: int) -> bool:
    """Whether ``k`` of a layer's ``total`` candidates, reading ``x``, should run as one wide call.

    On a GPU when all candidates do (``k == total``: relaxed samples), so that the fused shapes are the
    same at every step — ``cudnn.benchmark`` tunes every new shape, and hard samples would give a new
    ``k`` per stream and step; partial groups run one by one. On a CPU while the ``k`` inputs together
    stay small (at most :data:`FUSE_LIMIT` elements): there the calls are many and short, and fusing
    saves their overhead; on larger tensors one candidate's activations already fill the caches and a
    ``k`` times wider tensor is slower.
    """
    if x.device.type != "cpu":
        return k == total
    return k * x.numel() <= FUSE_LIMIT


# ------------------------------------------------------------------------------------------ planning
def _supported(module: nn.Module) -> bool:
    """Whether every module in ``module``'s tree has a fused form."""
    for m in module.modules():
        if _handler(m) is None and type(m) is not nn.ModuleList and type(m) not in _HEAD_HANDLERS:
            # module lists: the containers handled above; heads: their registered forms
            return False
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and (m.padding_mode != "zeros" or isinstance(m.padding, str)):
            return False
        if isinstance(m, nn.Flatten) and (m.start_dim != 1 or m.end_dim != -1):
            return False
        if getattr(m, "return_indices", False):  # pooling that returns (values, indices)
            return False
    return True


def _signature(module: nn.Module) -> list:
    """Everything the fused evaluation assumes equal between candidates."""
    sig = []
    for name, m in module.named_modules():
        sig.append((name, type(m), m.extra_repr(), getattr(m, "use_res_connect", None), getattr(m, "stride", None)))
    sig += [(name, tuple(p.shape)) for name, p in module.named_parameters()]
    sig += [(name, None if b is None else tuple(b.shape)) for name, b in module.named_buffers()]
    return sig


def fusable(candidates: Sequence[nn.Module]) -> bool:
    """Whether ``candidates`` (copies of one layer) can be evaluated together by :func:`evaluate`."""
    if not candidates or not all(_supported(c) for c in candidates):
        return False
    first = _signature(candidates[0])
    return all(_signature(c) == first for c in candidates[1:])


def random_ops(module: nn.Module) -> int:
    """How many modules in ``module``'s tree draw random numbers in training (dropout with p > 0, RReLU)."""
    return sum(isinstance(m, _RANDOM) and getattr(m, "p", 1.0) > 0 for m in module.modules())


def evaluate(candidates: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """The ``k`` candidates on the same input ``x``, as one wide tensor ``[B, k·C, ...]``.

    Equals ``torch.cat([c(x) for c in candidates], dim=1)`` (see the module docstring); the caller
    checks :func:`fusable` first. With one candidate this is that candidate's forward pass, with the
    CPU kernels chosen here (the dilated depthwise backward).
    """
    return as_wide(run(candidates, (x, True)), len(candidates))
