"""Where a soft BMTAS search step spends its CPU time, and what three alternatives are worth (one thread).

The numbers behind docs/supergraph.md's "Where the time goes" and "Tried and not adopted":

* ``profile``: ``torch.profiler`` of the search's default soft weight step (per task a forward and
  backward pass and an SGD step; MobileNetV2 supergraph, the five PASCAL-Context tasks, batch 4,
  channels-last — the ``soft`` configuration of ``bench_vs_reference.py``), operator self time summed
  into convolutions, BatchNorm, the optimiser, concatenation and the rest;
* ``kernels``: the weight gradient of dilated depthwise convolutions on the shapes of that step —
  PyTorch's kernel on NCHW copies (the path before ``fused.depthwise_weight_grad``), PyTorch's kernel in
  channels-last, and ``depthwise_weight_grad`` — median CPU milliseconds;
* ``optimizer``: one SGD step (momentum, weight decay) over the supergraph's parameters with PyTorch's
  default CPU loop and with its fused kernel (not used: its updates differ in the last bit);
* ``compile`` (minutes of compilation): the per-task supergraph pass, forward and backward for the five
  tasks, eager and ``torch.compile`` (Inductor), NCHW and channels-last.

Run: ``.venv/bin/python benchmarks/supergraph_cpu_profile.py [--what profile,kernels,optimizer,compile]
[--size 64] [--reps 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import torch

WHAT = ("profile", "kernels", "optimizer", "compile")
TASKS = ("semseg", "human_parts", "sal", "normals", "edge")
#: (shape, dilation) of the dilated depthwise convolutions in the step at 64² (fused: 5 × 960 channels) and 128².
DEPTHWISE = [((4, 4800, 4, 4), 2), ((4, 960, 8, 8), 2), ((16, 960, 16, 16), 2)]
CATEGORIES = {
    "convolution": ("conv", "mkldnn"),
    "BatchNorm": ("batch_norm",),
    "concatenation": ("aten::cat",),
}


def median_ms(fn: Callable[[], object], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) * 1e3)
    return statistics.median(times)


def supergraph(size: int, channels_last: bool):
    from branchsweep.backbones import create_backbone
    from branchsweep.loop import Runtime
    from branchsweep.search.supergraph import Supergraph
    from branchsweep.tasks import create_task

    torch.manual_seed(0)
    spec = create_backbone("mobilenet_v2", width=1.0, input_size=size)
    runtime = Runtime("cpu", channels_last=channels_last)
    return spec, runtime.prepare(Supergraph(spec, [create_task(t) for t in TASKS]).train()), runtime


def profile(size: int) -> None:
    import bench_vs_reference as ref
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    harness = ref.branchsweep_harness("soft", size, 4, tempfile.mkdtemp(prefix="branchsweep-profile-"))
    harness.weight_step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        harness.weight_step()
    totals = dict.fromkeys([*CATEGORIES, "optimiser steps", "the rest"], 0.0)
    for event in prof.key_averages():
        if event.key.startswith("Optimizer.step"):  # its element-wise aten ops are counted here, not below
            totals["optimiser steps"] += event.cpu_time_total / 1e6
            totals["the rest"] -= event.cpu_time_total / 1e6
        if not event.key.startswith("aten::"):
            continue
        kind = next((k for k, marks in CATEGORIES.items() if any(m in event.key for m in marks)), "the rest")
        totals[kind] += event.self_cpu_time_total / 1e6
    print(f"soft weight step at {size}², operator time {sum(totals.values()):.2f} s:")
    for kind, seconds in totals.items():
        print(f"  {kind}: {seconds:.2f} s")


def kernels(reps: int) -> None:
    print("| shape | dilation | PyTorch, NCHW copy | PyTorch, channels-last | depthwise_weight_grad |")
    print("|---|---|---|---|---|")
    for shape, d in DEPTHWISE:
        cells = _kernel_times(shape, d, reps)
        print(f"| {list(shape)} | {d} | " + " | ".join(f"{c:.2f} ms" for c in cells) + " |")


def _kernel_times(shape: tuple[int, ...], d: int, reps: int) -> list[float]:
    from branchsweep.fused import depthwise_weight_grad

    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    g = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    w = torch.randn(shape[1], 1, 3, 3)

    def aten(fmt):
        return torch.ops.aten.convolution_backward(
            g.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt), w, None, [1, 1], [d, d], [d, d],
            False, [0, 0], shape[1], [False, True, False])[1]

    return [median_ms(lambda: aten(torch.contiguous_format), reps), median_ms(lambda: aten(torch.channels_last), reps),
            median_ms(lambda: depthwise_weight_grad(g, x, w, (d, d), (d, d)), reps)]


def optimizer(size: int, reps: int) -> None:
    _, model, _ = supergraph(size, channels_last=True)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    out = []
    for fused in (None, True):
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4, fused=fused)
        out.append(median_ms(opt.step, reps))
    print(f"SGD step over {len(params)} tensors: default loop {out[0]:.1f} ms, fused {out[1]:.1f} ms "
          f"({out[0] / out[1]:.2f}×)")


def compiled(size: int, reps: int) -> None:
    for channels_last in (False, True):
        (eager, _), (comp, first) = _compile_times(size, channels_last, reps)
        fmt = "channels-last" if channels_last else "NCHW"
        print(f"5 task passes at {size}², {fmt}: eager {eager:.0f} ms, compiled {comp:.0f} ms "
              f"({eager / comp:.2f}×; first call {first:.0f} s)")


def _compile_times(size: int, channels_last: bool, reps: int) -> list[tuple[float, float]]:
    """(median ms, first call s) of the five task passes, eager and compiled."""
    from branchsweep.search.supergraph import gumbel_softmax_weights

    spec, model, runtime = supergraph(size, channels_last)
    model.fuse = False  # plain module calls: one static graph per task pass

    def body(x, w):  # one task's route: stem, Σ_j w[l, j] · candidate_j, the skip features
        h, skips = model.stem(x), []
        for layer, blocks in enumerate(model.candidates):
            h = sum(w[layer, j] * block(h) for j, block in enumerate(blocks))
            if layer in spec.skip_layers:
                skips.append(h)
        return h, skips

    x = runtime.batch({"image": torch.randn(4, 3, size, size)})["image"]
    weights = gumbel_softmax_weights(model.alpha.detach(), 1.0)
    out = []
    for fn in (body, torch.compile(body)):
        def step(fn=fn):
            for t in range(len(TASKS)):
                h, skips = fn(x, weights[:, t])
                (h.square().mean() + skips[0].square().mean()).backward()
        t0 = time.perf_counter()
        step()  # compiles on the first call
        first = time.perf_counter() - t0
        out.append((median_ms(step, reps), first))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--what", default="profile,kernels,optimizer", help=f"any of {', '.join(WHAT)}")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args(argv)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    bad = [w for w in what if w not in WHAT]
    if bad or not what or args.size < 32 or args.reps < 1:
        print(f"error: --what takes {', '.join(WHAT)}; --size >= 32; --reps >= 1"
              + (f" (got {bad[0]!r})" if bad else ""), file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    runs = {"profile": lambda: profile(args.size), "kernels": lambda: kernels(args.reps),
            "optimizer": lambda: optimizer(args.size, args.reps),
            "compile": lambda: compiled(args.size, max(1, args.reps // 2))}
    for w in what:
        runs[w]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
