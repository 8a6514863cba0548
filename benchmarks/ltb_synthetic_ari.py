"""Reproduce Learning to Branch, Figure 3 (a) and (b): does the search group tasks by activation?

Setting (a): 15 tasks from bent / square / sinc (5 each). The tree should put tasks of one activation
in one leaf branch and different activations in different ones: we score the *leaf grouping* (each
task's node in the last layer before its own node, see :func:`branchsweep.search.ltb.leaf_groups`)
against the activation labels with the adjusted Rand index (1 = exactly the activation grouping).

Setting (b): 15 tasks from sin with output multipliers 1, 2, 3. The paper finds all tasks sharing all
intermediate layers; we report the fraction of seeds where blocks 1-3 are shared by all tasks (and the
ARI of the leaf grouping against the scales).

Defaults follow the paper's network: ``mlp_select`` (four fully connected blocks of three child nodes
each, then every task picks one node of the fourth block and adds its own bias), 5000 iterations of
batch 100 (250 epochs of 2000 samples), targets normalised per activation (``activation_std``: every
task contributes a loss of the same scale, as "equally weighted" tasks should; with Eq. 8's φ = 200
alone the ``square`` tasks dominate the loss ~30×, see ``branchsweep/data/ltb_synthetic.py``).

Each seed draws new data (B, δ_s, Z), new weights and new Gumbel noise. Nothing is written unless
``--out`` is given (a CSV of the per-seed rows)::

    .venv/bin/python benchmarks/ltb_synthetic_ari.py --seeds 5
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch

from branchsweep.backbones import create_backbone
from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.search import SearchContext
from branchsweep.search.ltb import LTBConfig, adjusted_rand_index, leaf_groups, run_search

SETTINGS = {
    "a": {"activations": ["bent", "square", "sinc"], "scales": [1.0, 1.0, 1.0]},
    "b": {"activations": ["sin", "sin", "sin"], "scales": [1.0, 2.0, 3.0]},
}


def run_one(setting: str, seed: int, args: argparse.Namespace) -> dict:
    """One search of ``setting`` with ``seed``; returns the table row."""
    options = {**SETTINGS[setting], "tasks_per_activation": 5, "normalize": args.normalize,
               "input_std": args.input_std}
    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=args.train_samples, val_samples=500,
                                  seed=seed, options=options))
    tasks = list(data.tasks.values())
    spec = create_backbone(args.backbone, input_dim=200)
    cfg = LTBConfig(child_nodes=None, iterations=args.iterations, batch_size=100, lr=1e-3,
                    arch_lr=args.arch_lr, schedule="inverse_sqrt", tau0=50.0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_search(cfg, SearchContext(data, spec, tasks, Path(tmp), seed=seed, progress=False))
        seconds = time.perf_counter() - start
    config = result.config
    labels = [data.info["groups"][t.name] for t in tasks]
    # "intermediate" = the blocks before the last fully connected one (blocks 1-3 of the paper's four):
    # the last block is per task in ``mlp``, and in ``mlp_select`` it is where tasks that need different
    # outputs must part, since they own only a bias.
    intermediate = config.num_layers - 1 - int(spec.layer_names[-1] == "select")
    shared = all(config.num_groups(layer) == 1 for layer in range(intermediate))
    return {
        "setting": setting, "seed": seed, "ari": adjusted_rand_index(leaf_groups(config), labels),
        "groups_per_layer": "-".join(str(config.num_groups(layer)) for layer in range(config.num_layers)),
        "all_shared": shared, "val_loss": result.info["val_loss"], "seconds": seconds,
        "leaves": " | ".join(",".join(g) for g in config.groups(config.num_layers - 2)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="a,b", help="comma-separated: a, b")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--backbone", default="mlp_select",
                   help="mlp_select (the paper's: tasks pick a node of block 4) or mlp (tasks own block 4)")
    p.add_argument("--iterations", type=int, default=5000, help="search iterations (batch 100; warm-up 10%%)")
    p.add_argument("--train-samples", type=int, default=2000)
    p.add_argument("--arch-lr", type=float, default=0.01)
    p.add_argument("--normalize", default="activation_std",
                   help="ltb-synthetic normalize option (input_dim: Eq. 8's φ alone; activation_std: per activation)")
    p.add_argument("--input-std", type=float, default=1.0, help="ltb-synthetic input_std option")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny matmuls: 1 is fastest)")
    p.add_argument("--out", type=Path, default=None, help="optional CSV of the per-seed rows")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'set':>3} {'seed':>4} {'ARI':>6} {'groups':>10} {'shared':>6} {'val loss':>9} {'time s':>7}  leaf groups")
    for setting in args.settings.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            row = run_one(setting, seed, args)
            rows.append(row)
            print(f"{setting:>3} {seed:>4} {row['ari']:6.3f} {row['groups_per_layer']:>10} {row['all_shared']!s:>6} "
                  f"{row['val_loss']:9.5f} {row['seconds']:7.1f}  {row['leaves']}", flush=True)
    print()
    for setting in args.settings.split(","):
        sel = [r for r in rows if r["setting"] == setting]
        aris = [r["ari"] for r in sel]
        sd = statistics.stdev(aris) if len(aris) > 1 else 0.0
        print(f"setting {setting}: ARI {statistics.mean(aris):.3f} ± {sd:.3f} over {len(sel)} seeds, "
              f"ARI = 1 in {sum(a == 1.0 for a in aris)}/{len(sel)}, blocks 1-3 shared in "
              f"{sum(r['all_shared'] for r in sel)}/{len(sel)}, {statistics.mean(r['seconds'] for r in sel):.1f} s per search")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
