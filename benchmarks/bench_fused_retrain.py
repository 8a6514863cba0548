"""Fused vs one-at-a-time retraining at the main job's recipe: throughput and peak memory.

For K = 1, 3, 5, 10 networks (the K seeds of one tree, as a trial's replicates are) and 1 and 2 threads,
each configuration runs in a fresh process: ``--steps`` training steps of

* ``fused``: :func:`branchsweep.fused_train.train_replicates` (one wide network, one step for all K);
* ``alone``: :func:`branchsweep.train.train_network` on each network in turn (the trainer before fusion).

It prints (markdown) the throughput in networks × steps per second, the ratio fused / alone measured in
the same run, and the peak memory each process added over what it held before training (resident set
size: ``ru_maxrss`` minus the RSS after loading data and building the models, i.e. activations,
gradients and optimiser state) and the process's whole peak. The recipe (data,
backbone, retrain settings) is ``sweeps/synthetic_pareto.py``'s; ``--tree`` picks the tree
(``related``: shared stem and two blocks, then the designed groups; ``single``; ``shared``);
``--channels-last`` runs both sides channels-last.

    .venv/bin/python benchmarks/bench_fused_retrain.py                 # ~5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_fused_retrain.py --ks 1,3 --threads 1 --steps 10   # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tree_of(name: str, tasks: list[str], num_layers: int):
    from branchsweep.arch import BranchConfig
    from branchsweep.data.synthetic_dense import RELATED_GROUPS

    if name == "single":
        return BranchConfig.single(tasks, num_layers)
    if name == "shared":
        return BranchConfig.shared(tasks, num_layers)
    groups = [[t for t in g if t in tasks] for g in RELATED_GROUPS]
    groups = [g for g in groups if g]
    return BranchConfig.from_groups(tasks, [[tasks]] * 3 + [groups] * (num_layers - 3))


def measure(mode: str, k: int, threads: int, steps: int, tree: str, channels_last: bool) -> dict:
    """One configuration, in this process: seconds for ``steps`` steps of ``k`` networks, peak memory added."""
    import torch

    sys.path.insert(0, str(ROOT / "sweeps"))
    import synthetic_pareto

    from branchsweep.data import create_data
    from branchsweep.factory import build_model, build_spec
    from branchsweep.fused_train import Replicate, train_replicates
    from branchsweep.train import train_network

    torch.set_num_threads(threads)
    preset = synthetic_pareto.PRESET
    data = create_data(preset.data)
    tasks = data.select_tasks(preset.data.tasks)
    spec = build_spec(preset.model, data)
    config = tree_of(tree, [t.name for t in tasks], spec.num_layers)
    cfg = dataclasses.replace(preset.train, iterations=steps, progress=False, channels_last=channels_last)
    reps = [Replicate(build_model(spec, tasks, config, seed), dataclasses.replace(cfg, seed=seed)) for seed in range(k)]
    before = _rss_kib()  # data, models and libraries; what training adds comes on top
    # One warm-up step of one network outside the clock (first-call costs of the kernels).
    train_network(build_model(spec, tasks, config, 99), data, tasks, dataclasses.replace(cfg, iterations=1))
    t0 = time.perf_counter()
    if mode == "fused":
        train_replicates(reps, data, tasks)
    else:
        for r in reps:
            train_network(r.model, data, tasks, r.cfg)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "throughput": k * steps / seconds, "peak_added_mib": max(0, peak - before) / 1024,
            "peak_mib": peak / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="1,3,5,10")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tree", default="related", choices=("related", "single", "shared"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = parser.parse_args(argv)
    if args.one:
        mode, k, threads = args.one.split(":")
        print(json.dumps(measure(mode, int(k), int(threads), args.steps, args.tree, args.channels_last)))
        return 0
    ks = [int(k) for k in args.ks.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    print(f"Fused retraining vs one at a time: main job recipe, tree `{args.tree}`, {args.steps} steps, "
          f"{'channels-last' if args.channels_last else 'contiguous'}; {os.cpu_count()} CPUs\n")
    print("| threads | K | alone (net·steps/s) | fused (net·steps/s) | fused / alone | training memory alone / fused "
          "(MiB) | process peak alone / fused (MiB) | process peak fused / alone |")
    print("|---|---|---|---|---|---|---|---|")
    for t in threads:
        for k in ks:
            row = {}
            for mode in ("alone", "fused"):
                cmd = [sys.executable, __file__, "--one", f"{mode}:{k}:{t}", "--steps", str(args.steps),
                       "--tree", args.tree] + (["--channels-last"] if args.channels_last else [])
                env = {**os.environ, "OMP_NUM_THREADS": str(t)}
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
                row[mode] = json.loads(out.strip().splitlines()[-1])
            a, f = row["alone"], row["fused"]
            print(f"| {t} | {k} | {a['throughput']:.1f} | {f['throughput']:.1f} | "
                  f"{f['throughput'] / a['throughput']:.2f}× | {a['peak_added_mib']:.0f} / {f['peak_added_mib']:.0f} | "
                  f"{a['peak_mib']:.0f} / {f['peak_mib']:.0f} | {f['peak_mib'] / a['peak_mib']:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
