"""A report of replicated results leads with the verdict and has the matched-baselines table, each
method's hypervolume ± s.e., error bars and the plot-id table; without replicates nothing changes."""

from __future__ import annotations

import numpy as np
import pandas as pd

import analysis

DIRECTIONS = {"sal/maxF": "max", "depth/rmse": "min"}


def _replicates(seed: int = 0) -> pd.DataFrame:
    """Single, Shared, 3 BMTAS and 2 LTB trials; 3 permutations and a vanilla tree per BMTAS point; 3 seeds.

    Metrics are drawn first; Δm of every row is computed against the Single rows' mean, as a sweep does."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(trial, label, method, madds, quality, of=None, kind=None):
        for r in range(3):
            q = quality + 0.3 * rng.standard_normal()
            rows.append({"trial_id": trial, "label": label, "method": method, "madds": madds, "retrain_seed": r,
                         "status": "ok", "is_baseline": method in ("single", "shared"), "arch_hash": f"h{trial}",
                         "sal/maxF": 60 + q, "depth/rmse": 0.5 * (1 - q / 100), "baseline_of": of,
                         "baseline_kind": kind})

    add("s", "Single", "single", 4e5, 0.0)
    add("sh", "Shared", "shared", 1e5, -8.0)
    for i in range(3):
        add(f"b{i}", f"bmtas {i}", "bmtas", 1.5e5 + 7e4 * i, -5 + 2 * i)
        for j in range(3):
            add(f"b{i}p{j}", f"perm {i}.{j}", "permuted", 1.5e5 + 7e4 * i, -8 + 2 * i, f"b{i}", "permuted")
        add(f"b{i}v", f"vanilla {i}", "vanilla", 1.5e5 + 7e4 * i, -6 + 2 * i, f"b{i}", "vanilla")
    for i in range(2):
        add(f"l{i}", f"ltb {i}", "ltb", 1.8e5 + 7e4 * i, -6 + 2 * i)
    long = pd.DataFrame(rows)
    single = long[long["method"] == "single"][list(DIRECTIONS)].mean()
    long["delta_m"] = analysis.delta_m(long, single, DIRECTIONS)
    return long


def test_replicated_report_leads_with_the_verdict(tmp_path):
    long = _replicates()
    results = analysis.summarize_replicates(long)
    report = analysis.build_report(results, metrics=list(DIRECTIONS), directions=DIRECTIONS, replicates=long)
    # Δm of the mean metrics equals the mean per-seed Δm (Δm is linear in the metrics for a fixed reference).
    assert np.allclose(report.results["delta_m"], report.results["delta_m_reported"])
    files = analysis.write_report(report, tmp_path / "report")
    md = files["markdown"].read_text()
    head = md.split("\n")
    assert head[2].startswith("**BMTAS front vs permutations at equal MAdds: Δm +")
    assert head[3].startswith("**BMTAS front vs vanilla trees at equal MAdds: Δm ")
    assert head[4].startswith("**hypervolume: BMTAS ") and "Single" not in head[4]
    assert head[4].index("LTB") < head[4].index("permuted")  # searched methods first
    assert "## Models and matched baselines (mean ± s.e. over retrain seeds)" in md
    assert "| model | MMAdds | sal/maxF ↑ | depth/rmse ↓ | Δm [%] ↑ | seeds |" in md
    assert "permutations of bmtas 0 (×3)" in md and "## Hypervolume per method" in md
    assert "Δm s.e." in md and "## Plot ids (pareto.png)" in md
    ids = pd.read_csv(files["plot_ids"])
    assert {"S", "Sh", "B1", "B3", "L2", "P1a", "P3c", "V2"} <= set(ids["id"])
    html = files["html"].read_text()
    assert "<p><b>BMTAS front vs permutations at equal MAdds" in html
    assert files["pareto"].stat().st_size > 0


def test_report_without_replicates_is_unchanged(tmp_path):
    results = analysis.summarize_replicates(_replicates()).drop(columns=["delta_m/se", "sal/maxF/se", "depth/rmse/se"])
    report = analysis.build_report(results, metrics=list(DIRECTIONS), directions=DIRECTIONS)
    files = analysis.write_report(report, tmp_path / "report")
    md = files["markdown"].read_text()
    assert md.startswith("# branchsweep report\n\n- trials:")
    assert "matched baselines" not in md and "Plot ids" not in md and "Δm s.e." not in md
    assert "plot_ids" not in files
