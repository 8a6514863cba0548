"""The Pareto plot with replicates: error bars, short ids with their table, near ties ringed, and labels
that never overlap (analysis/plots.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from matplotlib.text import Text

import analysis
from analysis.plots import id_table, pareto_plot, pareto_plot_with_ids, short_ids


def _summary(seed: int = 0) -> pd.DataFrame:
    """A crowded replicated front: Single/Shared, BMTAS and LTB trials, 5 permutations and a vanilla tree
    at two front points' MAdds (same x, close Δm), 3 retrain seeds each."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(trial, label, method, madds, dm, of=None, kind=None, noise=0.4):
        for r in range(3):
            rows.append({"trial_id": trial, "label": label, "method": method, "madds": madds, "retrain_seed": r,
                         "delta_m": dm + noise * rng.standard_normal(), "is_baseline": method in ("single", "shared"),
                         "baseline_of": of, "baseline_kind": kind})

    add("s", "Single", "single", 4.0e5, 0.0)
    add("sh", "Shared", "shared", 1.0e5, -9.0)
    for i in range(6):
        add(f"b{i}", f"bmtas λ={i}", "bmtas", 1.5e5 + 4e4 * i, -6 + 1.1 * i)
        add(f"l{i}", f"ltb k={i}", "ltb", 1.6e5 + 4e4 * i, -6.2 + 1.1 * i)
    for p in ("b1", "b3"):
        x = 1.5e5 + 4e4 * int(p[1])
        for j in range(5):
            add(f"{p}p{j}", f"perm {j} of {p}", "permuted", x, -7 + 0.15 * j, p, "permuted")
        add(f"{p}v", f"vanilla of {p}", "vanilla", x, -5, p, "vanilla")
    summary = analysis.summarize_replicates(pd.DataFrame(rows))
    summary["on_front"] = analysis.pareto_front(summary, {"madds": "min", "delta_m": "max"})
    return summary


def _label_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    # The text's own box (an Annotation's window extent would include its leader line).
    return {t.get_text(): Text.get_window_extent(t, renderer) for t in ax.texts}


def test_short_ids_are_unique_and_follow_the_naming():
    summary = _summary()
    ids = short_ids(summary).set_axis(summary["trial_id"])
    assert ids.is_unique
    assert ids["s"] == "S" and ids["sh"] == "Sh"
    assert [ids[f"b{i}"] for i in range(6)] == [f"B{i + 1}" for i in range(6)]  # by MAdds
    assert [ids[f"b1p{j}"] for j in range(5)] == ["P1a", "P1b", "P1c", "P1d", "P1e"] and ids["b1v"] == "V1"
    assert ids["b3p0"] == "P2a" and ids["b3v"] == "V2"  # second front point with baselines, by MAdds
    clash = pd.DataFrame({"method": ["single", "split-at", "split-at", "permuted"], "madds": [4, 2, 1, 3],
                          "is_baseline": [True, False, False, False]})
    assert short_ids(clash).tolist() == ["S", "Sp2", "Sp1", "P1"]


def test_labels_do_not_overlap_and_bars_and_ties_are_drawn():
    summary = _summary()
    fig, table = pareto_plot_with_ids(summary, title="crowded")
    boxes = _label_boxes(fig)
    assert set(boxes) == set(table["id"])  # every point labelled with its id
    for (a, ba), (b, bb) in itertools.combinations(boxes.items(), 2):
        w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
        h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
        assert w <= 0 or h <= 0, f"labels {a} and {b} overlap"
    ax = fig.axes[0]
    assert any(type(c).__name__ == "ErrorbarContainer" for c in ax.containers)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "± 1 s.e. (retrain seeds)" in legend
    front = summary[summary["on_front"]]
    ties = analysis.near_ties(front)
    assert ties.any()  # LTB and BMTAS trials 1e4 MAdds and 0.2 % apart, noise 0.4 / √3
    assert ("front point within 2 s.e. of a neighbour" in legend) == bool(ties.any())
    assert set(table.loc[table["near tie"] == "≈", "id"]) == set(short_ids(summary)[ties[ties].index])
    assert set(table.loc[table["id"] == "P1a", "baseline of"]) == {"B2"}


def test_plain_results_keep_working_without_bars_or_ties(tmp_path):
    df = pd.DataFrame({"label": ["Single", "Shared", "a", "b"], "madds": [4e5, 1e5, 2e5, 2e5],
                       "delta_m": [0.0, -9.0, -3.0, -3.1], "is_baseline": [True, True, False, False],
                       "method": ["single", "shared", "bmtas", "bmtas"], "status": "ok"})
    fig = pareto_plot(df, title="plain")
    assert not fig.axes[0].containers  # no s.e. column, no error bars
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any("s.e." in t for t in legend)
    boxes = _label_boxes(fig)
    assert set(boxes) == {"Single", "Shared", "a", "b"}
    assert not boxes["a"].overlaps(boxes["b"])
    analysis.plots.save(fig, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0
    assert list(id_table(df, short_ids(df))["id"]) == ["S", "Sh", "B1", "B2"]


def test_truth_plot_draws_every_tree_the_front_and_each_method():
    rng = np.random.default_rng(1)
    trees = {f"h{i}": (1e5 * (1 + i % 4), -4 + i * 0.6) for i in range(8)}  # 4 MAdds levels, 2 trees each
    rows = pd.DataFrame([{"arch_hash": h, "tree": h, "seed": s, "madds": m, "delta_m": d + 0.2 * rng.standard_normal()}
                         for h, (m, d) in trees.items() for s in range(3)])
    means = analysis.tree_means(rows)
    found = pd.DataFrame({"madds": [2e5], "delta_m": [0.5], "delta_m/se": [0.3]})
    fig = analysis.truth_plot(means, {"bmtas": ["h5", "h6", "not-in-the-table"], "ltb": found}, title="truth")
    ax = fig.axes[0]
    points = [len(c.get_offsets()) for c in ax.collections if type(c).__name__ == "PathCollection"]
    assert points == [8, 2, 1]  # every tree, then each method's (the unknown hash left out)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    front = len(analysis.exhaustive_front(means))
    assert legend == ["every tree of the table (8, ± 1 s.e. over 3 seeds)", f"exhaustive front ({front} trees)",
                      "bmtas (2 trees)", "ltb (1 tree)"]
    assert ax.get_xlabel() == "MAdds [MMAdds]" and ax.get_title() == "truth"
    assert sum(type(c).__name__ == "ErrorbarContainer" for c in ax.containers) == 3  # table, bmtas, ltb
