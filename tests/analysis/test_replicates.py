"""Retrain seeds as replicates (analysis/replicates.py): means and s.e., replicated hypervolume, baseline
gaps, near ties, the Table-3-style table and the verdict lines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import AnalysisError, hypervolume_2d

OBJ = {"madds": "min", "delta_m": "max"}


def _long(seed: int = 0, seeds: int = 3, noise: float = 0.5, gap: float = 3.0) -> pd.DataFrame:
    """Two BMTAS front points, each with 4 permutations ``gap`` worse at equal MAdds and one vanilla tree
    equal to it, plus a Single row; ``seeds`` retrain seeds with Gaussian noise."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(trial, label, method, madds, true_dm, of=None, kind=None):
        for r in range(seeds):
            dm = true_dm + noise * rng.standard_normal()
            rows.append({"trial_id": trial, "label": label, "method": method, "arch_hash": f"h-{trial}",
                         "madds": madds, "retrain_seed": 10 + r, "sal/maxF": 50 + dm, "depth/rmse": 0.6 - dm / 100,
                         "delta_m": dm, "baseline_of": of, "baseline_kind": kind})

    add("s", "S", "single", 4e6, 0.0)
    for i, (madds, dm) in enumerate([(2e6, 1.0), (3e6, 4.0)]):
        add(f"b{i}", f"B{i + 1}", "bmtas", madds, dm)
        for j in range(4):
            add(f"b{i}p{j}", f"P{i + 1}{'abcd'[j]}", "permuted", madds, dm - gap, f"b{i}", "permuted")
        add(f"b{i}v", f"V{i + 1}", "vanilla", madds, dm, f"b{i}", "vanilla")
    return pd.DataFrame(rows)


def test_summarize_replicates_means_standard_errors_and_identity():
    long = _long()
    summary = analysis.summarize_replicates(long)
    assert len(summary) == long["trial_id"].nunique()
    assert list(summary["trial_id"]) == list(dict.fromkeys(long["trial_id"]))  # order of first appearance
    b0 = long[long["trial_id"] == "b0"]
    row = summary.set_index("trial_id").loc["b0"]
    for col in ("sal/maxF", "depth/rmse", "delta_m"):
        assert row[col] == pytest.approx(b0[col].mean())
        assert row[col + "/se"] == pytest.approx(np.std(b0[col], ddof=1) / math.sqrt(3))
    assert row["replicates"] == 3 and row["label"] == "B1" and row["madds"] == 2e6 and row["method"] == "bmtas"
    assert "retrain_seed" not in summary.columns
    one = analysis.summarize_replicates(long[long["retrain_seed"] == 10])
    assert one["delta_m/se"].isna().all() and (one["replicates"] == 1).all()  # one seed: no noise estimate
    with pytest.raises(AnalysisError, match="no column 'nope'"):
        analysis.summarize_replicates(long, columns=["nope"])


def test_hypervolume_replicates_per_seed_index():
    long = _long(noise=0.3)
    # Seeds differ per trial in value, not in count: pair them by rank, not by value.
    long.loc[long["trial_id"] == "b1", "retrain_seed"] += 100
    ref = {"madds": 5e6, "delta_m": -10.0}
    hv = analysis.hypervolume_replicates(long, reference=ref).set_index("method")
    bm = long[long["method"] == "bmtas"].sort_values(["trial_id", "retrain_seed"])
    expected = [hypervolume_2d(bm.groupby("trial_id").nth(r), OBJ, ref) for r in range(3)]
    assert hv.loc["bmtas", "hypervolume"] == pytest.approx(np.mean(expected))
    assert hv.loc["bmtas", "hypervolume/se"] == pytest.approx(np.std(expected, ddof=1) / math.sqrt(3))
    assert hv.loc["bmtas", "replicates"] == 3 and hv.loc["bmtas", "trials"] == 2
    assert hv.loc["bmtas", "hypervolume"] > hv.loc["permuted", "hypervolume"]  # 3 % better Δm at equal cost
    # A trial missing a seed limits the replicates to the seeds every trial has.
    fewer = long.drop(long.index[(long["trial_id"] == "b0") & (long["retrain_seed"] == 12)])
    assert analysis.hypervolume_replicates(fewer, reference=ref).set_index("method").loc["bmtas", "replicates"] == 2
    default = analysis.hypervolume_replicates(long)  # default reference: beaten by every row
    assert (default["hypervolume"] > 0).all()


