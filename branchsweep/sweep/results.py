"""A sweep's results: trial rows from Tune's result grids, Δm, and the files the analysis reads.

* :func:`grid_rows`: one row per trial of a ``ResultGrid`` (its final result row, or a ``failed`` row with
  its error); :func:`metric_spec` collects the Δm columns and metric directions the trials reported;
* :func:`fill_delta_m`: Δm of rows that finished before the Single baseline did, from its row;
* the files: ``results.parquet`` (:func:`write_results`: the columns the analysis package reads),
  ``replicates.parquet`` (:func:`replicate_rows`), ``trivial.json`` (:func:`trivial_row`) and
  ``metrics.json`` (:func:`write_metric_spec`), all written by :func:`write_outputs`;
* :func:`economy`: the ``[economy]`` summary of ``sweep.log``; :func:`front_points`: the live front.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from analysis.tables import METRICS_FILE, REPLICATES_FILE, TRIVIAL_FILE
from branchsweep.atomic import atomic_write, write_json
from branchsweep.pipeline import SweepCaches
from branchsweep.sweep.trainable import sweep_trial, unreported

#: The sweep's objectives and their directions (fronts, the searcher, the report).
OBJECTIVES = {"madds": "min", "delta_m": "max"}
RESULTS_FILE = "results.parquet"
#: The files :func:`write_outputs` may write into the run folder (each uploaded to the sweep's prefix).
OUTPUT_FILES = (RESULTS_FILE, REPLICATES_FILE, TRIVIAL_FILE, METRICS_FILE)


def front_points(rows: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """Distinct non-dominated (MAdds ↓, Δm ↑) points of finished rows, sorted by MAdds."""
    import pandas as pd

    from analysis import pareto_front

    df = pd.DataFrame([{"madds": r.get("madds"), "delta_m": r.get("delta_m")} for r in rows], columns=["madds", "delta_m"])
    df = df.apply(pd.to_numeric, errors="coerce").astype(float)
    front = df[pareto_front(df, OBJECTIVES)].drop_duplicates().sort_values(["madds", "delta_m"])
    return [(int(m), float(d)) for m, d in front.itertuples(index=False)]


def grid_rows(grid: Any) -> list[dict[str, Any]]:
    """One row per trial of a ResultGrid (its last result, from ``get_dataframe``); a failed trial keeps
    its sampled config and its error as a ``failed`` row."""
    import pandas as pd

    df = grid.get_dataframe()
    failed = {str((r.metrics or {}).get("trial_id") or _trial_id_from_path(r.path)): r
              for r in grid if r.error is not None}
    rows = []
    for raw in df.to_dict("records"):
        raw = unreported(raw)
        raw = {k: v for k, v in raw.items() if not (isinstance(v, float) and pd.isna(v) and k.startswith("config/"))}
        trial_id = str(raw.get("trial_id", ""))
        result = failed.pop(trial_id, None)
        error = result.error if result is not None else None
        if error is None and raw.get("phase") == "done":
            row = {k: v for k, v in raw.items() if not k.startswith(_TUNE_COLUMNS)}
            row["status"] = "ok"
        else:
            params = {k.removeprefix("config/").removeprefix("point/"): v for k, v in raw.items()
                      if k.startswith("config/")}
            row = {"label": raw.get("label") or params.get("method"), "method": params.get("method"),
                   "status": "failed", "error": _error_line(error, raw.get("phase")),
                   **{k: raw[k] for k in ("madds", "arch_hash", "arch_json") if k in raw}}
        row["trial_id"] = trial_id
        rows.append(row)
    for trial_id, result in failed.items():  # failed before reporting anything: no row in the data frame
        params = dict(result.config or {})
        params = dict(params.get("point", params))
        rows.append({"label": params.get("label") or params.get("method"), "method": params.get("method"),
                     "status": "failed", "error": _error_line(result.error, None), "trial_id": trial_id})
    return rows


#: Columns Tune adds to every result (not trial results of ours).
_TUNE_COLUMNS = ("config/", "time_", "timestamp", "date", "hostname", "node_ip", "pid", "done", "training_iteration",
                 "iterations_since_restore", "checkpoint_dir_name", "logdir", "should_checkpoint")


def _trial_id_from_path(path: str | None) -> str:
    """Tune names a trial's folder ``<trainable>_<trial id>_<index>_<params>``; trial ids look like
    ``a1b2c_00003`` (grid search) or ``f5bec826`` (a searcher's)."""
    tokens = Path(path or "").name.removeprefix(f"{sweep_trial.__name__}_").split("_")
    if len(tokens) > 1 and len(tokens[1]) == 5 and tokens[1].isdigit():
        return f"{tokens[0]}_{tokens[1]}"
    return tokens[0]


def _error_line(error: Any, phase: Any) -> str:
    if error is not None:
        lines = str(error).strip().splitlines()
        return lines[-1] if lines else type(error).__name__
    return f"trial ended without a final result (last phase: {phase or 'none'})"


def economy(rows: list[dict[str, Any]], caches: SweepCaches | None) -> list[str]:
    """The ``[economy]`` lines: trials ok/failed, retrains reused from the cache, each method's shared state,
    search and retrain time."""
    from branchsweep.search import SEARCH_METHODS

    ok = [r for r in rows if r.get("status") == "ok"]
    reused = [r for r in ok if r.get("retrain_cached")]
    lines = [
        f"trials: {len(ok)} ok, {len(rows) - len(ok)} failed",
        f"retrain dedup: {len(reused)} of {len(ok)} trials reused a cached retrain "
        f"(saved ~{sum(_trained_time(r, ok) for r in reused):.1f} s of retraining)",
    ]
    for name in sorted({r.get("method") for r in ok} & set(SEARCH_METHODS.names()) if caches is not None else ()):
        line = SEARCH_METHODS.get(name).sweep_summary(caches.method_dir(name), sum(r.get("method") == name for r in ok))
        if line:
            lines.append(line)
    return lines + [
        "MAdds: every architecture priced before its retrain (see each trial.log: 'priced before retraining')",
        f"search time {sum(float(r.get('search_time_s', 0)) for r in ok):.1f} s, "
        f"retrain time {sum(float(r.get('retrain_time_s', 0)) for r in ok):.1f} s",
    ]


def _trained_time(row: dict[str, Any], ok: list[dict[str, Any]]) -> float:
    """Retrain seconds a cached row would have cost: those of the trial that trained that key."""
    key = row.get("retrain_key")
    times = [float(r.get("retrain_time_s", 0)) for r in ok if r.get("retrain_key") == key and not r.get("retrain_cached")]
    return max(times, default=0.0)


def metric_spec(rows: list[dict[str, Any]], known: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Pop every row's ``metric_spec`` (the trials know their tasks; the driver holds no data set) and
    return ``known`` or else the first: ``{"primary": [...], "directions": {metric: "max"|"min"}}``."""
    specs = [r.pop("metric_spec", None) for r in rows]
    specs = [json.loads(v) if isinstance(v, str) else v for v in specs if v]
    return known or (specs[0] if specs else None)


def single_metrics(rows: list[dict[str, Any]], spec: dict[str, Any] | None) -> dict[str, float] | None:
    """The Single baseline's metric values (handed to every search trial: Δm needs no shared cache)."""
    single = next((r for r in rows if r.get("is_baseline") and r.get("method") == "single" and r.get("status") == "ok"), None)
    if single is None or spec is None:
        return None
    return {k: float(single[k]) for k in spec["directions"] if k in single}


def fill_delta_m(rows: list[dict[str, Any]], spec: dict[str, Any] | None) -> None:
    """Δm of rows that finished before the Single baseline did (concurrent baselines), from its row."""
    single = single_metrics(rows, spec)
    missing = [r for r in rows if r.get("status") == "ok" and math.isnan(float(r.get("delta_m", math.nan)))]
    if single is None or not missing:
        return
    from branchsweep.pipeline import compute_delta_m, mean_and_se

    directions = {k: spec["directions"][k] for k in spec["primary"]}
    reference = {k: single[k] for k in directions}  # the Single row holds its replicates' means
    for row in missing:
        reps = json.loads(row["replicates_json"]) if isinstance(row.get("replicates_json"), str) else []
        for rep in reps:
            rep["delta_m"] = compute_delta_m(rep, reference, directions)
        if reps:
            row["replicates_json"] = json.dumps(reps)
            row["delta_m"], row["delta_m/se"] = mean_and_se([r["delta_m"] for r in reps])
        else:
            row["delta_m"] = compute_delta_m(row, reference, directions)


def replicate_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long form: one row per (trial, retrain seed) from each row's ``replicates_json``."""
    out = []
    keep = ("trial_id", "label", "method", "is_baseline", "arch_hash", "madds", "baseline_of", "baseline_kind")
    for row in rows:
        if row.get("status") != "ok" or not isinstance(row.get("replicates_json"), str):
            continue
        for rep in json.loads(row["replicates_json"]):
            out.append({**{k: row.get(k) for k in keep}, **rep})
    return out


def trivial_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trivial predictor's metrics (fitted on the training labels by the Single trial), or None."""
    single = next((r for r in rows if r.get("is_baseline") and r.get("method") == "single"
                   and r.get("status") == "ok" and isinstance(r.get("trivial_json"), str)), None)
    return json.loads(single["trivial_json"]) if single else None


def write_metric_spec(spec: dict[str, Any], run_dir: Path) -> Path:
    """``RUN_DIR/metrics.json``: the Δm columns (each task's primary metric) and every metric's direction,
    as the trials reported them; the report reads this file so that tasks created per run (``bent_0``,
    the 40 CelebA attributes) need no ``--direction`` flags."""
    return write_json(run_dir / METRICS_FILE, spec)


def write_results(rows: list[dict[str, Any]], path: Path) -> Path:
    """``results.parquet`` with the columns the analysis package reads (madds int, status, is_baseline)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    for column, default in (("status", "failed"), ("is_baseline", False), ("method", "")):
        if column not in df.columns:
            df[column] = default
    df["is_baseline"] = df["is_baseline"].fillna(False).astype(bool)
    df["madds"] = pd.to_numeric(df.get("madds"), errors="coerce").astype("Int64")
    for column in df.columns:
        if df[column].dtype == object:
            df[column] = df[column].map(lambda v: json.dumps(v, default=str) if isinstance(v, (list, dict, tuple)) else v)
    front = df.columns[:0].tolist() + [c for c in ("trial_id", "label", "method", "status", "is_baseline", "madds",
                                                   "params", "delta_m") if c in df.columns]
    df = df[front + [c for c in df.columns if c not in front]]
    # A uniquely named temporary file beside it, then os.replace: a reader (or a killed driver) never
    # sees half a parquet file, and the previous one stays whole until the new one is complete.
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))



def write_outputs(rows: list[dict[str, Any]], spec: dict[str, Any] | None, run_dir: Path) -> Path:
    """Write :data:`OUTPUT_FILES` into ``run_dir``: ``results.parquet`` (returned), the per-seed rows, the
    trivial predictor's metrics and the metric spec (each when there is one)."""
    results = write_results(rows, run_dir / RESULTS_FILE)
    long = replicate_rows(rows)
    if long:
        write_results(long, run_dir / REPLICATES_FILE)
    trivial = trivial_row(rows)
    if trivial is not None:
        write_json(run_dir / TRIVIAL_FILE, trivial)
    if spec is not None:
        write_metric_spec(spec, run_dir)
    return results
