"""Truth tables: the exhaustive-table benchmark (smoke scale), the committed tables' integrity, the scoring
maths, and the scoring benchmark on a table of known values."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from branchsweep.arch import BranchConfig
from branchsweep.tree_space import count_trees, enumerate_trees, respects, segments
from branchsweep.truth import TABLES, TableContext, find_table, load_table, preset, recipe_hash, table_dir

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", TABLES.names())
def test_presets_hold_the_designed_tree_and_single(name):
    p = preset(name)
    ctx = TableContext.build(preset(name, smoke=True))
    trees = enumerate_trees([t.name for t in ctx.tasks], p.branch_points, ctx.spec.num_layers)
    assert len(trees) == count_trees(len(ctx.tasks), len(segments(p.branch_points, ctx.spec.num_layers))) == 154
    assert p.designed_tree(ctx.spec.num_layers) in trees
    assert BranchConfig.single([t.name for t in ctx.tasks], ctx.spec.num_layers) in trees


def test_exhaustive_table_smoke(tmp_path, capsys):
    bench = load("exhaustive_table")
    out = tmp_path / "t"
    assert bench.main(["--table", "synthetic-dense", "--smoke", "--limit", "3", "--seeds", "2", "--workers", "1",
                       "--out", str(out)]) == 0
    rows = pd.read_csv(out / "rows.csv")
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(rows) == 6 and sorted(rows["seed"].unique()) == [0, 1]
    assert {"tree", "arch_hash", "madds", "params", "semseg/mIoU", "normals/mean", "delta_m", "delta_m_paired"} <= set(rows)
    single = BranchConfig.single(["semseg", "sal", "depth", "normals"], 7).arch_hash()
    assert rows.loc[rows["arch_hash"] == single, "delta_m"].mean() == pytest.approx(0.0, abs=1e-9)
    assert manifest["trees_in_space"] == 154 and manifest["seeds"] == [0, 1] and manifest["recipe_hash"]
    assert "designed tree" in capsys.readouterr().out
    # an interrupted run continues: every tree is read back, nothing retrained
    assert bench.main(["--table", "synthetic-dense", "--smoke", "--limit", "3", "--seeds", "2", "--workers", "1",
                       "--out", str(out)]) == 0
    assert "3 trees done earlier, 0 to train" in capsys.readouterr().out
    assert bench.main(["--table", "synthetic-dense", "--smoke"]) == 2  # a smoke table needs --out
    assert bench.main(["--table", "nope", "--out", str(out)]) == 2


@pytest.mark.parametrize("name", [n for n in TABLES.names() if (table_dir(n) / "rows.csv").is_file()])
def test_committed_tables_are_complete_and_match_their_recipe(name):
    rows, manifest = load_table(name)
    p = preset(name)
    assert manifest["recipe_hash"] == recipe_hash(p.data, p.model, p.train)
    assert find_table(p.data, p.model, p.train) == name
    assert rows["arch_hash"].nunique() == manifest["trees_in_space"] == 154
    assert (rows.groupby("arch_hash")["seed"].nunique() >= 5).all()
    assert all(respects(BranchConfig.from_json(a), p.branch_points) for a in rows["arch"].unique())
    assert rows["delta_m"].notna().all()


def _fake_rows(values: dict[str, list[float]], madds: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame([{"arch_hash": h, "tree": h.upper(), "seed": s, "madds": madds[h], "delta_m": v}
                         for h, vs in values.items() for s, v in enumerate(vs)])


def test_scoring_maths_on_known_values():
    rows = _fake_rows({"a": [0.0, 0.2, -0.2], "b": [5.0, 5.2, 4.8], "c": [1.0, 1.1, 0.9], "d": [2.0, 2.0, 2.0],
                       "e": [3.0, 3.1, 2.9]}, {"a": 10, "b": 10, "c": 10, "d": 5, "e": 20})
    means = analysis.tree_means(rows)
    assert list(analysis.exhaustive_front(means).index) == ["d", "b"]
    assert analysis.regret(means, "c") == pytest.approx(4.0)
    assert analysis.regret(means, "e") == pytest.approx(2.0)  # b is cheaper and better
    ref = {"madds": 22.0, "delta_m": -1.0}
    assert analysis.hypervolume_fraction(means, ["d", "b"], ref) == pytest.approx(1.0)
    assert 0 < analysis.hypervolume_fraction(means, ["c"], ref) < analysis.hypervolume_fraction(means, ["d"], ref) < 1
    gaps = analysis.matched_gaps(rows)
    top = gaps.iloc[0]
    assert (top["trees"], top["best"], top["median"]) == (3, "B", "C")
    assert top["gap"] == pytest.approx(4.0) and top["z"] > 5
    d = analysis.designed_gap(rows, "c")
    assert d["front_tree"] == "B" and d["gap"] == pytest.approx(4.0) and d["rank"] == 4
    lines = analysis.grouping_evidence(rows, "b")
    assert "rank 1 of 5" in lines[-1]
    with pytest.raises(analysis.AnalysisError, match="not in the truth table"):
        analysis.regret(means, "zz")


def test_score_searches_on_a_table_of_known_values(tmp_path, capsys):
    """A fake table over the whole space where only the designed grouping pays: random trees reach part of
    its hypervolume, and the benchmark scores, plots and resumes."""
    p = preset("synthetic-dense", smoke=True)
    ctx = TableContext.build(p)
    names = [t.name for t in ctx.tasks]
    trees = enumerate_trees(names, p.branch_points, ctx.spec.num_layers)
    designed = p.designed_tree(ctx.spec.num_layers)
    rng = np.random.default_rng(0)
    records = []
    for tree in trees:
        base = 5.0 if tree == designed else float(rng.normal(0, 1))
        for s in range(3):
            records.append({"tree": tree.arch_hash()[:6], "arch_hash": tree.arch_hash(), "arch": tree.to_json(indent=None),
                            "seed": s, "madds": ctx.table.madds(tree), "time_s": 1.0, "delta_m": base + 0.1 * s})
    folder = tmp_path / "tables" / "synthetic-dense"
    folder.mkdir(parents=True)
    pd.DataFrame(records).to_csv(folder / "rows.csv", index=False)
    (folder / "manifest.json").write_text(json.dumps({
        "tasks": names, "num_layers": ctx.spec.num_layers, "designed": [list(g) for g in p.designed],
        "designed_hash": designed.arch_hash(), "commit": "test"}))
    bench = load("score_searches")
    argv = ["--table", "synthetic-dense", "--smoke", "--methods", "bmtas,random", "--search-seeds", "2",
            "--workers", "1", "--tables-root", str(tmp_path / "tables"), "--out", str(tmp_path / "s")]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "| bmtas |" in out and "| random |" in out and "| exhaustive front | 100 |" in out
    scores = pd.read_csv(tmp_path / "s" / "scores.csv").set_index("method")
    assert 0 < scores.loc["random", "hv_fraction"] <= 1 and scores.loc["bmtas", "seeds"] == 2
    assert (tmp_path / "s" / "trees.csv").is_file()
    assert bench.main(argv) == 0
    assert "0 searches to run (6 done earlier)" in capsys.readouterr().out
    assert bench.main([*argv[:4], "ltb,nope", *argv[5:]]) == 2


def test_bmtas_alpha_gaps_runs_and_rejects_bad_input(capsys):
    bench = load("bmtas_alpha_gaps")
    assert bench.main(["--seeds", "1", "--budget", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "| 0 |" in out and "of 12 |" in out and "1 distinct trees in 1 seeds" in out
    assert bench.main(["--seeds", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
