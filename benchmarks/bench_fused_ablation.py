"""What each part of the supergraph's fused CPU path is worth: one ablation per part, same run.

The per-task soft weight step of BMTAS (``TrainStep(per_task=True)``, relaxed Gumbel-softmax weights)
on the MobileNetV2 supergraph with the five PASCAL-Context tasks, timed with each part of
:mod:`branchsweep.fused` switched off in turn:

* ``all``: the default;
* ``no fusion``: candidates never fused (``FUSE_LIMIT`` below any tensor);
* ``no dilated input gradient``: dilated depthwise convolutions back-propagate through PyTorch's own
  CPU kernel;
* ``no shifted weight gradient``: their weight gradient is PyTorch's kernel on small maps too
  (``SMALL_MAP`` below any map);
* ``plain``: ``Supergraph(fuse=False)``, plain module calls.

Every variant holds the same parameters and computes the same values; the variants run interleaved
(one weight step each per repetition, after one untimed), the table shows the median process CPU time
and its ratio to ``all``, for NCHW and channels-last. One thread by default.

Run: ``.venv/bin/python benchmarks/bench_fused_ablation.py [--sizes 64,128] [--reps 5] [--width 1.0]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch

from branchsweep import fused
from branchsweep.backbones import create_backbone
from branchsweep.loop import Runtime, TrainStep
from branchsweep.search.bmtas import BMTASConfig, weight_optimizer
from branchsweep.search.supergraph import Supergraph, gumbel_softmax_weights
from branchsweep.tasks import create_task

TASKS = ("semseg", "human_parts", "sal", "normals", "edge")
VARIANTS = ("all", "no fusion", "no dilated input gradient", "no shifted weight gradient", "plain")


@contextlib.contextmanager
def switched_off(variant: str) -> Iterator[None]:
    """Patch :mod:`branchsweep.fused` so that ``variant``'s part is not used."""
    saved = fused.FUSE_LIMIT, fused._fast_depthwise, fused.SMALL_MAP
    if variant == "no fusion":
        fused.FUSE_LIMIT = -1
    elif variant == "no dilated input gradient":
        fused._fast_depthwise = lambda *args: False
    elif variant == "no shifted weight gradient":
        fused.SMALL_MAP = -1
    try:
        yield
    finally:
        fused.FUSE_LIMIT, fused._fast_depthwise, fused.SMALL_MAP = saved


def weight_step(size: int, width: float, batch: int, channels_last: bool, plain: bool) -> Callable[[], None]:
    """One per-task soft weight step of a fresh supergraph on a fixed random batch."""
    spec = create_backbone("mobilenet_v2", width=width, input_size=size)
    tasks = [create_task(t) for t in TASKS]
    runtime = Runtime("cpu", channels_last=channels_last)
    torch.manual_seed(0)
    model = runtime.prepare(Supergraph(spec, tasks, fuse=not plain).train())
    cfg = BMTASConfig(per_task=True)
    opt, sched = weight_optimizer(model, cfg, cfg.iterations)
    step = TrainStep([opt], tasks, runtime, schedulers=[sched], per_task=True)
    g = torch.Generator().manual_seed(0)
    batch_data = runtime.batch({
        "image": torch.randn(batch, 3, size, size, generator=g),
        "semseg": torch.randint(0, 21, (batch, size, size), generator=g),
        "human_parts": torch.randint(0, 7, (batch, size, size), generator=g),
        "sal": torch.randint(0, 2, (batch, 1, size, size), generator=g).float(),
        "normals": torch.nn.functional.normalize(torch.randn(batch, 3, size, size, generator=g), dim=1),
        "edge": torch.randint(0, 2, (batch, 1, size, size), generator=g).float(),
    })

    def run() -> None:
        w = gumbel_softmax_weights(model.alpha.detach(), 1.0, False, g)
        step(lambda x, tasks=None: model(x, weights=w, tasks=tasks), batch_data)

    return run


def measure(size: int, width: float, batch: int, channels_last: bool, reps: int) -> dict[str, float]:
    """Median CPU milliseconds per weight step of every variant, interleaved."""
    steps = {v: weight_step(size, width, batch, channels_last, v == "plain") for v in VARIANTS}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for rep in range(reps + 1):
        for v, fn in steps.items():
            with switched_off(v):
                t0 = time.process_time()
                fn()
                if rep:
                    times[v].append((time.process_time() - t0) * 1e3)
    return {v: statistics.median(t) for v, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        print(f"error: bad --sizes {args.sizes!r}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 32 or args.reps < 1 or args.batch_size < 2 or args.width <= 0:
        print("error: need sizes >= 32, --reps >= 1, --batch-size >= 2 and --width > 0", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    print(f"per-task soft weight step, MobileNetV2 width {args.width}, {len(TASKS)} tasks, batch {args.batch_size}, "
          f"{args.threads} thread(s); median CPU time of {args.reps} interleaved repetitions, ratio to 'all'")
    print("| size | memory format | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for size in sizes:
        for channels_last in (False, True):
            ms = measure(size, args.width, args.batch_size, channels_last, args.reps)
            cells = [f"{ms[v]:.0f} ms" + ("" if v == "all" else f" ({ms[v] / ms['all']:.2f}×)") for v in VARIANTS]
            print(f"| {size}² | {'channels-last' if channels_last else 'NCHW'} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
