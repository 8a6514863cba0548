"""The controls stage: for every front point of each searched method, the trees of the registered controls.

BMTAS judges a searched tree against trees of the same MAdds that were not searched (Table 3: permutations
of its tree and a "vanilla" tree; Figure 2: random structures). The sweep asks the search-method registry
for its controls (:func:`branchsweep.search.base.control_methods`) and each control for its trials at a
front point (:meth:`~branchsweep.search.base.SearchMethod.control_trials`); it names no method. The
trials run as one Tune grid (experiment ``controls``), tagged ``baseline_of`` with the front point.
"""

from __future__ import annotations

import math
from typing import Any

from branchsweep.sweep.results import OBJECTIVES, metric_spec, single_metrics
from branchsweep.sweep.settings import SweepConfig
from branchsweep.sweep.tuner import CONTROL_EXPERIMENT, run_stage


def searched_fronts(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per searched method (one with an Optuna space), its finished rows on its own front (MAdds ↓,
    mean Δm ↑), sorted by MAdds; rows with the same architecture appear once."""
    import pandas as pd

    from analysis import pareto_front
    from branchsweep.search import SEARCH_METHODS

    out: dict[str, list[dict[str, Any]]] = {}
    ok = [r for r in rows if r.get("status") == "ok" and not r.get("is_baseline") and not r.get("baseline_kind")
          and r.get("method") in SEARCH_METHODS and SEARCH_METHODS.get(r["method"]).space_type is not None
          and not math.isnan(float(r.get("delta_m", math.nan)))]
    for method in sorted({r["method"] for r in ok}):
        mine = list({r["arch_hash"]: r for r in ok if r["method"] == method}.values())
        df = pd.DataFrame({"madds": [float(r["madds"]) for r in mine], "delta_m": [float(r["delta_m"]) for r in mine]})
        on = pareto_front(df, OBJECTIVES).tolist()
        out[method] = sorted((r for r, keep in zip(mine, on) if keep), key=lambda r: float(r["madds"]))
    return out


def control_points(rows: list[dict[str, Any]], kinds: tuple[str, ...], permutations: int,
                   seed: int = 0) -> list[dict[str, Any]]:
    """The control trials for the front points of the searched methods (BMTAS Table 3 / Figure 2): for each
    front point, the trials of every control in ``kinds``, in the registry's order
    (:func:`~branchsweep.search.base.control_methods`; ``permutations``: how many trees a control that draws
    several builds). Each is a Tune param dict ``{"method", "control": {"search", "label", "tags"}}``; a tree
    on several fronts gets one set of controls. ``seed``: the search seed the control trials run with (it
    draws the permutations and random trees)."""
    from branchsweep.search import SEARCH_METHODS
    from branchsweep.search.base import control_methods

    wanted = [name for name in control_methods() if name in kinds]
    points, seen = [], set()
    for method, front in searched_fronts(rows).items():
        for rank, row in enumerate(front, 1):
            if row["arch_hash"] in seen:
                continue
            seen.add(row["arch_hash"])
            tags = {"baseline_of": str(row["trial_id"]), "baseline_of_label": str(row["label"])}
            short = f"{method}#{rank}"
            for kind in wanted:
                for trial in SEARCH_METHODS.get(kind).control_trials(row, permutations, seed):
                    points.append({"method": kind, "control": {
                        "search": trial.search, "label": f"{short} {trial.name}",
                        "tags": {**tags, "baseline_kind": kind}}})
    return points


def run_controls(cfg: SweepConfig, rows: list[dict[str, Any]], spec: dict[str, Any] | None, say,
                 out_of_time) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The controls stage (``cfg.controls``): its rows (none when the stage is off, has no front point, or
    ``out_of_time()`` says the time budget is spent) and the metric spec."""
    points = control_points(rows, cfg.controls, cfg.permutations, cfg.base.search_seed) if cfg.controls else []
    if points and out_of_time():
        say(f"time budget reached: the controls stage ({len(points)} trials) is not started")
        return [], spec
    if not points:
        return [], spec
    say(f"controls: {len(points)} trials ({', '.join(cfg.controls)}) at the MAdds of "
        f"{len({c['control']['tags']['baseline_of'] for c in points})} front point(s)")
    control_rows = run_stage(cfg, CONTROL_EXPERIMENT, say, len(points), baseline_metrics=single_metrics(rows, spec),
                             controls=points)
    return control_rows, metric_spec(control_rows, spec)
