"""Embedded Pareto sweep: BMTAS and Learning to Branch on synthetic-dense at CPU size, with baselines.

The README's main job. No data to download: procedural 16×16 scenes, three dense tasks (semseg, depth,
normals), MobileNetV2 at width 0.1. Single and Shared baselines, then 8 Optuna trials over the method,
λ, the temperature schedule and τ0, and LTB's child-node count; a few minutes on 2 CPU cores.

    python sweeps/synthetic_pareto.py                      # ~/branchsweep-runs/synthetic-pareto-<time>
    python sweeps/synthetic_pareto.py --smoke --out /tmp/s  # seconds-scale check
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python sweeps/synthetic_pareto.py --smoke
"""

from __future__ import annotations

import dataclasses
import sys

from _common import SweepPreset, main

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.sweep import SearchSpace

PRESET = SweepPreset(
    name="synthetic-pareto",
    data=DataConfig(dataset="synthetic-dense", size=16, train_samples=64, val_samples=32,
                    tasks=["semseg", "depth", "normals"]),
    model=ModelConfig(backbone="mobilenet_v2", width=0.1),
    train=TrainConfig(iterations=40, batch_size=8, eval_batch_size=32, progress=False),
    search_defaults={
        # λ in "normalized" mode (per Single model): at 0.5 MMAdds a per-GMAdd λ would be invisible.
        # Hard samples, a large architecture lr and one weight step per α step let 40 iterations
        # move α far enough to span Single-like (λ ≈ 0.5) to Shared (λ ≈ 500);
        # benchmarks/bmtas_lambda_grid.py prints that range for these settings.
        "bmtas": {"iterations": 40, "warmup_iterations": 16, "batch_size": 8, "checkpoint_every": 8,
                  "mc_samples": 16, "resource_mode": "normalized", "hard": True, "arch_lr": 0.15,
                  "weight_steps_per_arch": 1},
        "ltb": {"iterations": 16, "batch_size": 8, "checkpoint_every": 8},
    },
    space=SearchSpace(ranges={"bmtas": {"lam": (0.5, 500.0)}, "ltb": {"child_nodes": (1, 2, 3)}}),
    num_trials=8,
    concurrency=2,
    cpus_per_trial=1.0,
    points=[
        {"method": "bmtas", "seed": 0, "bmtas.lambda": 10.0, "bmtas.schedule": "linear", "bmtas.tau0": 5.0},
        {"method": "ltb", "seed": 0, "ltb.child_nodes": 2, "ltb.schedule": "inverse_sqrt", "ltb.tau0": 50.0},
    ],
)

SMOKE = dataclasses.replace(
    PRESET, name="synthetic-pareto-smoke",
    data=dataclasses.replace(PRESET.data, size=8, train_samples=48, val_samples=8),
    train=dataclasses.replace(PRESET.train, iterations=3),
    search_defaults={"bmtas": {**PRESET.search_defaults["bmtas"], "iterations": 3, "warmup_iterations": 2},
                     "ltb": {**PRESET.search_defaults["ltb"], "iterations": 3}},
    num_trials=2,
)

if __name__ == "__main__":
    sys.exit(main(PRESET, SMOKE, __doc__))
