"""NYUD-v2 Pareto sweep (BMTAS paper, Section 4): ResNet-50, four tasks, λ / schedule / LTB nodes.

Needs the NYUD-v2 folder (NYUD_MT layout) (``--root``) and a GPU cluster for the full run; every trial runs in a Ray
Train TorchTrainer on one GPU (``--gpus-per-trial 1``, the default).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python sweeps/nyud_pareto.py --root /data/NYUD_MT --storage-path s3://bucket/sweeps
    python sweeps/nyud_pareto.py --root /data/NYUD_MT --smoke --out /tmp/nyud-smoke   # CPU, minutes
"""

from __future__ import annotations

import sys

from _common import bmtas_paper_presets, main

from branchsweep.config import DataConfig, ModelConfig
from branchsweep.sweep import SearchSpace

PRESET, SMOKE = bmtas_paper_presets(
    "nyud-pareto",
    DataConfig(dataset="nyud", tasks=["semseg", "depth", "normals", "edge"], num_workers=4),
    ModelConfig(backbone="resnet50", pretrained="imagenet"),
    SearchSpace(ranges={"bmtas": {"lam": (0.01, 1.0)}, "ltb": {"child_nodes": (2, 3, 4)}}),
    lambdas=[0.01, 0.05, 0.1, 0.5],
)

if __name__ == "__main__":
    sys.exit(main(PRESET, SMOKE, __doc__))
