"""Search iterations per second: routed supergraph vs a naive one running every candidate for every task.

One *iteration* is what the BMTAS loop does per weight update: a weight step (forward + backward with
Gumbel-softmax routing, α detached) and, every ``--weight-steps-per-arch`` steps, an α step (forward +
backward with α in the graph). All supergraphs hold identical parameters and compute identical
outputs (tests/search/test_supergraph.py): ``routed`` (the default ``Supergraph``: routing, fused wide
calls and the CPU kernels of ``branchsweep.fused``), ``routed, plain`` (the same routing with
plain module calls, ``fuse=False``) and ``naive`` (every candidate for every task).

Run: ``.venv/bin/python benchmarks/bench_supergraph.py [--tasks 6] [--size 32] [--width 0.25] [--steps 10]``
"""

from __future__ import annotations

import argparse
import time

import torch

from branchsweep.backbones import create_backbone
from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.loop import epoch_batches
from branchsweep.search.supergraph import NaiveSupergraph, Supergraph, gumbel_softmax_weights


def measure(make, spec, tasks, batches, steps: int, hard: bool, warmup: bool, k: int, tau: float) -> tuple[float, float]:
    torch.manual_seed(0)
    model = make(spec, tasks).train()
    opt = torch.optim.SGD(model.weight_parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for step in range(steps):
        batch = next(batches)
        passes = [False] if warmup else ([True, False] if step % k == 0 else [False])
        for arch in passes:
            if warmup:
                out = model(batch["image"], ops=model.warmup_ops())
            else:
                alpha = model.alpha if arch else model.alpha.detach()
                out = model(batch["image"], weights=gumbel_softmax_weights(alpha, tau, hard, gen))
            loss = sum(t.loss(out[t.name], batch[t.name]) for t in tasks)
            opt.zero_grad(set_to_none=True)
            model.alpha.grad = None
            loss.backward()
            if not arch:
                opt.step()
    elapsed = time.perf_counter() - t0
    return steps / elapsed, model.evaluations / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--weight-steps-per-arch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = create_data(DataConfig(dataset="synthetic-dense", size=args.size, train_samples=64, seed=0))
    tasks = data.select_tasks(None)[: args.tasks]
    spec = create_backbone("mobilenet_v2", width=args.width, input_size=args.size)
    print(f"mobilenet_v2 width {args.width}, {args.size}×{args.size}, batch {args.batch_size}, {len(tasks)} tasks, "
          f"{args.steps} iterations, {args.threads} thread(s), α step every {args.weight_steps_per_arch}")
    print("| phase | routed (it/s) | routed, plain (it/s) | naive (it/s) | routed / naive | block evals / it, routed | naive |")
    print("|---|---|---|---|---|---|---|")
    for label, hard, warm in [("warm-up", False, True), ("search, relaxed (τ=1)", False, False),
                              ("search, hard straight-through", True, False)]:
        row = []
        plain = lambda spec, tasks: Supergraph(spec, tasks, fuse=False)  # noqa: E731
        for make in (Supergraph, plain, NaiveSupergraph):
            batches = epoch_batches(data.split("train"), args.batch_size, 0)
            row.append(measure(make, spec, tasks, batches, args.steps, hard, warm, args.weight_steps_per_arch, 1.0))
        (fast, ev_f), (plain_speed, _), (slow, ev_s) = row
        print(f"| {label} | {fast:.2f} | {plain_speed:.2f} | {slow:.2f} | {fast / slow:.2f}× | {ev_f:.0f} | {ev_s:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
