"""CelebA Learning-to-Branch sweep (LTB paper, Section 4.3): 40 attributes, child nodes / schedule / τ0.

LTB only: the space explores the child-node count per layer, the Gumbel temperature schedule and τ0
(plus BMTAS-free baselines Single and Shared). Needs the CelebA folder (``--root``); GPU trials by
default (``--gpus-per-trial 0`` for CPU).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python sweeps/celeba_ltb.py --root /data/celeba --storage-path s3://bucket/sweeps
    python sweeps/celeba_ltb.py --root /data/celeba --smoke --out /tmp/celeba-smoke
"""

from __future__ import annotations

import dataclasses
import sys

from _common import SweepPreset, main

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.sweep import SearchSpace

PRESET = SweepPreset(
    name="celeba-ltb",
    data=DataConfig(dataset="celeba", size=64, num_workers=4),
    model=ModelConfig(backbone="celeba_vgg"),
    train=TrainConfig(iterations=20000, batch_size=64, optimizer="adam", lr=1e-3, checkpoint_every=1000,
                      progress=False),
    search_defaults={"ltb": {"iterations": 20000, "batch_size": 64, "checkpoint_every": 1000}},
    space=SearchSpace(methods=("ltb",), ranges={"ltb": {"child_nodes": (2, 3, 4, 5), "tau0": (10.0, 100.0)}}),
    num_trials=16,
    concurrency=4,
    cpus_per_trial=4.0,
    gpus_per_trial=1.0,
    points=[{"method": "ltb", "ltb.child_nodes": 3, "ltb.schedule": "inverse_sqrt", "ltb.tau0": 50.0}],
)

SMOKE = dataclasses.replace(
    PRESET, name="celeba-ltb-smoke",
    data=dataclasses.replace(PRESET.data, size=32, train_samples=128, val_samples=32, num_workers=0,
                             tasks=["Smiling", "Male", "Young", "Eyeglasses"]),
    model=dataclasses.replace(PRESET.model, width=0.125),
    train=dataclasses.replace(PRESET.train, iterations=5, batch_size=16, checkpoint_every=0),
    search_defaults={"ltb": {"iterations": 5, "batch_size": 16}},
    num_trials=2, concurrency=1, cpus_per_trial=1.0, gpus_per_trial=0.0,
)

if __name__ == "__main__":
    sys.exit(main(PRESET, SMOKE, __doc__))
