"""Fronts over any cost column: MAdds, measured latency or both; the MAdds-vs-latency figure and its
rank correlation."""

from __future__ import annotations

import pandas as pd
import pytest

import analysis
from analysis.report import cost_columns, cost_rank_correlation, front_objectives


def _results() -> pd.DataFrame:
    # label, MAdds, latency (ms), semseg mIoU: "wide" is cheap in MAdds but slow (parallel branches),
    # "deep" the other way round, so the two cost axes disagree about which is on the front.
    rows = [("Single", 3.0e9, 9.0, 60.0), ("Shared", 1.0e9, 2.0, 50.0), ("wide", 1.5e9, 8.0, 58.0),
            ("deep", 2.5e9, 3.0, 58.0), ("mid", 2.0e9, 5.0, 55.0)]
    return pd.DataFrame({
        "trial_id": [f"t{i}" for i in range(len(rows))], "label": [r[0] for r in rows],
        "method": ["single", "shared", "bmtas", "bmtas", "ltb"], "is_baseline": [True, True, False, False, False],
        "status": "ok", "madds": [r[1] for r in rows], "latency_ms": [r[2] for r in rows],
        "semseg/mIoU": [r[3] for r in rows], "arch_hash": [f"h{i}" for i in range(len(rows))],
        "latency_settings": "cpu, batch 1, 1 thread, torch",
    })


def _front(report) -> set[str]:
    return set(report.front["label"])


def test_the_front_follows_the_cost_axis():
    kw = dict(baseline="Single", metrics=["semseg/mIoU"], directions={"semseg/mIoU": "max"})
    by_madds = analysis.build_report(_results(), **kw)
    by_latency = analysis.build_report(_results(), cost="latency", **kw)
    both = analysis.build_report(_results(), cost="both", **kw)
    assert _front(by_madds) == {"Single", "Shared", "wide"}
    assert _front(by_latency) == {"Single", "Shared", "deep"}
    # over both costs "mid" is on the front too: cheaper in MAdds than "deep", faster than "wide"
    assert _front(both) == {"Single", "Shared", "wide", "deep", "mid"}
    assert by_latency.objectives == {"latency_ms": "min", "delta_m": "max"}


def test_cost_columns_and_objectives():
    assert cost_columns("madds") == ["madds"] and cost_columns("both") == ["madds", "latency_ms"]
    assert front_objectives(["latency"]) == {"latency_ms": "min", "delta_m": "max"}
    with pytest.raises(analysis.AnalysisError, match="at least one cost"):
        cost_columns([])


def test_latency_front_without_latency_is_a_clear_error():
    df = _results().drop(columns="latency_ms")
    with pytest.raises(analysis.AnalysisError, match="latency_ms.*no values"):
        analysis.build_report(df, baseline="Single", metrics=["semseg/mIoU"], directions={"semseg/mIoU": "max"},
                              cost="latency")


def test_rank_correlation_over_distinct_architectures():
    df = _results()
    rho, n = cost_rank_correlation(df)
    assert n == 5 and rho == pytest.approx(pd.Series([3, 1, 1.5, 2.5, 2]).corr(pd.Series([9, 2, 8, 3, 5]),
                                                                                  method="spearman"))
    # replicate rows of one architecture count once
    doubled = pd.concat([df, df.assign(trial_id=lambda d: d["trial_id"] + "b")])
    assert cost_rank_correlation(doubled)[1] == 5
    assert cost_rank_correlation(df.drop(columns="latency_ms")) is None
    assert cost_rank_correlation(df.head(2)) is None


def test_report_with_latency_writes_its_figures(tmp_path):
    report = analysis.build_report(_results(), baseline="Single", metrics=["semseg/mIoU"],
                                   directions={"semseg/mIoU": "max"}, cost="latency")
    files = analysis.write_report(report, tmp_path)
    for name in ("pareto_latency", "madds_vs_latency", "pareto"):
        assert files[name].stat().st_size > 0
    md = (tmp_path / "report.md").read_text()
    assert "## Pareto front (latency ↓, Δm ↑)" in md and "latency [ms]" in md
    assert "Spearman ρ = 0.60 over 5 architectures (latency measured with cpu, batch 1, 1 thread, torch)" in md
    assert "hypervolume (latency ms × Δm %" in md
    # without latency the report has neither figure
    plain = analysis.build_report(_results().drop(columns="latency_ms"), baseline="Single",
                                  metrics=["semseg/mIoU"], directions={"semseg/mIoU": "max"})
    assert "madds_vs_latency" not in analysis.write_report(plain, tmp_path / "plain")
