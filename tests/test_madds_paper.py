"""The MAdds table of docs/madds.md for the BMTAS paper's networks (five PASCAL-Context tasks at 512×512),
counted on the meta device: shapes only, no weights and no arithmetic, so the full-size MobileNetV2 and
ResNet-50 (343 GMAdds) take seconds and no memory."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.backbones import create_backbone
from branchsweep.madds import measure_table
from branchsweep.tasks import create_task

PASCAL_TASKS = ["semseg", "human_parts", "sal", "normals", "edge"]
#: GMAdds printed in docs/madds.md (and `branchsweep madds ... --size 512`), to two decimals.
PAPER_TABLE = {
    ("mobilenet_v2", "single"): 15.63, ("mobilenet_v2", "shared"): 6.03,
    ("resnet50", "single"): 343.35, ("resnet50", "shared"): 154.64,
}
MADDS_DOC = Path(__file__).resolve().parents[1] / "docs" / "madds.md"


def _table(backbone: str, size: int, width: float = 1.0, device: str = "meta"):
    with torch.device(device):
        spec = create_backbone(backbone, width=width, input_size=size)
        tasks = [create_task(name) for name in PASCAL_TASKS]
        return spec, measure_table(spec, tasks)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet50"])
def test_meta_device_counts_exactly_what_the_cpu_counts(backbone):
    _, cpu = _table(backbone, 64, width=0.25, device="cpu")
    _, meta = _table(backbone, 64, width=0.25)
    assert meta == cpu


@functools.cache
def _paper_table(backbone: str):
    return _table(backbone, 512)


@pytest.mark.parametrize(("backbone", "arch"), sorted(PAPER_TABLE))
def test_paper_networks_at_512(backbone, arch):
    spec, table = _paper_table(backbone)
    config = getattr(BranchConfig, arch)(PASCAL_TASKS, spec.num_layers)
    assert round(table.madds(config) / 1e9, 2) == PAPER_TABLE[backbone, arch]


def test_readme_prints_the_same_table():
    rows = re.findall(r"^\| (MobileNetV2|ResNet-50) \+ .*? \| (Single|Shared) \| ([\d.]+) G \|", MADDS_DOC.read_text(), re.M)
    printed = {({"MobileNetV2": "mobilenet_v2", "ResNet-50": "resnet50"}[b], m.lower()): float(v) for b, m, v in rows}
    assert printed == PAPER_TABLE


def test_nyud_networks_are_priced_at_425x560_as_in_table_2():
    """docs/madds.md: NYUD-v2 at the paper's 425×560 (not the 560² training squares)."""
    import dataclasses

    from branchsweep.data.nyud import EDGE_MAX_DIST, EDGE_POS_WEIGHT, IMAGE_SIZE, NUM_SEMSEG_CLASSES
    from branchsweep.data.pascal_context import edge_task

    tasks = [create_task("semseg", num_classes=NUM_SEMSEG_CLASSES), create_task("depth"), create_task("normals"),
             edge_task(EDGE_POS_WEIGHT, EDGE_MAX_DIST)]
    names = [t.name for t in tasks]
    with torch.device("meta"):
        spec = dataclasses.replace(create_backbone("resnet50", input_size=560), input_shape=(3, *IMAGE_SIZE))
        table = measure_table(spec, tasks)
    single, shared = (table.madds(getattr(BranchConfig, a)(names, spec.num_layers)) / 1e9 for a in ("single", "shared"))
    assert (round(single, 2), round(shared, 2), round(single + 3 * table.stem / 1e9, 2)) == (252.80, 122.29, 254.48)
    assert "Single 252.80 G" in MADDS_DOC.read_text() and "Shared 122.29 G" in MADDS_DOC.read_text()
