"""Turn a results table into a report folder: tidy parquet, markdown, HTML, Pareto plot, trees.

:func:`build_report` is pure (DataFrame in, :class:`Report` out, nothing written) so a notebook can
stop there; :func:`write_report` writes the folder. The front is taken over the ``ok`` trials in
(MAdds ↓, Δm ↑); failed trials stay in every table, marked, and are never on the front.

Given an exhaustive *truth table* of the sweep's recipe (every tree of the space retrained with
seeds, :mod:`analysis.exhaustive`), the report also says where each searched method stands: the share
of the exhaustive front's hypervolume its trees reach (looked up by ``arch_hash``), next to the
sweep's random control trees, and ``truth.png`` (:func:`~analysis.plots.truth_plot`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.delta_m import Level, delta_m, primary_metric_columns
from analysis.directions import resolve_directions
from analysis.errors import AnalysisError
from analysis.exhaustive import hypervolume_fraction, regret, seed_fractions, tree_means
from analysis.pareto import hypervolume_2d, pareto_front
from analysis.plots import (
    KIND_IDS,
    cost_plot,
    lambda_plot,
    madds_unit,
    pareto_plot,
    pareto_plot_with_ids,
    save,
    tree_plot,
    truth_plot,
)
from analysis.replicates import (
    METHOD_NAMES,
    baselines_table,
    format_mean_se,
    hypervolume_replicates,
    paired_difference,
    pooled_baselines,
    seed_paired_gap,
    standard_error,
    summarize_replicates,
    trivial_margins,
    verdict_lines,
)
from analysis.tables import markdown_table, normalise_results
from analysis.trees import BranchTree, branch_tree

FRONT_OBJECTIVES = {"madds": "min", "delta_m": "max"}
#: Cost columns a front can be taken over (``build_report(cost=...)``): MAdds, and the median latency
#: measured on the node that retrained (``branchsweep latency``; sweeps with ``--cost latency|both``).
COST_COLUMNS = {"madds": "madds", "latency": "latency_ms"}
LATENCY_COLUMN = COST_COLUMNS["latency"]
_COST_NAMES = {"madds": "MAdds", LATENCY_COLUMN: "latency"}
LAMBDA_COLUMN = "hp/lambda"
_LEADING = ["trial_id", "label", "method", "status", "is_baseline", "on_front", "madds", "params", "delta_m",
            "delta_m_reported"]
_TRAILING = ["arch_hash", "arch_drawing", "arch_json", "search_time_s", "retrain_time_s"]
_FRONT_COLOUR = "#d8f3d8"
_FAILED_COLOUR = "#f6d5d5"


@dataclass
class Report:
    """A computed report: the tidy table plus what was used to compute it."""

    results: pd.DataFrame
    metrics: dict[str, str]
    baseline: str
    level: str
    source: str = ""
    notes: list[str] = field(default_factory=list)
    #: One row per (trial, retrain seed) (see :mod:`analysis.replicates`); None: no replicates.
    replicates: pd.DataFrame | None = None
    #: The trivial predictor's metrics (``{"<task>/<metric>": value}``); None: not known.
    trivial: dict[str, float] | None = None
    #: The exhaustive table of the sweep's recipe: ``(rows, manifest)`` (one row per tree × seed, and its
    #: manifest: ``table``, ``trees``, ``seeds``, ``commit``, ...); None: no table matches.
    truth: tuple[pd.DataFrame, dict[str, Any]] | None = None
    #: The cost columns the front is taken over (each minimised, Δm maximised), e.g. ``["madds"]``.
    costs: list[str] = field(default_factory=lambda: ["madds"])

    @property
    def objectives(self) -> dict[str, str]:
        """The front's objectives: every cost column ↓, Δm ↑."""
        return front_objectives(self.costs)

    @property
    def front(self) -> pd.DataFrame:
        """The front rows, sorted by MAdds."""
        return self.results[self.results["on_front"]].sort_values("madds")

    @property
    def failed(self) -> pd.DataFrame:
        return self.results[self.results["status"] != "ok"]

    @property
    def hp_columns(self) -> list[str]:
        return [c for c in self.results.columns if str(c).startswith("hp/")]


def cost_columns(cost: str | Sequence[str]) -> list[str]:
    """The cost columns of ``cost``: ``"madds"``, ``"latency"`` (column ``latency_ms``), ``"both"``, a
    column name or a list of them.

    >>> cost_columns("both"), cost_columns("latency"), cost_columns(["madds", "energy_mj"])
    (['madds', 'latency_ms'], ['latency_ms'], ['madds', 'energy_mj'])
    """
    if isinstance(cost, str):
        cost = list(COST_COLUMNS) if cost == "both" else [cost]
    columns = [COST_COLUMNS.get(c, c) for c in cost]
    if not columns:
        raise AnalysisError("a front needs at least one cost column")
    return list(dict.fromkeys(columns))


def front_objectives(costs: Sequence[str]) -> dict[str, str]:
    """``{cost: "min", ..., "delta_m": "max"}`` (see :func:`cost_columns`)."""
    return {**{c: "min" for c in cost_columns(list(costs))}, "delta_m": "max"}


