"""Reproduce Learning to Branch, Figure 3 (a), (b) and (c) with the package defaults, over seeds.

Every search is what ``branchsweep search --method ltb --dataset ltb-synthetic --activations ...
--tasks-per-activation 5 --seed S`` runs with nothing else given: the paper's network (``mlp_select``:
four fully connected blocks of three child nodes of 100 units, then every task picks one node of block
4 and adds its own bias), 500 epochs of batch 100 with 50 warm-up epochs, Adam 1e-3, τ = 50/√(1+it),
and Eq. 8's targets as written (``normalize=input_dim``). ``--normalize activation_std`` is the named
variant that gives every activation unit-variance targets (its own rows).

* **(a)** bent / square / sinc × 5 tasks: one leaf branch per activation. Scored by the adjusted Rand
  index (ARI) of the *leaf grouping* (each task's node of block 4, :func:`leaf_groups`) against the
  activation labels; the paper's grouping is ARI 1.
* **(b)** sin × 1, 2, 3 (output multipliers) × 5 tasks: the paper finds all tasks sharing all
  intermediate layers; reported: whether blocks 1–3 are shared by all tasks, and the ARI against the
  scales (tasks that own only a bias cannot share block 4 across scales).
* **(c)** cos / sinc / square × 5 tasks: cos and sinc share a deeper branch than square. Scored by the
  mean depth of the lowest common ancestor of two tasks (number of leading layers they share), between
  groups: the check holds when ``depth(cos, sinc) > depth(cos, square)`` and ``> depth(sinc, square)``.

Each seed draws new data (B, δ_s, Z), new weights and new Gumbel noise. Nothing is written unless
``--out`` is given (a CSV of the per-seed rows)::

    python benchmarks/ltb_synthetic_ari.py --settings a,b,c --seeds 5
    python benchmarks/ltb_synthetic_ari.py --settings a --seeds 5 --normalize activation_std
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from branchsweep.arch import BranchConfig
from branchsweep.backbones import create_backbone
from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.search import SearchContext
from branchsweep.search.ltb import LTBConfig, adjusted_rand_index, leaf_groups, run_search

SETTINGS = {
    "a": {"activations": ["bent", "square", "sinc"], "scales": [1.0, 1.0, 1.0]},
    "b": {"activations": ["sin", "sin", "sin"], "scales": [1.0, 2.0, 3.0]},
    "c": {"activations": ["cos", "sinc", "square"], "scales": [1.0, 1.0, 1.0]},
}


def shared_depth(config: BranchConfig, i: int, j: int) -> int:
    """Number of leading layers in which tasks ``i`` and ``j`` are in one node (their common branch)."""
    depth = 0
    for layer in range(config.num_layers):
        if config.group_of(layer, i) != config.group_of(layer, j):
            break
        depth += 1
    return depth


def group_depths(config: BranchConfig, labels: list[int]) -> dict[tuple[int, int], float]:
    """Mean :func:`shared_depth` over the task pairs of every two different label groups."""
    out = {}
    for a, b in itertools.combinations(sorted(set(labels)), 2):
        pairs = [(i, j) for i, la in enumerate(labels) for j, lb in enumerate(labels) if la == a and lb == b]
        out[(a, b)] = statistics.mean(shared_depth(config, i, j) for i, j in pairs)
    return out


def run_one(setting: str, seed: int, args: argparse.Namespace) -> dict:
    """One search of ``setting`` with ``seed`` at the package defaults (plus the given overrides)."""
    options = {**SETTINGS[setting], "tasks_per_activation": args.tasks_per_activation}
    if args.normalize:
        options["normalize"] = args.normalize
    if args.input_std is not None:
        options["input_std"] = args.input_std
    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=args.train_samples, seed=seed,
                                  options=options))
    tasks = list(data.tasks.values())
    spec = create_backbone(args.backbone or data.default_backbone, input_dim=data.input_shape[0])
    overrides = {k: v for k, v in (("epochs", args.epochs), ("iterations", args.iterations),
                                   ("arch_lr", args.arch_lr)) if v is not None}
    cfg = LTBConfig(**overrides)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_search(cfg, SearchContext(data, spec, tasks, Path(tmp), seed=seed, progress=False))
        seconds = time.perf_counter() - start
    config = result.config
    labels = [data.info["groups"][t.name] for t in tasks]
    # "intermediate" = the blocks before the last fully connected one (blocks 1-3 of the paper's four)
    intermediate = config.num_layers - 1 - int(spec.layer_names[-1] == "select")
    depths = group_depths(config, labels)
    row = {
        "setting": setting, "seed": seed, "ari": adjusted_rand_index(leaf_groups(config), labels),
        "groups_per_layer": "-".join(str(config.num_groups(layer)) for layer in range(config.num_layers)),
        "all_shared": all(config.num_groups(layer) == 1 for layer in range(intermediate)),
        "depths": " ".join(f"{a}{b}:{d:.1f}" for (a, b), d in depths.items()),
        "val_loss": result.info["val_loss"], "iterations": result.info["iterations"], "seconds": seconds,
        "leaves": " | ".join(",".join(g) for g in config.groups(config.num_layers - 2)),
    }
    if setting == "c":  # groups 0 cos, 1 sinc, 2 square
        row["c_holds"] = depths[(0, 1)] > max(depths[(0, 2)], depths[(1, 2)])
    return row


def summary(setting: str, rows: list[dict]) -> str:
    aris = [r["ari"] for r in rows]
    sd = statistics.stdev(aris) if len(aris) > 1 else 0.0
    se = sd / len(aris) ** 0.5
    line = (f"setting {setting}: ARI {statistics.mean(aris):.3f} ± {se:.3f} (s.e.) over {len(rows)} seeds, "
            f"ARI >= 0.9 in {sum(a >= 0.9 for a in aris)}/{len(rows)}, blocks 1-3 shared in "
            f"{sum(r['all_shared'] for r in rows)}/{len(rows)}")
    if setting == "c":
        line += f", cos+sinc deeper than square in {sum(r['c_holds'] for r in rows)}/{len(rows)}"
    return line + f", {statistics.mean(r['seconds'] for r in rows):.0f} s per search"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="a,b,c", help="comma-separated: a, b, c")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--tasks-per-activation", type=int, default=5)
    p.add_argument("--normalize", default=None,
                   help="ltb-synthetic normalize variant (default: the data set's, Eq. 8 as written)")
    p.add_argument("--input-std", type=float, default=None, help="ltb-synthetic input_std (default: the data set's)")
    p.add_argument("--backbone", default=None, help="default: the data set's (mlp_select)")
    p.add_argument("--epochs", type=float, default=None, help="search epochs (default: the method's, 500)")
    p.add_argument("--iterations", type=int, default=None, help="search iterations (overrides --epochs)")
    p.add_argument("--arch-lr", type=float, default=None,
                   help="Adam lr of the branching logits (default: the method's, 0.01; the paper's 1e-7 is for θ)")
    p.add_argument("--train-samples", type=int, default=None, help="default: the data set's (2000)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny matmuls: 1 is fastest)")
    p.add_argument("--out", type=Path, default=None, help="optional CSV of the per-seed rows")
    args = p.parse_args(argv)
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        p.error(f"unknown setting {unknown[0]!r} (known: {', '.join(SETTINGS)})")
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'set':>3} {'seed':>4} {'ARI':>6} {'groups':>12} {'shared':>6} {'val loss':>10} {'time s':>7}  "
          "shared depth between groups | leaf groups", flush=True)
    for setting in settings:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            row = run_one(setting, seed, args)
            rows.append(row)
            print(f"{setting:>3} {seed:>4} {row['ari']:6.3f} {row['groups_per_layer']:>12} {row['all_shared']!s:>6} "
                  f"{row['val_loss']:10.4g} {row['seconds']:7.1f}  {row['depths']} | {row['leaves']}", flush=True)
    print()
    for setting in settings:
        print(summary(setting, [r for r in rows if r["setting"] == setting]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
