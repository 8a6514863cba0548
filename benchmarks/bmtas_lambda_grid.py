"""BMTAS over a grid of λ on synthetic-dense: exported MAdds, groups per layer, where related tasks split.

The embedded scenes are built so that {semseg, parts, sal, edge} share the object layout and
{depth, normals} share the geometry (``branchsweep.data.synthetic_dense.RELATED_GROUPS``). A good
resource-aware search exports fewer MAdds as λ grows, from Single-like at λ = 0 towards Shared, and
keeps related tasks together longer than unrelated ones. This script prints that table (markdown) for
a λ grid, one search per λ, all sharing one warm-up (it does not depend on λ).

    .venv/bin/python benchmarks/bmtas_lambda_grid.py --lambdas 0,2,50 --iterations 100
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch

from branchsweep.backbones import create_backbone
from branchsweep.config import DataConfig, from_mapping
from branchsweep.data import create_data
from branchsweep.search import SearchContext
from branchsweep.search.bmtas import BMTASConfig, run_search


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lambdas", default="0,2,50", help="comma-separated λ values (normalized mode)")
    p.add_argument("--tasks", default="semseg,sal,depth,normals")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--width", type=float, default=0.1)
    p.add_argument("--train-samples", type=int, default=64)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--warmup-iterations", type=int, default=20)
    p.add_argument("--arch-lr", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = args.tasks.split(",")
    data = create_data(DataConfig(dataset="synthetic-dense", size=args.size, train_samples=args.train_samples,
                                  val_samples=8, seed=args.seed))
    spec = create_backbone("mobilenet_v2", width=args.width, input_size=args.size)
    pairs = list(itertools.combinations(names, 2))
    print(f"mobilenet_v2 width {args.width}, {args.size}×{args.size}, {args.train_samples} scenes, tasks {names}, "
          f"normalized mode, hard samples, {args.warmup_iterations} warm-up + {args.iterations} iterations, "
          f"arch lr {args.arch_lr}, seed {args.seed}")
    print("| λ | exported MAdds (M) | groups per layer | " + " | ".join(f"{a}–{b} split at" for a, b in pairs)
          + " | search (s) |")
    print("|---" * (4 + len(pairs)) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for lam in (float(v) for v in args.lambdas.split(",")):
            cfg = from_mapping(BMTASConfig, dict(
                lam=lam, resource_mode="normalized", hard=True, iterations=args.iterations,
                warmup_iterations=args.warmup_iterations, batch_size=8, arch_lr=args.arch_lr,
                weight_steps_per_arch=1, checkpoint_every=0, warmup_cache=str(Path(tmp) / "warm")))
            ctx = SearchContext(data=data, spec=spec, tasks=data.select_tasks(names), out_dir=Path(tmp) / f"l{lam}",
                                seed=args.seed, progress=False, cache_dir=Path(tmp) / "cache")
            t0 = time.perf_counter()
            result = run_search(cfg, ctx)
            config = result.config
            groups = ",".join(str(config.num_groups(layer)) for layer in range(config.num_layers))
            split = [config.branch_layer(a, b) for a, b in pairs]
            cells = " | ".join("never" if s is None else str(s) for s in split)
            print(f"| {lam:g} | {result.info['madds'] / 1e6:.3f} | {groups} | {cells} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
