"""Embedded Pareto sweep: BMTAS and Learning to Branch on synthetic-dense at CPU size, with baselines.

The README's main job. No data to download: procedural 24×24 scenes, four dense tasks (semseg, sal,
depth, normals), a small residual conv net (``convnet``, 6 branchable blocks) whose trees may split at
layers 0, 3 and 5: the space of the exhaustive table ``synthetic-dense`` (branchsweep/truth.py, same
recipe), so the report also says how much of the exhaustive front's hypervolume each search reaches.
Single and Shared baselines, then 6 trials over the method, λ, the temperature schedule and τ0, and
LTB's child-node count, then the controls at each front point (2 permutations of its tree, the vanilla
and a random tree at its MAdds). Every architecture is retrained with 3 seeds: tables show mean ±
standard error, and the report starts with the verdict (search vs controls at equal MAdds, hypervolume
per method, share of the exhaustive hypervolume). About 5 minutes on 2 CPU cores.

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

#: The related tree of benchmarks/embedded_evidence.py shares layers [0, RELATED_BRANCH_AT) (stem, two blocks), then keeps
#: RELATED_GROUPS together; its permutations and the vanilla tree are priced at its MAdds. It is a branch point
#: of the preset (and the exhaustive table's ``designed_at``), so the related tree is in the searched space.
RELATED_BRANCH_AT = 3
#: Where searched and control trees may split: the exhaustive table ``synthetic-dense``'s branch points
#: (tests/sweep/test_sweep_scripts.py checks that its recipe is this preset's).
BRANCH_POINTS = (0, RELATED_BRANCH_AT, 5)

PRESET = SweepPreset(
    name="synthetic-pareto",
    # Calibrated so that every task of every model (Shared included) clearly beats the trivial predictor
    # in 250 steps on one CPU core; docs/embedded.md has the measurements behind each number.
    data=DataConfig(dataset="synthetic-dense", size=24, train_samples=256, val_samples=64,
                    tasks=["semseg", "sal", "depth", "normals"]),
    model=ModelConfig(backbone="convnet", width=0.375),
    train=TrainConfig(iterations=400, batch_size=8, eval_batch_size=64, optimizer="adam", lr=0.003,
                      divide_lr_by_sharing=False, loss_weights={"semseg": 3.0, "sal": 1.0, "normals": 2.0}, progress=False),
    search_defaults={
        # λ in "normalized" mode (per Single model's MAdds). Hard samples and a large architecture lr
        # move α within the short search; benchmarks/bmtas_lambda_grid.py prints the λ range.
        "bmtas": {"iterations": 100, "warmup_iterations": 100, "batch_size": 16, "checkpoint_every": 25,
                  "mc_samples": 16, "resource_mode": "normalized", "hard": True, "arch_lr": 0.15,
                  "weight_steps_per_arch": 1},
        "ltb": {"iterations": 150, "batch_size": 16, "checkpoint_every": 50},
    },
    space=SearchSpace(ranges={"bmtas": {"lam": (0.1, 5.0)}, "ltb": {"child_nodes": (1, 2, 3)}}),
    num_trials=6,
    concurrency=2,
    cpus_per_trial=1.0,
    points=[
        {"method": "bmtas", "bmtas.lambda": 1.0, "bmtas.schedule": "linear", "bmtas.tau0": 5.0},
        {"method": "ltb", "ltb.child_nodes": 2, "ltb.schedule": "inverse_sqrt", "ltb.tau0": 50.0},
    ],
    replicates=3,
    controls=("permuted", "vanilla", "random"),
    permutations=2,
    branch_points=BRANCH_POINTS,
    export_best=True,
)

SMOKE = dataclasses.replace(
    PRESET, name="synthetic-pareto-smoke",
    data=dataclasses.replace(PRESET.data, size=8, train_samples=48, val_samples=8),
    model=dataclasses.replace(PRESET.model, width=0.25),
    train=dataclasses.replace(PRESET.train, iterations=3),
    search_defaults={"bmtas": {**PRESET.search_defaults["bmtas"], "iterations": 3, "warmup_iterations": 2,
                               "batch_size": 4, "checkpoint_every": 0},
                     "ltb": {**PRESET.search_defaults["ltb"], "iterations": 3, "batch_size": 4, "checkpoint_every": 0}},
    num_trials=2,
    replicates=2,
    controls=("permuted", "vanilla"),
    permutations=1,
)

if __name__ == "__main__":
    sys.exit(main(PRESET, SMOKE, __doc__))
