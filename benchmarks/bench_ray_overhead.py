"""Ray/Tune overhead per trial: the same trials as plain function calls vs a Tune sweep (both backends).

Runs ``--trials`` fixed LTB trials (tiny ltb-synthetic problem, so the work itself is seconds) three ways:

* ``plain``: :func:`branchsweep.pipeline.run_trial` called in a loop in this process;
* ``direct``: ``run_sweep(backend="direct")`` — Tune function trainable, trial in the reused worker;
* ``train``: ``run_sweep(backend="train")`` — every trial in its own Ray Train ``TorchTrainer``.

Each sweep runs with the Single baseline only, one trial at a time (``--concurrency 1``) on a local Ray
started for it, with its own caches (no retrain is shared across modes). Overhead per trial is
``(sweep wall time − plain wall time) / trials`` (Ray start-up and shutdown included); the ratio is
sweep / plain. Prints a Markdown table.

    python benchmarks/bench_ray_overhead.py --trials 4 --out /tmp/bench-ray
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.pipeline import SweepCaches, run_trial
from branchsweep.sweep import SearchSpace, SweepBase, SweepConfig, run_sweep, to_trial_config

#: The benchmark problem: small enough that Ray's share of the wall time is what is measured.
BASE = SweepBase(
    data=DataConfig(dataset="ltb-synthetic", train_samples=64, val_samples=16, tasks=["bent_0", "square_0", "sinc_0"]),
    model=ModelConfig(backbone="mlp", width=0.16),
    train=TrainConfig(iterations=20, batch_size=16, eval_batch_size=16, progress=False),
    search_defaults={"ltb": {"iterations": 20, "batch_size": 16}},
)


def points(n: int) -> list[dict]:
    """``n`` distinct LTB settings (τ0 varies), plus the Single baseline every mode also trains."""
    return [{"method": "ltb", "seed": 0, "ltb.child_nodes": 1 + i % 3, "ltb.schedule": "inverse_sqrt",
             "ltb.tau0": 10.0 + 10 * i} for i in range(n)]


def plain(n: int, out: Path) -> float:
    caches = SweepCaches(out / "cache")
    t0 = time.perf_counter()
    run_trial(to_trial_config({"method": "single", "seed": 0}, BASE, baseline=True), out / "single", caches)
    for i, p in enumerate(points(n)):
        run_trial(to_trial_config(p, BASE), out / f"t{i}", caches)
    return time.perf_counter() - t0


def sweep(n: int, out: Path, backend: str) -> float:
    cfg = SweepConfig(name=f"bench-{backend}", out=out, base=BASE, space=SearchSpace(methods=("ltb",)),
                      num_trials=n, concurrency=1, cpus_per_trial=1.0, backend=backend, points=points(n),
                      baselines=("single",), report=False, verbose=False, num_cpus=2, max_failures=0)
    t0 = time.perf_counter()
    outcome = run_sweep(cfg)
    wall = time.perf_counter() - t0
    failed = [r for r in outcome.rows if r.get("status") != "ok"]
    if failed:
        raise SystemExit(f"{backend}: {len(failed)} trial(s) failed: {failed[0].get('error')}")
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=4, help="search trials per mode (plus the Single baseline)")
    p.add_argument("--modes", default="plain,direct,train", help="comma-separated subset of plain,direct,train")
    p.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temp folder, removed)")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-ray-"))
    modes = args.modes.split(",")
    n = args.trials
    walls = {}
    # Warm the imports first so "plain" is not charged torch/torchvision import time a Ray worker also pays.
    plain(1, out / "warm")
    for mode in modes:
        walls[mode] = plain(n, out / mode) if mode == "plain" else sweep(n, out / mode, mode)
        print(f"{mode}: {walls[mode]:.1f} s for {n + 1} trials", flush=True)
    ref = walls.get("plain")
    print(f"\n| mode | wall (s), {n + 1} trials | per trial (s) | overhead per trial vs plain (s) | ratio |")
    print("|---|---|---|---|---|")
    for mode, wall in walls.items():
        over = f"{(wall - ref) / (n + 1):.1f}" if ref else "-"
        ratio = f"{wall / ref:.2f}" if ref else "-"
        print(f"| {mode} | {wall:.1f} | {wall / (n + 1):.1f} | {over} | {ratio} |")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
