"""Taskonomy Learning-to-Branch sweep (LTB paper §4.3, Table 2, Appendix A): five dense tasks, ResNet-34 + ASPP.

The paper's setting: segment_semantic, normal, depth_zbuffer, keypoints2d and edge_texture with loss
weights 1/3/2/7/7 (the tasks' defaults); a branch point after every residual block of ResNet-34 with 5
child nodes per block; the topology searched at 128×128 (``search_size``) and the exported tree
retrained from scratch at 256×256 (``size``). The search uses Adam (batch 64, weights lr 1e-3, branching
lr 1e-1, weight decay 1e-5), τ = 10 decayed per epoch (``inverse``, ``tau_unit=epoch``), 2 warm-up
epochs of 30; the retrain SGD (momentum 0.9, lr 5e-4, weight decay 1e-4) for 30 epochs with no lr
division by sharing. Both decay every lr × 0.97 per epoch (Appendix A). An epoch is the paper's 275K
training images, 4296 iterations at batch 64 (data option ``epoch_images``), whatever the download holds.

One trial of the paper's setting per run; Figure 4's four sampled architectures are four runs with
``--search-seed 0`` … ``3`` (seeds are not a sampled parameter).
Needs the Taskonomy tiny split downloaded with ``omnitools.download`` (``--root``, see docs/datasets.md);
GPU trials by default (``--gpus-per-trial 0`` for CPU). Table 2 reports test losses:
``branchsweep evaluate --split test`` on a trial's retrained network.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python sweeps/taskonomy_ltb.py --root /data/taskonomy --storage-path s3://bucket/sweeps
    python sweeps/taskonomy_ltb.py --root /data/taskonomy --smoke --out /tmp/taskonomy-smoke
"""

from __future__ import annotations

import dataclasses
import sys

from _common import SweepPreset, main

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.sweep import SearchSpace

TASKS = ["segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture"]
TRAIN_IMAGES = 275_000  # the tiny split's training images as the paper counts them (§4.3)
BATCH = 64
EPOCH = TRAIN_IMAGES // BATCH  # 4296 iterations
LTB = {"schedule": "inverse", "tau0": 10.0, "tau_unit": "epoch", "child_nodes": 5}

PRESET = SweepPreset(
    name="taskonomy-ltb",
    # epoch_images: an epoch of every schedule (τ, lr decay) is the paper's 275K images, 4296 iterations
    data=DataConfig(dataset="taskonomy", size=256, tasks=TASKS, num_workers=8,
                    options={"search_size": 128, "epoch_images": TRAIN_IMAGES}),
    model=ModelConfig(backbone="resnet34"),
    train=TrainConfig(iterations=30 * EPOCH, batch_size=BATCH, optimizer="sgd", lr=5e-4, momentum=0.9,
                      weight_decay=1e-4, divide_lr_by_sharing=False, lr_schedule="exponential", lr_gamma=0.97,
                      lr_every_epochs=1.0, checkpoint_every=EPOCH, progress=False),
    search_defaults={"ltb": {"iterations": 30 * EPOCH, "warmup_iterations": 2 * EPOCH, "batch_size": BATCH,
                             "lr": 1e-3, "arch_lr": 1e-1, "weight_decay": 1e-5, "tau_unit": "epoch",
                             "lr_schedule": "exponential", "lr_gamma": 0.97, "lr_every_epochs": 1.0,
                             "checkpoint_every": EPOCH}},
    space=SearchSpace(methods=("ltb",), ranges={"ltb": {"child_nodes": (5,), "schedules": ("inverse",),
                                                        "tau0": (10.0, 10.0)}}),
    num_trials=1,
    concurrency=1,
    cpus_per_trial=8.0,
    gpus_per_trial=1.0,
    # One search (another search seed: --search-seed S, a separate sweep); retrain seeds: --replicates.
    points=[{"method": "ltb", **{f"ltb.{k}": v for k, v in LTB.items() if k != "tau_unit"}}],
)

SMOKE = dataclasses.replace(
    PRESET, name="taskonomy-ltb-smoke",
    data=dataclasses.replace(PRESET.data, size=16, train_samples=4, val_samples=2, num_workers=0,
                             options={"search_size": 8, "epoch_images": 4}),
    model=dataclasses.replace(PRESET.model, width=0.0625),
    train=dataclasses.replace(PRESET.train, iterations=2, batch_size=2, eval_batch_size=2, checkpoint_every=0),
    search_defaults={"ltb": {**PRESET.search_defaults["ltb"], "iterations": 3, "warmup_iterations": 1,
                             "batch_size": 2, "checkpoint_every": 0}},
    num_trials=1, concurrency=1, cpus_per_trial=1.0, gpus_per_trial=0.0, points=PRESET.points[:1],
)

if __name__ == "__main__":
    sys.exit(main(PRESET, SMOKE, __doc__))