def test_baseline_gaps_recover_a_known_gap():
    long = _long(seed=1, seeds=5, noise=0.5, gap=3.0)
    gaps = analysis.baseline_gaps(long, "permuted")
    assert list(gaps["label"]) == ["B1", "B2"] and (gaps["baseline_trials"] == 4).all()
    summary = analysis.summarize_replicates(long).set_index("trial_id")
    perm = summary.loc[[f"b0p{j}" for j in range(4)], "delta_m"]
    first = gaps.iloc[0]
    assert first["point"] == pytest.approx(summary.loc["b0", "delta_m"])
    assert first["point_se"] == pytest.approx(summary.loc["b0", "delta_m/se"])
    assert first["baselines"] == pytest.approx(perm.mean())
    assert first["baselines_se"] == pytest.approx(perm.std(ddof=1) / 2)
    assert first["gap_se"] == pytest.approx(math.hypot(first["point_se"], first["baselines_se"]))
    gap, se = analysis.overall_gap(gaps)
    assert gap == pytest.approx(gaps["gap"].mean()) and se == pytest.approx(math.hypot(*gaps["gap_se"]) / 2)
    assert abs(gap - 3.0) < 3 * se  # the designed gap, within noise
    vanilla = analysis.baseline_gaps(long, "vanilla")
    assert abs(analysis.overall_gap(vanilla)[0]) < 3 * analysis.overall_gap(vanilla)[1]  # no designed gap
    assert analysis.baseline_gaps(long, "random").empty
    with pytest.raises(AnalysisError, match="not in the replicates table"):
        analysis.paired_difference(long, ["b0"], ["zzz"])


def test_near_ties_use_combined_standard_errors_and_keep_the_index():
    front = pd.DataFrame({"madds": [3, 1, 2, 4], "delta_m": [0.0, -5.0, -4.5, 0.5],
                          "delta_m/se": [0.1, 0.2, 0.2, float("nan")]}, index=[10, 11, 12, 13])
    ties = analysis.near_ties(front)
    # by MAdds: 11 (-5.0) ~ 12 (-4.5): |0.5| <= 2·√0.08 = 0.566; 12 vs 10: 4.5 apart; 13 has no s.e.
    assert ties.to_dict() == {10: False, 11: True, 12: True, 13: False}
    assert not analysis.near_ties(front, k=1.0).any()


def test_baselines_table_formats_mean_and_se_with_directions():
    summary = analysis.pooled_baselines(analysis.summarize_replicates(_long(seeds=3)))
    table = analysis.baselines_table(summary, ["sal/maxF", "depth/rmse"], {"sal/maxF": "max", "depth/rmse": "min"},
                                     madds_scale=1e6, madds_unit="MMAdds")
    assert list(table.columns) == ["model", "MMAdds", "sal/maxF ↑", "depth/rmse ↓", "Δm [%] ↑", "seeds"]
    assert list(table["model"]) == ["S", "B1", "permutations of B1 (×4)", "V1 (vanilla of B1)", "B2",
                                    "permutations of B2 (×4)", "V2 (vanilla of B2)"]
    assert table.loc[0, "MMAdds"] == 4.0 and table.loc[2, "seeds"] == 12
    cell = table.loc[1, "Δm [%] ↑"]
    mean, se = (float(v) for v in cell.split(" ± "))
    b0 = analysis.summarize_replicates(_long(seeds=3)).set_index("trial_id").loc["b0"]
    assert cell.startswith(("+", "-")) and mean == pytest.approx(b0["delta_m"], abs=0.01)
    assert se == pytest.approx(b0["delta_m/se"], abs=0.01)


def test_verdict_lines_read_like_the_issue_asks():
    long = _long(seed=2, seeds=3, gap=3.0, noise=0.2)
    hv = analysis.hypervolume_replicates(long, reference={"madds": 5e6, "delta_m": -10.0}, scale={"madds": 1e6})
    lines = analysis.verdict_lines(long, hv)
    assert lines[0].startswith("BMTAS front vs permutations at equal MAdds: Δm +")
    assert "(2 front points, 8 trees;" in lines[0]
    assert lines[1].startswith("BMTAS front vs vanilla trees at equal MAdds: Δm ")
    assert lines[-1].startswith("hypervolume: single ") and "BMTAS" in lines[-1] and "permuted" in lines[-1]
    gap = float(lines[0].split("Δm ")[1].split(" ±")[0])
    assert gap == pytest.approx(analysis.overall_gap(analysis.baseline_gaps(long))[0], abs=0.01)
    plain = long.drop(columns=["baseline_of", "baseline_kind"])
    assert analysis.verdict_lines(plain, hv) == [lines[-1]]
    chosen = analysis.verdict_lines(plain, hv, methods=["permuted", "bmtas", "ltb"])
    assert chosen[0].startswith("hypervolume: permuted ") and chosen[0].count(",") == 1


def test_format_mean_se_digits_follow_the_standard_error():
    assert analysis.format_mean_se(12.3456, 1.2) == "12.3 ± 1.2"
    assert analysis.format_mean_se(-0.04567, 0.00123, sign=True) == "-0.0457 ± 0.0012"
    assert analysis.format_mean_se(250.0, 31.0) == "250 ± 31"
    assert analysis.format_mean_se(float("nan"), 1.0) == ""