def choose_baseline(results: pd.DataFrame) -> str:
    """The Δm reference label: the ``is_baseline`` row of method ``single``, else the only baseline label."""
    ok = results[(results["status"] == "ok") & results["is_baseline"]]
    single = ok.loc[ok["method"].astype(str) == "single", "label"].astype(str).unique()
    if len(single) == 1:
        return str(single[0])
    labels = ok["label"].astype(str).unique()
    if len(labels) == 1:
        return str(labels[0])
    what = f"several ({', '.join(labels)})" if len(labels) else "no"
    raise AnalysisError(f"{what} successful baseline rows; choose the Δm reference with --baseline LABEL")


def _order_columns(df: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    other_metrics = [c for c in df.columns if "/" in str(c) and not str(c).startswith("hp/") and c not in metrics]
    hps = sorted(c for c in df.columns if str(c).startswith("hp/"))
    first = [c for c in _LEADING if c in df.columns] + list(metrics) + other_metrics + hps
    last = [c for c in _TRAILING if c in df.columns]
    rest = [c for c in df.columns if c not in first and c not in last]
    return df[first + rest + last]


def build_report(
    results: pd.DataFrame,
    *,
    baseline: str | None = None,
    metrics: Sequence[str] | None = None,
    directions: Mapping[str, str] | None = None,
    level: Level = "metric",
    source: str = "",
    known: Mapping[str, str] | None = None,
    primaries: Mapping[str, str] | None = None,
    replicates: pd.DataFrame | None = None,
    trivial: Mapping[str, float] | None = None,
    truth: tuple[pd.DataFrame, Mapping[str, Any]] | None = None,
    cost: str | Sequence[str] = "madds",
) -> Report:
    """Add ``delta_m`` and ``on_front`` to a results table (sweep schema, see :mod:`analysis.tables`).

    ``metrics`` are the Δm columns (default: each task's primary metric, ``primaries`` mapping a task to
    it, see :func:`~analysis.delta_m.primary_metric_columns`); their directions come from
    ``directions``, header arrows or ``known`` (``{"<task>/<metric>": direction}``, see
    :func:`~analysis.directions.resolve_directions`). ``branchsweep report`` passes the task
    registry's as ``known`` and ``primaries``. ``baseline`` is the reference row label (rows sharing it
    are averaged; default: :func:`choose_baseline`). ``replicates``: the long table of the retrain seeds
    (one row per trial and seed, :mod:`analysis.replicates`); with it the report leads with verdict
    lines and has the matched-baselines table and each method's hypervolume ± s.e. ``trivial``: the
    metrics of the constant predictor fitted on the training labels; with it the report has a table
    of every model's margin over it (:func:`~analysis.replicates.trivial_margins`). ``truth``: the
    exhaustive table of the sweep's recipe, ``(rows, manifest)`` (``branchsweep/truth.py`` writes them);
    with it the report scores each searched method's trees against every tree of the space
    (:func:`truth_scores`) and draws them among them (``truth.png``). ``cost``: the cost axis of the
    front (:func:`cost_columns`: ``"madds"``, ``"latency"``, ``"both"`` or column names); the verdict,
    the matched baselines and the truth scores stay at matched MAdds.
    """
    df = normalise_results(results, source or "results")
    costs = cost_columns(cost)
    absent = [c for c in costs if c not in df.columns or pd.to_numeric(df[c], errors="coerce").isna().all()]
    if absent:
        raise AnalysisError(f"cost column {absent[0]!r} has no values in the results (a sweep run with --cost madds "
                            "measures no latency)")
    label = baseline if baseline is not None else choose_baseline(df)
    ok = df["status"] == "ok"
    base_rows = df[ok & (df["label"].astype(str) == label)]
    if base_rows.empty:
        labels = ", ".join(dict.fromkeys(df.loc[ok, "label"].astype(str)))
        raise AnalysisError(f"baseline {label!r} is not the label of any successful row; labels: {labels}")
    chosen = list(metrics) if metrics else primary_metric_columns(df.columns, primaries)
    missing = [m for m in chosen if m not in df.columns]
    if missing:
        raise AnalysisError(f"metric column {missing[0]!r} is not in the results")
    dirs = resolve_directions(chosen, directions, known=known)
    base = base_rows[chosen].apply(pd.to_numeric, errors="coerce").mean(axis=0)
    df["delta_m"] = delta_m(df, base, dirs, level=level).where(ok)
    front = pareto_front(df[ok], front_objectives(costs))
    df["on_front"] = front.reindex(df.index, fill_value=False).astype(bool)
    notes: list[str] = []
    if "delta_m_reported" in df.columns:
        diff = (df["delta_m"] - pd.to_numeric(df["delta_m_reported"], errors="coerce")).abs()
        if diff.notna().any():
            notes.append(f"Δm recomputed vs reported: largest absolute difference {diff.max():.3f} percentage points.")
    nan_dm = df.index[ok & df["delta_m"].isna()]
    if len(nan_dm):
        notes.append(f"{len(nan_dm)} successful trial(s) miss a metric, so their Δm is empty and they are off the front.")
    df = _order_columns(df, chosen).sort_values(["madds", "label"], kind="stable").reset_index(drop=True)
    if truth is not None:
        tree_means(truth[0])  # a table without the needed columns fails here, with its column named
        truth = (truth[0].assign(arch_hash=truth[0]["arch_hash"].astype(str)), dict(truth[1]))
    return Report(df, dirs, label, level, source, notes, replicates, dict(trivial) if trivial else None, truth,
                  costs)


# ---------------------------------------------------------------------------------------------- display
def mean_metric(df: pd.DataFrame, columns: Sequence[str]) -> tuple[str, pd.Series] | None:
    """``("mean <metric>", row means)`` when every column is ``<task>/<metric>`` with one metric name and
    there are several tasks (CelebA: the mean accuracy over 40 attributes, Learning to Branch's Table 1
    score); None otherwise.

    >>> mean_metric(pd.DataFrame({"a/accuracy": [90.0], "b/accuracy": [80.0]}), ["a/accuracy", "b/accuracy"])[0]
    'mean accuracy'
    """
    names = {str(c).rpartition("/")[2] for c in columns}
    if len(columns) < 2 or len(names) != 1 or not all("/" in str(c) for c in columns):
        return None
    return f"mean {names.pop()}", df[list(columns)].apply(pd.to_numeric, errors="coerce").mean(axis=1)


def _display(df: pd.DataFrame, columns: Sequence[str], unit: tuple[float, str] | None = None,
             mean: bool = False) -> pd.DataFrame:
    """Human-readable columns: MAdds in ``unit`` (default: :func:`madds_unit` of ``df``), params in
    millions, Δm rounded; keeps the given metric columns (after their mean, with ``mean``, where
    :func:`mean_metric` defines one)."""
    scale, name = unit or madds_unit(df["madds"])
    out = pd.DataFrame(index=df.index)
    out["front"] = np.where(df["on_front"], "★", "")
    if "label" in df.columns:
        out["label"] = df["label"]
    if "method" in df.columns and df["method"].astype(str).str.len().any():
        out["method"] = df["method"]
    if (df["status"] != "ok").any():
        out["status"] = df["status"]
    out[name] = (df["madds"] / scale).round(3 if name != "GMAdds" else 2)
    if LATENCY_COLUMN in df.columns and pd.to_numeric(df[LATENCY_COLUMN], errors="coerce").notna().any():
        out["latency [ms]"] = pd.to_numeric(df[LATENCY_COLUMN], errors="coerce").round(3)
    if "params" in df.columns and df["params"].notna().any():
        out["params [M]"] = (pd.to_numeric(df["params"], errors="coerce") / 1e6).round(2)
    out["Δm [%]"] = df["delta_m"].round(2)
    if "delta_m/se" in df.columns:
        out["Δm s.e."] = pd.to_numeric(df["delta_m/se"], errors="coerce").round(2)
    if "delta_m_reported" in df.columns:
        out["Δm reported [%]"] = df["delta_m_reported"]
    averaged = mean_metric(df, columns) if mean else None
    if averaged is not None:
        out[averaged[0]] = averaged[1].round(3)
    for c in columns:
        out[c] = df[c]
    return out.reset_index(drop=True)


def _metric_header(report: Report) -> list[str]:
    return [f"{m} ({'↑' if d == 'max' else '↓'})" for m, d in report.metrics.items()]


def _tables(report: Report) -> dict[str, pd.DataFrame]:
    df = report.results
    metric_cols = list(report.metrics)
    rename = dict(zip(metric_cols, _metric_header(report)))
    hps = report.hp_columns
    unit = madds_unit(df["madds"])  # one unit for every table of the report
    sections = {
        f"Pareto front ({', '.join(_COST_NAMES.get(c, c) + ' ↓' for c in report.costs)}, Δm ↑)":
            _display(report.front, metric_cols, unit, mean=True),
        "All trials, sorted by MAdds (★ = on the front)": _display(df, metric_cols, unit, mean=True),
        "Baselines": _display(df[(df["label"].astype(str) == report.baseline) | df["is_baseline"]], metric_cols,
                              unit, mean=True),
    }
    if hps and len(report.front):
        sections["Hyperparameters of the front points"] = _display(report.front, hps, unit)[
            ["label", unit[1], "Δm [%]", *hps]
        ]
    if len(report.failed):
        cols = [c for c in ("error",) if c in df.columns]
        sections["Failed trials"] = _display(report.failed, cols, unit)
    return {k: v.rename(columns=rename) for k, v in sections.items()}


def replicate_hypervolumes(report: Report) -> pd.DataFrame | None:
    """Each method's hypervolume ± s.e. over retrain seeds (:func:`hypervolume_replicates`), MAdds in the
    report's unit; the Single/Shared rows (``is_baseline``) are left out. None without replicates."""
    long = report.replicates
    if long is None or long.empty or not {"method", "madds", "delta_m", "retrain_seed"} <= set(long.columns):
        return None
    searched = long[~long["is_baseline"].fillna(False).astype(bool)] if "is_baseline" in long.columns else long
    if searched.empty:
        return None
    scale, _ = madds_unit(report.results["madds"])
    hv = hypervolume_replicates(searched, scale={"madds": scale})
    if "baseline_kind" in searched.columns:  # searched methods first, then the matched baselines
        matched = set(searched.loc[searched["baseline_kind"].notna(), "method"].astype(str))
        hv = hv.sort_values("method", key=lambda m: m.astype(str).isin(matched), kind="stable").reset_index(drop=True)
    return hv


def replicate_verdict(report: Report) -> list[str]:
    """The report's first lines: front vs matched baselines, hypervolumes (:func:`verdict_lines`)."""
    if report.replicates is None or "delta_m" not in report.replicates.columns:
        return []
    return verdict_lines(report.replicates, replicate_hypervolumes(report))


def _replicate_tables(report: Report) -> dict[str, pd.DataFrame]:
    long = report.replicates
    if long is None or long.empty:
        return {}
    scale, unit = madds_unit(report.results["madds"])
    sections: dict[str, pd.DataFrame] = {}
    metrics = [m for m in report.metrics if m in long.columns]
    if "trial_id" in long.columns and "label" in long.columns and "madds" in long.columns:
        summary = pooled_baselines(summarize_replicates(long))
        sections["Models and matched baselines (mean ± s.e. over retrain seeds)"] = baselines_table(
            summary, metrics, report.metrics, madds_scale=scale, madds_unit=unit)
    hv = replicate_hypervolumes(report)
    if hv is not None and len(hv):
        shown = pd.DataFrame({
            "method": hv["method"],
            f"hypervolume ({unit} × Δm %)": [format_mean_se(m, e) for m, e in zip(hv["hypervolume"], hv["hypervolume/se"])],
            "of the mean front": hv["hypervolume_of_means"].round(4), "seeds": hv["replicates"], "trials": hv["trials"]})
        sections["Hypervolume per method (mean ± s.e. over retrain seeds)"] = shown
    return sections


def _trivial_tables(report: Report) -> dict[str, pd.DataFrame]:
    if not report.trivial:
        return {}
    df = report.results
    ok = df[df["status"] == "ok"].sort_values("madds", kind="stable")
    table = trivial_margins(ok, report.trivial, report.metrics)
    if table.shape[1] <= 2:
        return {}
    return {"Margin over the trivial predictor (constant prediction fitted on the training labels)": table}


def baselines_verdict(report: Report) -> list[str]:
    """One line: Single − Shared in Δm, paired by retrain seed and unpaired (needs replicates of both)."""
    long = report.replicates
    if long is None or long.empty or not {"trial_id", "label", "retrain_seed", "delta_m"} <= set(long.columns):
        return []
    labels = long["label"].astype(str)
    ids = {name: long.loc[labels == name, "trial_id"].astype(str).unique().tolist() for name in ("Single", "Shared")}
    if not ids["Single"] or not ids["Shared"]:
        return []
    gap, se, n = seed_paired_gap(long, ids["Single"], ids["Shared"])
    unpaired = paired_difference(long, ids["Single"], ids["Shared"])
    z = f"{gap / se:.1f} s.e." if se and math.isfinite(se) else "one seed"
    return [f"Single − Shared: Δm {format_mean_se(gap, se, sign=True)} % paired by retrain seed ({z}, {n} seeds; "
            f"unpaired ± {unpaired['gap_se']:.2g})"]


def trivial_verdict(report: Report) -> list[str]:
    """One line: how many models beat the trivial predictor on every Δm metric."""
    tables = _trivial_tables(report)
    if not tables:
        return []
    table = next(iter(tables.values())).iloc[1:]
    losers = table.loc[~table["beats trivial"], "model"].tolist()
    if not losers:
        return [f"every model beats the trivial predictor on every task ({len(table)} models)"]
    return [f"{len(losers)} of {len(table)} models do NOT beat the trivial predictor on every task: "
            + ", ".join(losers[:5]) + (" …" if len(losers) > 5 else "")]


# ------------------------------------------------------------------------------------ truth table
#: Methods of control trials (trees built at a front point's MAdds), never a searched method.
CONTROL_METHODS = tuple(KIND_IDS)


def searched_methods(results: pd.DataFrame) -> list[str]:
    """The searched methods of a results table, sorted: the methods of the successful rows that are no
    baseline (Single, Shared) and no control tree (``baseline_kind``, or a control method's name)."""
    ok = results[results["status"] == "ok"] if "status" in results.columns else results
    keep = ~ok["is_baseline"].fillna(False).astype(bool) if "is_baseline" in ok.columns else pd.Series(True, index=ok.index)
    if "baseline_kind" in ok.columns:
        keep &= ok["baseline_kind"].isna() | (ok["baseline_kind"].astype(str).str.strip() == "")
    methods = ok.loc[keep, "method"].dropna().astype(str) if "method" in ok.columns else pd.Series(dtype=str)
    return sorted(m for m in set(methods) if m and m not in CONTROL_METHODS)


def _score(rows: pd.DataFrame, means: pd.DataFrame, method: str, trees: str, hashes: Sequence[str]) -> dict[str, Any]:
    hashes = list(dict.fromkeys(hashes))
    known = [h for h in hashes if h in means.index]
    out: dict[str, Any] = {"method": method, "trees": trees, "count": len(hashes), "not_in_table": len(hashes) - len(known),
                           "hv_fraction": math.nan, "hv_fraction/se": math.nan, "seeds": 0,
                           "hv_fraction_of_means": math.nan, "regret_mean": math.nan}
    if known:
        per_seed = seed_fractions(rows, known).dropna()
        out.update({"hv_fraction": float(per_seed.mean()) if len(per_seed) else math.nan,
                    "hv_fraction/se": standard_error(per_seed), "seeds": len(per_seed),
                    "hv_fraction_of_means": hypervolume_fraction(means, known),
                    "regret_mean": float(np.mean([regret(means, h) for h in known]))})
    return out


def truth_scores(report: Report) -> pd.DataFrame | None:
    """Each searched method's trees (:func:`searched_methods`) scored against the exhaustive table, and
    after it the sweep's random control trees built at its front points (``trees``: ``searched`` or
    ``random``): ``count`` distinct trees, ``not_in_table`` (trees of another space or recipe),
    ``hv_fraction`` ± ``hv_fraction/se`` over the table's ``seeds`` (:func:`seed_fractions`),
    ``hv_fraction_of_means`` (:func:`hypervolume_fraction` of the table's tree means) and
    ``regret_mean`` (Δm points below the exhaustive front at each tree's MAdds, tree means). None
    without a table or without ``arch_hash``."""
    df = report.results
    if report.truth is None or "arch_hash" not in df.columns:
        return None
    rows = report.truth[0]
    means = tree_means(rows)
    ok = df[(df["status"] == "ok") & df["arch_hash"].map(lambda v: _text(v) is not None)]
    methods = ok["method"].astype(str) if "method" in ok.columns else pd.Series("", index=ok.index)
    random = ok[methods == "random"]
    out = []
    for method in searched_methods(ok):
        part = ok[methods == method]
        out.append(_score(rows, means, method, "searched", part["arch_hash"].astype(str)))
        matched = random
        if "baseline_of" in random.columns and "trial_id" in part.columns:
            matched = random[random["baseline_of"].astype(str).isin(set(part["trial_id"].astype(str)))]
        if len(matched):
            out.append(_score(rows, means, method, "random", matched["arch_hash"].astype(str)))
    return pd.DataFrame(out, columns=["method", "trees", "count", "not_in_table", "hv_fraction", "hv_fraction/se",
                                      "seeds", "hv_fraction_of_means", "regret_mean"])


def truth_name(report: Report) -> str:
    """The name of the report's exhaustive table ("" without one)."""
    return str(report.truth[1].get("table") or "exhaustive table") if report.truth is not None else ""


def truth_header(report: Report) -> list[str]:
    """One line naming the exhaustive table: name, trees × seeds, branch points, commit (none without one)."""
    if report.truth is None:
        return []
    rows, manifest = report.truth
    seeds = manifest.get("seeds")
    n_seeds = len(seeds) if isinstance(seeds, (list, tuple)) else int(seeds or rows["seed"].nunique())
    trees = int(manifest.get("trees") or rows["arch_hash"].nunique())
    sha, plus, rest = str(manifest.get("commit") or "unknown").partition("+")
    points = manifest.get("branch_points")
    where = f", branch points {', '.join(map(str, points))}" if points else ""
    return [f"exhaustive table {truth_name(report)}: {trees} trees × {n_seeds} seeds{where}, commit {sha[:12]}{plus}{rest}"]


def _fraction(mean: float, se: float, seeds: int) -> str:
    text = format_mean_se(100 * mean, 100 * se if seeds > 1 else math.nan)
    return text + " %"


def truth_verdict(report: Report) -> list[str]:
    """One line per searched method: ``searched front (BMTAS): X ± Y % of the exhaustive hypervolume;
    random trees: Z %`` (mean ± s.e. over the table's seeds; with one seed, of the table's mean front),
    with the trees not in the table counted. Empty without a table."""
    scores = truth_scores(report)
    if scores is None:
        return []
    lines = []
    for method, part in scores.groupby("method", sort=False):
        name = METHOD_NAMES.get(str(method), str(method))
        searched = part[part["trees"] == "searched"].iloc[0]
        count, missing = int(searched["count"]), int(searched["not_in_table"])
        if missing == count:
            line = f"searched front ({name}): none of its {count} tree{'s' if count != 1 else ''} is in the table (another space)"
        else:
            seeds = int(searched["seeds"])
            what = f"of the exhaustive hypervolume ({seeds} table seeds)" if seeds > 1 else "of the table's mean front's hypervolume"
            line = f"searched front ({name}): {_fraction(searched['hv_fraction'], searched['hv_fraction/se'], seeds)} {what}"
            if missing:
                line += f", {missing} of {count} trees not in the table (another space)"
        random = part[part["trees"] == "random"]
        if len(random):
            r = random.iloc[0]
            if int(r["not_in_table"]) == int(r["count"]):
                line += "; random trees: not in the table"
            else:
                line += f"; random trees: {_fraction(r['hv_fraction'], r['hv_fraction/se'], int(r['seeds']))}"
                if int(r["not_in_table"]):
                    line += f" ({int(r['not_in_table'])} of {int(r['count'])} not in the table)"
        lines.append(line)
    if not lines and report.truth is not None:
        lines.append("no searched trees to look up in the exhaustive table")
    return lines


def _truth_tables(report: Report) -> dict[str, pd.DataFrame]:
    scores = truth_scores(report)
    if scores is None or scores.empty:
        return {}
    shown = pd.DataFrame({
        "method": [METHOD_NAMES.get(str(m), str(m)) for m in scores["method"]],
        "trees": np.where(scores["trees"] == "random", "random trees at its front", "searched"),
        "distinct trees": scores["count"], "not in table": scores["not_in_table"],
        "of the exhaustive hypervolume [%]": [_fraction(m, e, n)[:-2] if n else "" for m, e, n in
                                              zip(scores["hv_fraction"], scores["hv_fraction/se"], scores["seeds"])],
        "of the mean front [%]": (100 * scores["hv_fraction_of_means"]).round(1),
        "regret [Δm points]": scores["regret_mean"].round(2), "table seeds": scores["seeds"]})
    return {f"Against the exhaustive table {truth_name(report)} (hypervolume share per table seed, mean ± s.e.)": shown}


def _truth_notes(report: Report) -> list[str]:
    if report.truth is None:
        return []
    if "arch_hash" not in report.results.columns:
        return ["The results have no arch_hash column, so no tree can be looked up in the exhaustive table."]
    scores = truth_scores(report)
    missing = int(scores["not_in_table"].sum()) if scores is not None and len(scores) else 0
    if missing:
        return [f"{missing} searched or random tree(s) are not in the exhaustive table (trees of another space, e.g. "
                "other branch points): they count in no hypervolume share and are not drawn in truth.png."]
    return []


def _truth_figure(report: Report) -> Any:
    rows, _ = report.truth  # type: ignore[misc]
    df = report.results
    ok = df[(df["status"] == "ok") & df["arch_hash"].map(lambda v: _text(v) is not None)]
    methods: dict[str, list[str]] = {}
    for method in searched_methods(ok):
        methods[METHOD_NAMES.get(method, method)] = ok.loc[ok["method"].astype(str) == method, "arch_hash"].astype(str).tolist()
    random = ok.loc[ok["method"].astype(str) == "random", "arch_hash"].astype(str).tolist()
    if random:
        methods["random"] = random
    means = tree_means(rows)
    return truth_plot(means, methods, title=f"Searched trees among the {len(means)} trees of {truth_name(report)}")


def _verdict(report: Report) -> list[str]:
    return replicate_verdict(report) + truth_verdict(report) + baselines_verdict(report) + trivial_verdict(report)


@dataclass
class Architecture:
    """One distinct architecture on the front: its ``arch_hash``, the labels of the front rows that use
    it, its text drawing (``arch_drawing``) and its tree (read from ``arch_json``); None when absent."""

    key: str
    labels: list[str] = field(default_factory=list)
    drawing: str | None = None
    tree: BranchTree | None = None


def _text(value: object) -> str | None:
    """A cell as a non-empty str; None for a missing value (None, NaN, pd.NA) or a blank."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    text = str(value)
    return text if text.strip() else None


def front_architectures(front: pd.DataFrame) -> dict[str, Architecture]:
    """The distinct architectures of ``front``, keyed by the ``arch_hash`` column, in row order.

    Rows without a hash are left out; a hash's drawing and tree come from the first of its rows that
    has ``arch_drawing`` / ``arch_json``. A malformed ``arch_json`` is an AnalysisError naming its trial.

    >>> front = pd.DataFrame({"label": ["A", "B", "C"], "arch_hash": ["h1", "h2", "h1"],
    ...                       "arch_drawing": ["L1 [a b]", None, None]})
    >>> {k: (a.labels, a.drawing, a.tree) for k, a in front_architectures(front).items()}
    {'h1': (['A', 'C'], 'L1 [a b]', None), 'h2': (['B'], None, None)}
    """
    if "arch_hash" not in front.columns:
        return {}
    out: dict[str, Architecture] = {}
    for i, row in front.iterrows():
        key = _text(row["arch_hash"])
        if key is None:
            continue
        arch = out.setdefault(key, Architecture(key))
        arch.labels.append(str(row.get("label", i)))
        if arch.drawing is None:
            arch.drawing = _text(row.get("arch_drawing"))
        text = _text(row.get("arch_json"))
        if arch.tree is None and text is not None:
            arch.tree = branch_tree(text, source=f"arch_json of trial {row.get('trial_id', i)!r} ({row.get('label', i)})")
    return out


def _summary_lines(report: Report) -> list[str]:
    df = report.results
    n_ok = int((df["status"] == "ok").sum())
    metrics = ", ".join(f"{m} ({d})" for m, d in report.metrics.items())
    lines = [
        f"- source: `{report.source}`" if report.source else "",
        *[f"- {line.replace(truth_name(report), f'**{truth_name(report)}**', 1)} (searched trees looked up by arch_hash)"
          for line in truth_header(report)],
        f"- trials: {len(df)} ({n_ok} ok, {len(df) - n_ok} failed); on the front: {int(df['on_front'].sum())}",
        f"- Δm reference: **{report.baseline}**; level: {report.level}; metrics: {metrics}",
        "- Δm = (1/n) Σ_i (-1)^{l_i} (M_m,i − M_b,i) / M_b,i · 100, l_i = 1 for lower-is-better",
    ]
    ok = df[(df["status"] == "ok") & df["delta_m"].notna()]
    if len(ok):
        ref = {"madds": float(ok["madds"].max()) * 1.1, "delta_m": float(ok["delta_m"].min()) - 1.0}
        scale, unit = madds_unit(df["madds"])
        hv = hypervolume_2d(ok.assign(madds=ok["madds"] / scale), FRONT_OBJECTIVES,
                            {"madds": ref["madds"] / scale, "delta_m": ref["delta_m"]})
        lines.append(
            f"- hypervolume ({unit} × Δm %, reference {ref['madds'] / scale:.3g} {unit}, {ref['delta_m']:.3g} %): {hv:.4g}"
        )
        latency = pd.to_numeric(ok[LATENCY_COLUMN], errors="coerce") if LATENCY_COLUMN in ok.columns else None
        if latency is not None and latency.notna().any():
            timed = ok.assign(**{LATENCY_COLUMN: latency})[latency.notna()]
            lref = {LATENCY_COLUMN: float(latency.max()) * 1.1, "delta_m": ref["delta_m"]}
            lhv = hypervolume_2d(timed, {LATENCY_COLUMN: "min", "delta_m": "max"}, lref)
            lines.append(f"- hypervolume (latency ms × Δm %, reference {lref[LATENCY_COLUMN]:.3g} ms, "
                         f"{ref['delta_m']:.3g} %): {lhv:.4g}")
    rho = cost_rank_correlation(df)
    if rho is not None:
        lines.append(f"- MAdds vs measured latency: Spearman ρ = {rho[0]:.2f} over {rho[1]} architectures"
                     f"{latency_settings_note(df)}")
    return [line for line in lines if line]


def cost_rank_correlation(results: pd.DataFrame) -> tuple[float, int] | None:
    """Spearman's rank correlation between MAdds and measured latency over the distinct successful
    architectures (one row per ``arch_hash`` where there is one), and their count; None with fewer than 3.

    >>> df = pd.DataFrame({"madds": [1, 2, 3, 4], "latency_ms": [0.1, 0.3, 0.2, 0.4], "status": "ok"})
    >>> cost_rank_correlation(df)
    (0.8, 4)
    """
    if LATENCY_COLUMN not in results.columns or "madds" not in results.columns:
        return None
    ok = (results[results["status"] == "ok"] if "status" in results.columns else results).reset_index(drop=True)
    pairs = pd.DataFrame({"madds": pd.to_numeric(ok["madds"], errors="coerce"),
                          "latency": pd.to_numeric(ok[LATENCY_COLUMN], errors="coerce")}).dropna()
    if "arch_hash" in ok.columns:
        pairs = pairs.groupby(ok.loc[pairs.index, "arch_hash"].astype(str)).mean()
    if len(pairs) < 3:
        return None
    return round(float(pairs["madds"].corr(pairs["latency"], method="spearman")), 6), len(pairs)


def latency_settings_note(results: pd.DataFrame) -> str:
    """`` (latency: cpu, batch 1, 1 thread, torch)`` from the ``latency_settings`` column, when one
    setting is recorded (what the numbers mean depends on it)."""
    if "latency_settings" not in results.columns:
        return ""
    values = results["latency_settings"].dropna().astype(str).unique()
    return f" (latency measured with {values[0]})" if len(values) == 1 else ""


# ---------------------------------------------------------------------------------------------- writing
def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write the report folder; returns ``{artifact name: path}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    notes = list(report.notes)

    tidy = report.results.copy()
    for c in tidy.columns:  # parquet needs one type per column; mixed object columns become strings
        if tidy[c].dtype == object and tidy[c].map(type).nunique() > 1:
            tidy[c] = tidy[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    files["results"] = out_dir / "results.parquet"
    tidy.to_parquet(files["results"], index=False)

    title = f"Δm vs MAdds: {Path(report.source).name}" if report.source else None
    plot_ids = None
    if "delta_m/se" in report.results.columns:  # replicated results: error bars, short ids and their table
        fig, plot_ids = pareto_plot_with_ids(report.results, title=title)
        files["pareto"] = save(fig, out_dir / "pareto.png")
        files["plot_ids"] = out_dir / "plot_ids.csv"
        plot_ids.to_csv(files["plot_ids"], index=False)
    else:
        files["pareto"] = save(pareto_plot(report.results, title=title), out_dir / "pareto.png")
    rho = cost_rank_correlation(report.results)
    if rho is not None:  # measured latency: its own front plot and how well MAdds predicts it
        files["pareto_latency"] = save(pareto_plot(report.results, x=LATENCY_COLUMN, title=title),
                                       out_dir / "pareto_latency.png")
        files["madds_vs_latency"] = save(cost_plot(report.results, rho=rho[0]), out_dir / "madds_vs_latency.png")
    has_lambda = LAMBDA_COLUMN in report.results.columns and report.results[LAMBDA_COLUMN].notna().any()
    if has_lambda:
        files["lambda"] = save(lambda_plot(report.results), out_dir / "lambda_vs_madds.png")
    else:
        notes.append(f"No {LAMBDA_COLUMN} column with values, so there is no lambda_vs_madds.png.")

    archs = front_architectures(report.front)
    for key, arch in archs.items():
        (out_dir / "arch").mkdir(exist_ok=True)
        if arch.drawing is not None:
            (out_dir / "arch" / f"{key}.txt").write_text(arch.drawing + "\n")
        if arch.tree is not None:
            save(tree_plot(arch.tree, f"{key}: {', '.join(arch.labels)}"), out_dir / "arch" / f"{key}.png")
    notes += _architecture_notes(archs)
    if report.truth is not None and "arch_hash" in report.results.columns:
        files["truth"] = save(_truth_figure(report), out_dir / "truth.png")
    notes += _truth_notes(report)

    tables = {**_replicate_tables(report), **_truth_tables(report), **_trivial_tables(report), **_tables(report)}
    if plot_ids is not None:
        tables["Plot ids (pareto.png)"] = plot_ids
    files["markdown"] = out_dir / "report.md"
    files["markdown"].write_text(_markdown(report, tables, files, archs, notes))
    files["html"] = out_dir / "report.html"
    files["html"].write_text(_html(report, tables, files, archs, notes))
    return files


def _architecture_notes(archs: Mapping[str, Architecture]) -> list[str]:
    """What the architecture section lacks, and why (older sweeps have no ``arch_drawing``)."""
    if not archs:
        return ["No architecture hash (arch_hash) on the front rows, so there are no tree drawings."]
    notes = []
    no_text = [k for k, a in archs.items() if a.drawing is None]
    no_tree = [k for k, a in archs.items() if a.tree is None]
    if no_text:
        notes.append(f"No arch_drawing for {len(no_text)} of {len(archs)} front architecture(s), so they have no text drawing.")
    if no_tree:
        notes.append(f"No arch_json for {len(no_tree)} of {len(archs)} front architecture(s), so they have no tree plot.")
    return notes


def _markdown(report: Report, tables: dict[str, pd.DataFrame], files: dict[str, Path],
              archs: Mapping[str, Architecture], notes: list[str]) -> str:
    verdict = _verdict(report)
    parts = ["# branchsweep report", "", *[f"**{line}**  " for line in verdict], *([""] if verdict else []),
             *_summary_lines(report), ""]
    parts += ["## Figures", "", f"![Δm vs MAdds]({files['pareto'].name})", ""]
    if "pareto_latency" in files:
        parts += [f"![Δm vs measured latency]({files['pareto_latency'].name})", "",
                  f"![MAdds vs measured latency]({files['madds_vs_latency'].name})", ""]
    if "lambda" in files:
        parts += [f"![λ vs MAdds]({files['lambda'].name})", ""]
    if "truth" in files:
        parts += [f"![searched trees among every tree of the table]({files['truth'].name})", ""]
    for title, table in tables.items():
        parts += [f"## {title}", "", markdown_table(table), ""]
    if archs:
        parts += ["## Architectures on the front", ""]
        for key, arch in archs.items():
            parts += [f"### {key} ({', '.join(arch.labels)})", ""]
            if arch.tree is not None:
                parts += [f"![tree](arch/{key}.png)", ""]
            if arch.drawing is not None:
                parts += ["```", arch.drawing, "```", ""]
    if notes:
        parts += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(parts)


def _styled(table: pd.DataFrame) -> str:
    def colour(row: pd.Series) -> list[str]:
        if row.get("front") == "★":
            return [f"background-color: {_FRONT_COLOUR}"] * len(row)
        if "status" in row and row["status"] != "ok":
            return [f"background-color: {_FAILED_COLOUR}"] * len(row)
        return [""] * len(row)

    styler = table.style.apply(colour, axis=1).hide(axis="index").format(precision=4, na_rep="")
    return styler.to_html()


def _html(report: Report, tables: dict[str, pd.DataFrame], files: dict[str, Path],
          archs: Mapping[str, Architecture], notes: list[str]) -> str:
    esc = html.escape
    body = ["<h1>branchsweep report</h1>", *[f"<p><b>{esc(line)}</b></p>" for line in _verdict(report)], "<ul>"]
    body += [f"<li>{esc(line[2:]).replace('**', '').replace('`', '')}</li>" for line in _summary_lines(report)]
    body += ["</ul>", "<p>Front rows are highlighted green, failed trials red.</p>",
             f'<img src="{esc(files["pareto"].name)}" alt="Δm vs MAdds" style="max-width:900px">']
    if "pareto_latency" in files:
        body.append(f'<img src="{esc(files["pareto_latency"].name)}" alt="Δm vs latency" style="max-width:900px">')
        body.append(f'<img src="{esc(files["madds_vs_latency"].name)}" alt="MAdds vs latency" style="max-width:700px">')
    if "lambda" in files:
        body.append(f'<img src="{esc(files["lambda"].name)}" alt="λ vs MAdds" style="max-width:700px">')
    if "truth" in files:
        body.append(f'<img src="{esc(files["truth"].name)}" alt="searched trees among every tree" style="max-width:900px">')
    for title, table in tables.items():
        body += [f"<h2>{esc(title)}</h2>", _styled(table)]
    if archs:
        body.append("<h2>Architectures on the front</h2>")
        for key, arch in archs.items():
            body.append(f"<h3>{esc(key)} ({esc(', '.join(arch.labels))})</h3>")
            if arch.tree is not None:
                body.append(f'<img src="arch/{esc(key)}.png" alt="tree {esc(key)}">')
            if arch.drawing is not None:
                body.append(f"<pre>{esc(arch.drawing)}</pre>")
    if notes:
        body += ["<h2>Notes</h2>", "<ul>", *[f"<li>{esc(n)}</li>" for n in notes], "</ul>"]
    style = "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>branchsweep report</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
