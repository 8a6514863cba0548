"""NYUD-v2 Pareto sweep (BMTAS paper, Section 4): ResNet-50, four tasks, λ / schedule / LTB nodes.

Needs the NYUD-v2 folder (NYUD_MT layout) (``--root``) and a GPU cluster for the full run; every trial runs in a Ray
Train TorchTrainer on one GPU (``--gpus-per-trial 1``, the default).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python sweeps/nyud_pareto.py --root /data/NYUD_MT --storage-path s3://bucket/sweeps
    python sweeps/nyud_pareto.py --root /data/NYUD_MT --smoke --out /tmp/nyud-smoke   # CPU, minutes
"""

from __future__ import annotations

import dataclasses
import sys

from _common import SweepPreset, main

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.sweep import SearchSpace

#: Supplement A of the BMTAS paper: 40k search iterations (2k warm-up), 40k retrain iterations, batch 8.
PRESET = SweepPreset(
    name="nyud-pareto",
    data=DataConfig(dataset="nyud", tasks=["semseg", "depth", "normals", "edge"],
                    num_workers=4),
    model=ModelConfig(backbone="resnet50", pretrained="imagenet"),
    train=TrainConfig(iterations=40000, batch_size=8, checkpoint_every=1000, progress=False),
    search_defaults={"bmtas": {"iterations": 40000, "warmup_iterations": 2000, "checkpoint_every": 1000},
                     "ltb": {"iterations": 40000, "batch_size": 8, "checkpoint_every": 1000}},
    space=SearchSpace(lam=(0.01, 1.0), child_nodes=(2, 3, 4)),
    num_trials=32,
    concurrency=4,
    cpus_per_trial=4.0,
    gpus_per_trial=1.0,
    points=[{"method": "bmtas", "seed": 0, "bmtas.lam": lam, "bmtas.schedule": "linear", "bmtas.tau0": 5.0}
            for lam in (0.01, 0.05, 0.1, 0.5)],
)

SMOKE = dataclasses.replace(
    PRESET, name="nyud-pareto-smoke",
    data=dataclasses.replace(PRESET.data, size=64, train_samples=64, val_samples=16, num_workers=0),
    model=dataclasses.replace(PRESET.model, pretrained=None, width=0.25),
    train=dataclasses.replace(PRESET.train, iterations=5, checkpoint_every=0),
    search_defaults={"bmtas": {"iterations": 5, "warmup_iterations": 2, "checkpoint_every": 0},
                     "ltb": {"iterations": 5, "batch_size": 8}},
    num_trials=2, concurrency=1, cpus_per_trial=1.0, gpus_per_trial=0.0, points=PRESET.points[:1],
)

if __name__ == "__main__":
    sys.exit(main(PRESET, SMOKE, __doc__))
