"""PASCAL-Context Pareto sweep (BMTAS paper, Section 4): MobileNetV2, five tasks, λ / schedule / LTB nodes.

Needs the PASCAL_MT folder (``--root``) and a GPU cluster for the full run; every trial runs in a Ray
Train TorchTrainer on one GPU (``--gpus-per-trial 1``, the default).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python sweeps/pascal_pareto.py --root /data/PASCAL_MT --storage-path s3://bucket/sweeps
    python sweeps/pascal_pareto.py --root /data/PASCAL_MT --smoke --out /tmp/pascal-smoke   # CPU, minutes
"""

from __future__ import annotations

import sys

from _common import bmtas_paper_presets, main
from bmtas_tables import mapped

from branchsweep.config import DataConfig, ModelConfig
from branchsweep.sweep import SearchSpace

PRESET, SMOKE = bmtas_paper_presets(
    "pascal-pareto",
    DataConfig(dataset="pascal-context", tasks=["semseg", "human_parts", "sal", "normals", "edge"], num_workers=4),
    ModelConfig(backbone="mobilenet_v2", pretrained="imagenet"),
    SearchSpace(ranges={"bmtas": {"lam": (0.02, 2.0)}, "ltb": {"child_nodes": (2, 3, 4)}}),
    # The paper's MobileNetV2 grid {0.1, 0.05, 0.02} mapped to our exact resource loss (docs/fidelity.md),
    # evaluated first so the front starts at the published operating points.
    lambdas=mapped("table1"),
)

if __name__ == "__main__":
    sys.exit(main(PRESET, SMOKE, __doc__))
