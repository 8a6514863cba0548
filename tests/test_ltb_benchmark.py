"""benchmarks/ltb_synthetic_ari.py runs settings (a), (b), (c) and scores trees as documented."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from branchsweep.arch import BranchConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ltb_synthetic_ari", ROOT / "benchmarks" / "ltb_synthetic_ari.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ltb_synthetic_ari"] = module
    spec.loader.exec_module(module)
    return module


def test_shared_depth_scores_setting_c(bench):
    # cos_0, cos_1 | sinc_0, sinc_1 | square_0, square_1: cos and sinc share 2 layers, square splits after 1
    tasks = ["cos_0", "cos_1", "sinc_0", "sinc_1", "square_0", "square_1"]
    tree = BranchConfig.from_groups(tasks, [[tasks], [tasks[:4], tasks[4:]], [tasks[:4], tasks[4:]],
                                            [tasks[:2], tasks[2:4], tasks[4:]], [[t] for t in tasks]])
    depths = bench.group_depths(tree, [0, 0, 1, 1, 2, 2])
    assert depths == {(0, 1): 3, (0, 2): 1, (1, 2): 1}
    assert bench.shared_depth(tree, 0, 1) == 4


def test_benchmark_runs_all_settings(bench, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert bench.main(["--settings", "a,b,c", "--seeds", "1", "--iterations", "3", "--train-samples", "100",
                       "--tasks-per-activation", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for setting in "abc":
        assert f"setting {setting}: ARI" in text
    assert "cos+sinc deeper than square in" in text
    assert len(out.read_text().splitlines()) == 4
