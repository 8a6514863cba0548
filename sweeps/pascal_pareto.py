"""PASCAL-Context Pareto sweep (BMTAS paper, Section 4): MobileNetV2, five tasks, λ / schedule / LTB nodes.

Needs the PASCAL_MT folder (``--root``) and a GPU cluster for the full run; every trial runs in a Ray
Train TorchTrainer on one GPU (``--gpus-per-trial 1``, the default).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python sweeps/pascal_pareto.py --root /data/PASCAL_MT --storage-path s3://bucket/sweeps
    python sweeps/pascal_pareto.py --root /data/PASCAL_MT --smoke --out /tmp/pascal-smoke   # CPU, minutes
"""

from __future__ import annotations

import dataclasses
import sys

from _common import SweepPreset, main

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.sweep import SearchSpace

#: Supplement A of the BMTAS paper: 40k search iterations (2k warm-up), 40k retrain iterations, batch 8.
PRESET = SweepPreset(
    name="pascal-pareto",
    data=DataConfig(dataset="pascal-context", tasks=["semseg", "human_parts", "sal", "normals", "edge"],
                    num_workers=4),
    model=ModelConfig(backbone="mobilenet_v2", pretrained="imagenet"),
    train=TrainConfig(iterations=40000, batch_size=8, checkpoint_every=1000, progress=False),
    search_defaults={"bmtas": {"iterations": 40000, "warmup_iterations": 2000, "checkpoint_every": 1000},
                     "ltb": {"iterations": 40000, "batch_size": 8, "checkpoint_every": 1000}},
    space=SearchSpace(lam=(0.05, 2.0), child_nodes=(2, 3, 4)),
    num_trials=32,
    concurrency=4,
    cpus_per_trial=4.0,
    gpus_per_trial=1.0,
    # The paper's MobileNetV2 grid {0.1, 0.05, 0.02} in our absolute mode: λ = 2·T·λ_paper, T = 5
    # (docs/bmtas.md), evaluated first so the front starts at the published operating points.
    points=[{"method": "bmtas", "seed": 0, "bmtas.lam": lam, "bmtas.schedule": "linear", "bmtas.tau0": 5.0}
            for lam in (1.0, 0.5, 0.2)],
)

SMOKE = dataclasses.replace(
    PRESET, name="pascal-pareto-smoke",
    data=dataclasses.replace(PRESET.data, size=64, train_samples=64, val_samples=16, num_workers=0),
    model=dataclasses.replace(PRESET.model, pretrained=None, width=0.25),
    train=dataclasses.replace(PRESET.train, iterations=5, checkpoint_every=0),
    search_defaults={"bmtas": {"iterations": 5, "warmup_iterations": 2, "checkpoint_every": 0},
                     "ltb": {"iterations": 5, "batch_size": 8}},
    num_trials=2, concurrency=1, cpus_per_trial=1.0, gpus_per_trial=0.0, points=PRESET.points[:1],
)

if __name__ == "__main__":
    sys.exit(main(PRESET, SMOKE, __doc__))
