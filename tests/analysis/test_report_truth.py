"""A report given the exhaustive table of its recipe says where each searched method stands (share of the
exhaustive hypervolume, next to the random control trees), names the table and draws ``truth.png``;
without a table nothing changes (analysis/report.py, analysis/exhaustive.py, analysis/plots.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.report import truth_scores, truth_verdict

DIRECTIONS = {"sal/maxF": "max", "depth/rmse": "min"}
#: The fake table's trees: hash -> (MAdds, mean Δm). t0 is Single, t9 Shared.
TREES = {"t0": (4.0e5, 0.0), "t1": (3.5e5, 1.5), "t2": (3.0e5, 0.5), "t3": (3.0e5, 2.0), "t4": (2.5e5, -1.0),
         "t5": (2.0e5, 0.8), "t6": (2.0e5, -2.0), "t7": (1.5e5, -0.5), "t8": (1.5e5, -3.0), "t9": (1.0e5, -6.0)}
MANIFEST = {"table": "fake-dense", "trees": len(TREES), "seeds": [0, 1, 2], "branch_points": [0, 3, 5],
            "commit": "0123456789abcdef0123+uncommitted", "recipe_hash": "feedfacefeedface"}


def fake_table(seeds: int = 3) -> pd.DataFrame:
    """One row per tree × seed: the tree's mean Δm plus seed noise."""
    rng = np.random.default_rng(0)
    rows = [{"tree": f"tree {h}", "arch_hash": h, "seed": s, "madds": madds, "params": 1000,
             "delta_m": dm + 0.3 * rng.standard_normal()}
            for h, (madds, dm) in TREES.items() for s in range(seeds)]
    return pd.DataFrame(rows)


def sweep_results() -> pd.DataFrame:
    """Single, Shared, BMTAS (two trees of the table and one of another space), LTB, and controls at the
    BMTAS points: a permutation and a random tree each."""
    trials = [  # trial id, label, method, hash, MAdds, quality, baseline_of, kind
        ("s", "Single", "single", "t0", 4.0e5, 0.0, None, None),
        ("sh", "Shared", "shared", "t9", 1.0e5, -6.0, None, None),
        ("b0", "bmtas 0", "bmtas", "t5", 2.0e5, 0.8, None, None),
        ("b1", "bmtas 1", "bmtas", "t3", 3.0e5, 2.0, None, None),
        ("b2", "bmtas 2", "bmtas", "x-other-space", 2.2e5, 0.1, None, None),
        ("l0", "ltb 0", "ltb", "t7", 1.5e5, -0.5, None, None),
        ("b0p", "perm of b0", "permuted", "t6", 2.0e5, -2.0, "b0", "permuted"),
        ("b0r", "random at b0", "random", "t6", 2.0e5, -2.0, "b0", "random"),
        ("b1r", "random at b1", "random", "t2", 3.0e5, 0.5, "b1", "random"),
    ]
    rows = []
    for trial, label, method, h, madds, q, of, kind in trials:
        rows.append({"trial_id": trial, "label": label, "method": method, "status": "ok",
                     "is_baseline": method in ("single", "shared"), "madds": madds, "arch_hash": h,
                     "sal/maxF": 60 * (1 + q / 100), "depth/rmse": 0.5 * (1 - q / 100), "baseline_of": of,
                     "baseline_kind": kind})
    return pd.DataFrame(rows)


def _report(truth=None) -> analysis.Report:
    return analysis.build_report(sweep_results(), metrics=list(DIRECTIONS), directions=DIRECTIONS, truth=truth)


def test_searched_methods_are_scored_against_every_tree():
    rows = fake_table()
    report = _report((rows, MANIFEST))
    scores = truth_scores(report).set_index(["method", "trees"])
    assert list(scores.index) == [("bmtas", "searched"), ("bmtas", "random"), ("ltb", "searched")]
    bmtas = scores.loc[("bmtas", "searched")]
    assert bmtas["count"] == 3 and bmtas["not_in_table"] == 1 and bmtas["seeds"] == 3
    per_seed = analysis.seed_fractions(rows, ["t5", "t3"])
    assert bmtas["hv_fraction"] == pytest.approx(per_seed.mean())
    assert bmtas["hv_fraction/se"] == pytest.approx(analysis.standard_error(per_seed))
    means = analysis.tree_means(rows)
    assert bmtas["hv_fraction_of_means"] == pytest.approx(analysis.hypervolume_fraction(means, ["t5", "t3"]))
    random = scores.loc[("bmtas", "random")]  # the random trees built at BMTAS's points only
    assert random["count"] == 2 and random["hv_fraction"] == pytest.approx(analysis.seed_fractions(rows, ["t6", "t2"]).mean())
    lines = truth_verdict(report)
    assert lines[0].startswith("searched front (BMTAS): ")
    assert "% of the exhaustive hypervolume (3 table seeds), 1 of 3 trees not in the table (another space); random trees: " in lines[0]
    assert lines[1].startswith("searched front (LTB): ") and "random" not in lines[1]


def test_report_names_the_table_leads_with_the_lines_and_draws_truth_png(tmp_path):
    report = _report((fake_table(), MANIFEST))
    files = analysis.write_report(report, tmp_path / "report")
    md = files["markdown"].read_text()
    head = md.split("\n")
    assert head[2].startswith("**searched front (BMTAS): ") and head[3].startswith("**searched front (LTB): ")
    assert ("- exhaustive table **fake-dense**: 10 trees × 3 seeds, branch points 0, 3, 5, commit 0123456789ab+uncommitted"
            in md)
    assert "## Against the exhaustive table fake-dense" in md and "random trees at its front" in md
    assert "![searched trees among every tree of the table](truth.png)" in md
    assert "1 searched or random tree(s) are not in the exhaustive table" in md
    assert files["truth"] == tmp_path / "report" / "truth.png" and files["truth"].stat().st_size > 0
    html = files["html"].read_text()
    assert "<p><b>searched front (BMTAS)" in html and "truth.png" in html


def test_one_seed_tables_say_mean_front():
    lines = truth_verdict(_report((fake_table(seeds=1), {**MANIFEST, "seeds": [0]})))
    assert "% of the table's mean front's hypervolume" in lines[0] and "±" not in lines[0]


def test_without_a_table_nothing_changes(tmp_path):
    plain = analysis.write_report(_report(), tmp_path / "plain")
    assert "truth" not in plain and not (tmp_path / "plain" / "truth.png").exists()
    md = plain["markdown"].read_text()
    assert "exhaustive" not in md and "searched front" not in md and truth_verdict(_report()) == []


def test_a_table_without_needed_columns_is_one_error():
    with pytest.raises(analysis.AnalysisError, match="truth table has no column 'seed'"):
        _report((fake_table().drop(columns=["seed"]), MANIFEST))
