"""Retrain seeds as replicates: means, standard errors, replicated hypervolumes and baseline gaps.

Input is a *long* table with one row per (trial, retrain seed)::

    trial_id, label, method, arch_hash, madds, retrain_seed, <task>/<metric>..., delta_m
    [baseline_of, baseline_kind]   # a baseline row: the front point (trial_id) it was built for and
                                   # its kind ("permuted", "vanilla", "random")

and :func:`summarize_replicates` turns it into one row per trial with the mean in the column's own name
and the standard error in ``<column>/se``. Every spread here is a standard error of a mean,
``s.e. = s / √n`` with ``s`` the sample standard deviation (``ddof=1``); it is NaN for ``n = 1`` (one
replicate says nothing about the noise). Differences of independent means combine as
``s.e.(a − b) = √(s.e.(a)² + s.e.(b)²)``.

A group of several *trials* (e.g. the K permutations of one front point) is pooled over trials: its
value is the mean of the trials' means and its s.e. the spread of those means, ``s_trials / √K``,
which counts architecture-to-architecture and seed variation alike; a group of one trial keeps that
trial's seed s.e. (:func:`pool_trials`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.directions import check_direction
from analysis.errors import AnalysisError
from analysis.pareto import hypervolume_2d

SE_SUFFIX = "/se"
SEED_COLUMN = "retrain_seed"
#: How the kinds of baseline read in sentences ("BMTAS front vs permutations ...").
KIND_NAMES = {"permuted": "permutations", "vanilla": "vanilla trees", "random": "random trees"}
#: How methods read in sentences; any other method is printed as it is named.
METHOD_NAMES = {"bmtas": "BMTAS", "ltb": "LTB"}


# ------------------------------------------------------------------------------------------ basics
def standard_error(values: Iterable[float]) -> float:
    """``s / √n`` of the non-missing values (``s``: sample standard deviation, ddof=1); NaN for n < 2.

    >>> round(standard_error([1.0, 2.0, 3.0]), 4), standard_error([5.0])
    (0.5774, nan)
    """
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").dropna().to_numpy(dtype=float)
    if len(x) < 2:
        return math.nan
    return float(np.std(x, ddof=1) / math.sqrt(len(x)))


def format_mean_se(mean: float, se: float, sign: bool = False, digits: int | None = None) -> str:
    """``"mean ± s.e."`` with as many decimals as the s.e.'s second significant digit needs (at most 6).

    Without an s.e. (NaN) the mean is printed with 4 significant digits.

    >>> format_mean_se(1.2345, 0.456, sign=True), format_mean_se(0.63217, 0.0123), format_mean_se(18.17, math.nan)
    ('+1.23 ± 0.46', '0.632 ± 0.012', '18.17')
    """
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    plus = "+" if sign else ""
    if se is None or not math.isfinite(se):
        return f"{mean:{plus}.4g}"
    if digits is None:
        digits = 2 if se == 0 else min(6, max(0, 1 - math.floor(math.log10(abs(se)))))
    return f"{mean:{plus}.{digits}f} ± {se:.{digits}f}"


def value_columns(long: pd.DataFrame) -> list[str]:
    """The replicated numbers of a long table: metric columns (``<task>/<metric>``, not ``hp/…`` or
    ``…/se``) and ``delta_m``.

    >>> value_columns(pd.DataFrame(columns=["trial_id", "madds", "sal/maxF", "hp/lambda", "delta_m"]))
    ['sal/maxF', 'delta_m']
    """
    out = [c for c in long.columns if "/" in str(c) and not str(c).startswith("hp/")
           and not str(c).endswith(SE_SUFFIX)]
    return out + [c for c in ("delta_m",) if c in long.columns]


# ------------------------------------------------------------------------------------- summarising
def summarize_replicates(long: pd.DataFrame, by: str | Sequence[str] = "trial_id",
                         columns: Sequence[str] | None = None, seed_column: str = SEED_COLUMN) -> pd.DataFrame:
    """One row per group of ``by`` (a trial): mean of each of ``columns``, its s.e. in ``<col>/se``.

    ``columns`` default to :func:`value_columns`. ``replicates`` is the group's number of rows; the
    s.e. of a column uses its non-missing values (``s / √n``, NaN for one). Every other column is
    carried from the group's first row (identity columns: label, method, madds, arch_hash, ...), except
    ``seed_column``. Groups keep their order of first appearance.

    >>> long = pd.DataFrame({"trial_id": ["a", "a", "a", "b"], "madds": [5, 5, 5, 7],
    ...                      "retrain_seed": [0, 1, 2, 0], "delta_m": [1.0, 2.0, 3.0, -1.0]})
    >>> summarize_replicates(long).round(4).to_dict("records")
    [{'trial_id': 'a', 'madds': 5, 'delta_m': 2.0, 'delta_m/se': 0.5774, 'replicates': 3}, \
{'trial_id': 'b', 'madds': 7, 'delta_m': -1.0, 'delta_m/se': nan, 'replicates': 1}]
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in keys if c not in long.columns]
    if missing:
        raise AnalysisError(f"replicates table has no column {missing[0]!r} to group by")
    cols = list(columns) if columns is not None else value_columns(long)
    absent = [c for c in cols if c not in long.columns]
    if absent:
        raise AnalysisError(f"replicates table has no column {absent[0]!r}")
    numbers = long[cols].apply(pd.to_numeric, errors="coerce")
    groups = numbers.groupby([long[k] for k in keys], sort=False, dropna=False)
    means = groups.mean()
    ses = groups.std(ddof=1) / np.sqrt(groups.count())
    ses = ses.where(groups.count() > 1)
    carried = [c for c in long.columns if c not in cols and c not in keys and c != seed_column]
    first = long[keys + carried].groupby(keys, sort=False, dropna=False).first()
    out = first.copy()
    for c in cols:
        out[c] = means[c]
        out[c + SE_SUFFIX] = ses[c]
    out["replicates"] = long.groupby(keys, sort=False, dropna=False).size()
    return out.reset_index()


def pool_trials(summary: pd.DataFrame, column: str = "delta_m") -> tuple[float, float, int]:
    """``(mean, s.e., trials)`` of a group of summarised trials (see the module docstring).

    Several trials: mean of their means, ``s.e. = s_trials / √K``. One trial: its own mean and seed
    s.e. (``<column>/se``).

    >>> one = pd.DataFrame({"delta_m": [2.0], "delta_m/se": [0.3]})
    >>> pool_trials(one), tuple(round(v, 4) for v in pool_trials(pd.DataFrame({"delta_m": [1.0, 2.0, 3.0]})))
    ((2.0, 0.3, 1), (2.0, 0.5774, 3))
    """
    values = pd.to_numeric(summary[column], errors="coerce").dropna()
    if len(values) == 0:
        return math.nan, math.nan, 0
    if len(values) == 1:
        se_col = column + SE_SUFFIX
        se = float(summary.loc[values.index[0], se_col]) if se_col in summary.columns else math.nan
        return float(values.iloc[0]), se, 1
    return float(values.mean()), standard_error(values), len(values)


# ------------------------------------------------------------------------------------ hypervolume
def default_reference(long: pd.DataFrame, objectives: Mapping[str, str], margin: float = 0.1) -> dict[str, float]:
    """A reference point every row of ``long`` beats: the worst value of each objective, pushed out by
    ``margin`` of its range (at least 1 % of its magnitude, or 1 when both are 0).

    >>> default_reference(pd.DataFrame({"madds": [1.0, 3.0], "delta_m": [-2.0, 4.0]}), {"madds": "min", "delta_m": "max"})
    {'madds': 3.2, 'delta_m': -2.6}
    """
    ref = {}
    for column, direction in objectives.items():
        values = pd.to_numeric(long[column], errors="coerce").dropna()
        if values.empty:
            raise AnalysisError(f"no values in {column!r} to place the hypervolume reference")
        lo, hi = float(values.min()), float(values.max())
        pad = max(margin * (hi - lo), 0.01 * max(abs(lo), abs(hi))) or 1.0
        ref[column] = hi + pad if check_direction(column, direction) == "min" else lo - pad
    return ref


def hypervolume_replicates(long: pd.DataFrame, objectives: Mapping[str, str] | None = None,
                           by_method: str = "method", reference: Mapping[str, float] | None = None,
                           seed_column: str = SEED_COLUMN, scale: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Hypervolume of each method's trials, replicated over retrain seeds: mean ± s.e.

    For each method and each seed index ``r`` (the ``r``-th seed of every trial, seeds sorted), the 2-D
    hypervolume (:func:`~analysis.pareto.hypervolume_2d`) of the method's trials with seed ``r``'s
    values; ``r`` runs over the seeds every trial of the method has (``replicates``). Reported: the mean
    over ``r`` and its s.e. ``s_r / √R``, plus ``hypervolume_of_means`` (the front of the trial means).
    ``reference`` defaults to :func:`default_reference` over the whole table, so methods compare;
    ``scale`` divides objectives first (e.g. ``{"madds": 1e6}`` for MMAdds).

    >>> long = pd.DataFrame({"trial_id": ["a", "a", "b", "b"], "method": "m", "retrain_seed": [0, 1, 0, 1],
    ...                      "madds": [1.0, 1.0, 2.0, 2.0], "delta_m": [1.0, 3.0, 4.0, 4.0]})
    >>> hypervolume_replicates(long, reference={"madds": 3.0, "delta_m": 0.0}).round(3).to_dict("records")
    [{'method': 'm', 'hypervolume': 6.0, 'hypervolume/se': 1.0, 'replicates': 2, 'trials': 2, \
'hypervolume_of_means': 6.0}]
    """
    objectives = dict(objectives or {"madds": "min", "delta_m": "max"})
    needed = [by_method, "trial_id", seed_column, *objectives]
    missing = [c for c in needed if c not in long.columns]
    if missing:
        raise AnalysisError(f"replicates table has no column {missing[0]!r}")
    data = long.copy()
    for column, factor in (scale or {}).items():
        data[column] = pd.to_numeric(data[column], errors="coerce") / factor
    if reference is None:
        ref = default_reference(data, objectives)
    else:
        ref = {c: float(v) / (scale or {}).get(c, 1.0) for c, v in reference.items()}
    data["_rank"] = data.groupby("trial_id")[seed_column].rank(method="first").astype(int) - 1
    rows = []
    for method, part in data.groupby(by_method, sort=False):
        counts = part.groupby("trial_id").size()
        reps = int(counts.min())
        values = [hypervolume_2d(part[part["_rank"] == r], objectives, ref) for r in range(reps)]
        means = part.groupby("trial_id")[list(objectives)].mean()
        rows.append({by_method: method, "hypervolume": float(np.mean(values)),
                     "hypervolume/se": standard_error(values), "replicates": reps, "trials": len(counts),
                     "hypervolume_of_means": hypervolume_2d(means, objectives, ref)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ baseline gaps
def paired_difference(long: pd.DataFrame, a_ids: Iterable[str], b_ids: Iterable[str], column: str = "delta_m",
                      summary: pd.DataFrame | None = None) -> dict[str, float]:
    """``a − b`` for two groups of trials (e.g. a front point and its permutations): means, s.e.s, gap.

    Each group is pooled with :func:`pool_trials`; ``gap = mean_a − mean_b`` and
    ``gap_se = √(se_a² + se_b²)``. ``summary`` (from :func:`summarize_replicates`) saves recomputing it.

    >>> long = pd.DataFrame({"trial_id": ["f", "f", "p1", "p1", "p2", "p2"], "retrain_seed": [0, 1] * 3,
    ...                      "delta_m": [3.0, 5.0, 1.0, 1.0, 2.0, 2.0]})
    >>> {k: round(v, 3) for k, v in paired_difference(long, ["f"], ["p1", "p2"]).items()}
    {'a': 4.0, 'a_se': 1.0, 'a_trials': 1, 'b': 1.5, 'b_se': 0.5, 'b_trials': 2, 'gap': 2.5, 'gap_se': 1.118}
    """
    summary = summary if summary is not None else summarize_replicates(long, columns=[column])
    ids = summary["trial_id"].astype(str)
    out: dict[str, float] = {}
    for name, wanted in (("a", a_ids), ("b", b_ids)):
        wanted = [str(w) for w in wanted]
        unknown = [w for w in wanted if w not in set(ids)]
        if unknown:
            raise AnalysisError(f"trial {unknown[0]!r} is not in the replicates table")
        mean, se, n = pool_trials(summary[ids.isin(wanted)], column)
        out.update({name: mean, f"{name}_se": se, f"{name}_trials": n})
    out["gap"] = out["a"] - out["b"]
    out["gap_se"] = math.sqrt(out["a_se"] ** 2 + out["b_se"] ** 2)
    return out


def seed_paired_gap(long: pd.DataFrame, a_ids: Iterable[str], b_ids: Iterable[str], column: str = "delta_m",
                    seed_column: str = "retrain_seed") -> tuple[float, float, int]:
    """``a − b`` paired by retrain seed: for every seed both groups have, ``d_r = mean_a(r) − mean_b(r)``
    (each group's trials averaged at that seed); returns ``(mean_r d_r, s.e. of d_r, seeds)``.

    The same retrain seed gives every tree the same data order, so the paired s.e. leaves out what the
    trees share seed by seed (the unpaired :func:`paired_difference` keeps it).

    >>> long = pd.DataFrame({"trial_id": ["s", "s", "s", "h", "h", "h"], "retrain_seed": [0, 1, 2] * 2,
    ...                      "delta_m": [1.0, -2.0, 1.0, -7.0, -9.0, -6.0]})
    >>> tuple(round(v, 3) for v in seed_paired_gap(long, ["s"], ["h"]))
    (7.333, 0.333, 3)
    """
    ids = long["trial_id"].astype(str)
    per = {}
    for name, wanted in (("a", a_ids), ("b", b_ids)):
        part = long[ids.isin([str(w) for w in wanted])]
        per[name] = pd.to_numeric(part[column], errors="coerce").groupby(part[seed_column]).mean()
    d = (per["a"] - per["b"]).dropna()
    if d.empty:
        raise AnalysisError("the two groups share no retrain seed")
    return float(d.mean()), standard_error(d.tolist()), int(len(d))


def baseline_gaps(long: pd.DataFrame, kind: str = "permuted", column: str = "delta_m") -> pd.DataFrame:
    """Per front point with baselines of ``kind``: the point's ``column``, its baselines', and the gap.

    Rows of kind ``kind`` (``baseline_kind``) are grouped by ``baseline_of`` (the front point's
    trial_id); each group is compared with its front point by :func:`paired_difference`. Columns:
    ``trial_id``, ``label``, ``method``, ``madds`` of the front point, ``point`` ± ``point_se``,
    ``baselines`` ± ``baselines_se`` over ``baseline_trials`` trees, ``gap`` ± ``gap_se``. See
    :func:`overall_gap` for one number over the front.

    >>> long = pd.DataFrame({"trial_id": ["f", "f", "p1", "p1", "p2", "p2"], "retrain_seed": [0, 1] * 3,
    ...     "label": ["B1", "B1", "P1a", "P1a", "P1b", "P1b"], "method": ["bmtas"] * 2 + ["permuted"] * 4,
    ...     "madds": 5, "delta_m": [3.0, 5.0, 1.0, 1.0, 2.0, 2.0],
    ...     "baseline_of": [None, None, "f", "f", "f", "f"], "baseline_kind": [None, None] + ["permuted"] * 4})
    >>> baseline_gaps(long)[["label", "point", "baselines", "gap", "gap_se"]].round(3).to_dict("records")
    [{'label': 'B1', 'point': 4.0, 'baselines': 1.5, 'gap': 2.5, 'gap_se': 1.118}]
    """
    for needed in ("baseline_of", "baseline_kind", "trial_id", column):
        if needed not in long.columns:
            raise AnalysisError(f"replicates table has no column {needed!r}")
    summary = summarize_replicates(long, columns=[column])
    ids = summary["trial_id"].astype(str)
    mine = summary[summary["baseline_kind"].astype(str) == kind]
    rows = []
    for point, group in mine.groupby(mine["baseline_of"].astype(str), sort=False):
        if point not in set(ids):
            raise AnalysisError(f"{kind} baselines of trial {point!r}: that trial is not in the replicates table")
        diff = paired_difference(long, [point], group["trial_id"].astype(str), column, summary=summary)
        front = summary[ids == point].iloc[0]
        rows.append({"trial_id": point, "label": front.get("label", point), "method": front.get("method", ""),
                     "madds": front.get("madds", math.nan), "point": diff["a"], "point_se": diff["a_se"],
                     "baselines": diff["b"], "baselines_se": diff["b_se"], "baseline_trials": diff["b_trials"],
                     "gap": diff["gap"], "gap_se": diff["gap_se"]})
    columns = ["trial_id", "label", "method", "madds", "point", "point_se", "baselines", "baselines_se",
               "baseline_trials", "gap", "gap_se"]
    return pd.DataFrame(rows, columns=columns)


def overall_gap(gaps: pd.DataFrame) -> tuple[float, float]:
    """Mean gap over front points and its s.e.: ``ḡ = (1/m) Σ g_i``, ``s.e. = √(Σ se_i²) / m``.

    The front points' gaps are independent estimates (different trees, different trainings), so the
    s.e. of their average combines theirs; it is the gap *of this front*, not of all possible fronts.

    >>> overall_gap(pd.DataFrame({"gap": [2.0, 4.0], "gap_se": [0.3, 0.4]}))
    (3.0, 0.25)
    """
    g = pd.to_numeric(gaps["gap"], errors="coerce")
    se = pd.to_numeric(gaps["gap_se"], errors="coerce")
    keep = g.notna()
    m = int(keep.sum())
    if m == 0:
        return math.nan, math.nan
    return float(g[keep].mean()), float(math.sqrt(float((se[keep] ** 2).sum(skipna=False))) / m)


# ------------------------------------------------------------------------------------------ near ties
def near_ties(front_summary: pd.DataFrame, column: str = "delta_m", k: float = 2.0,
              order_by: str = "madds") -> pd.Series:
    """Boolean Series: front points whose ``column`` is within ``k`` s.e. of a neighbour on the front.

    Neighbours are the adjacent points in ``order_by`` (MAdds) order; points ``i`` and ``j`` tie when
    ``|m_i − m_j| ≤ k · √(se_i² + se_j²)`` (``<column>/se``). A point without an s.e. (one replicate)
    ties with nothing: the noise is unknown. Index as ``front_summary``'s.

    >>> front = pd.DataFrame({"madds": [1, 2, 3], "delta_m": [-5.0, -4.5, 0.0], "delta_m/se": [0.2, 0.2, 0.2]})
    >>> near_ties(front).tolist()
    [True, True, False]
    """
    se_col = column + SE_SUFFIX
    for needed in (column, se_col, order_by):
        if needed not in front_summary.columns:
            raise AnalysisError(f"front table has no column {needed!r}")
    ordered = front_summary.sort_values(order_by, kind="stable")
    m = pd.to_numeric(ordered[column], errors="coerce").to_numpy(dtype=float)
    se = pd.to_numeric(ordered[se_col], errors="coerce").to_numpy(dtype=float)
    tie = np.zeros(len(ordered), dtype=bool)
    if len(ordered) > 1:
        close = np.abs(np.diff(m)) <= k * np.sqrt(se[1:] ** 2 + se[:-1] ** 2)  # NaN compares False
        tie[1:] |= close
        tie[:-1] |= close
    return pd.Series(tie, index=ordered.index, name="near_tie").reindex(front_summary.index)


# ---------------------------------------------------------------------------------------------- tables
def baselines_table(summary: pd.DataFrame, metrics: Sequence[str], directions: Mapping[str, str],
                    label: str = "label", delta_m: str = "delta_m", madds_scale: float = 1.0,
                    madds_unit: str = "MAdds") -> pd.DataFrame:
    """A BMTAS-Table-3-style table: model, MAdds, each metric and Δm as ``"mean ± s.e."``.

    ``summary`` is :func:`summarize_replicates` output (rows in the order to print). Headers carry the
    metric's direction arrow; MAdds are divided by ``madds_scale`` and headed ``madds_unit``.

    >>> s = pd.DataFrame({"label": ["Single"], "madds": [2.0e6], "sal/maxF": [61.234], "sal/maxF/se": [0.71],
    ...                   "delta_m": [0.0], "delta_m/se": [float("nan")], "replicates": [3]})
    >>> baselines_table(s, ["sal/maxF"], {"sal/maxF": "max"}, madds_scale=1e6, madds_unit="MMAdds").to_dict("records")
    [{'model': 'Single', 'MMAdds': 2.0, 'sal/maxF ↑': '61.23 ± 0.71', 'Δm [%] ↑': '+0', 'seeds': 3}]
    """
    out = pd.DataFrame({"model": summary[label].astype(str).to_numpy()})
    out[madds_unit] = (pd.to_numeric(summary["madds"], errors="coerce") / madds_scale).round(3).to_numpy()
    for m in metrics:
        if m not in summary.columns:
            raise AnalysisError(f"summary has no metric column {m!r}")
        arrow = "↑" if check_direction(m, directions.get(m, "")) == "max" else "↓"
        se = summary[m + SE_SUFFIX] if m + SE_SUFFIX in summary.columns else pd.Series(math.nan, index=summary.index)
        out[f"{m} {arrow}"] = [format_mean_se(a, b) for a, b in zip(summary[m], se)]
    if delta_m in summary.columns:
        se = summary[delta_m + SE_SUFFIX] if delta_m + SE_SUFFIX in summary.columns else [math.nan] * len(summary)
        out["Δm [%] ↑"] = [format_mean_se(a, b, sign=True) for a, b in zip(summary[delta_m], se)]
    if "replicates" in summary.columns:
        out["seeds"] = summary["replicates"].to_numpy()
    return out


def pooled_baselines(summary: pd.DataFrame, columns: Sequence[str] | None = None,
                     names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``summary`` with each front point's baselines of one kind pooled into one row (Table 3's
    "Permutations", mean ± s.e. over the K trees, :func:`pool_trials`), placed after that front point.

    Rows without ``baseline_kind`` are kept as they are. The pooled row is labelled
    ``"<kind name> of <front label> (×K)"``; a lone tree keeps its label: ``"V1 (vanilla of B1)"``.

    >>> s = pd.DataFrame({"trial_id": ["f", "p1", "p2"], "label": ["B1", "P1a", "P1b"], "madds": 5,
    ...                   "delta_m": [4.0, 1.0, 2.0], "delta_m/se": [1.0, 0.1, 0.1], "replicates": 2,
    ...                   "baseline_of": [None, "f", "f"], "baseline_kind": [None, "permuted", "permuted"]})
    >>> pooled_baselines(s)[["label", "delta_m", "replicates"]].round(3).to_dict("records")
    [{'label': 'B1', 'delta_m': 4.0, 'replicates': 2}, {'label': 'permutations of B1 (×2)', 'delta_m': 1.5, \
'replicates': 4}]
    """
    if "baseline_kind" not in summary.columns or "baseline_of" not in summary.columns:
        return summary.copy()
    names = {**KIND_NAMES, **(names or {})}
    cols = list(columns) if columns is not None else [c for c in value_columns(summary)]
    kind = summary["baseline_kind"]
    is_base = kind.notna() & (kind.astype(str) != "") & summary["baseline_of"].notna()
    plain = summary[~is_base]
    pooled: dict[str, list[dict]] = {}
    for (point, k), group in summary[is_base].groupby([summary["baseline_of"].astype(str), kind.astype(str)],
                                                     sort=False):
        row = group.iloc[0].to_dict()
        front_label = plain.loc[plain["trial_id"].astype(str) == point, "label"]
        of = front_label.iloc[0] if len(front_label) else point
        if len(group) == 1:  # one tree (e.g. the vanilla tree): its own label, and whose baseline it is
            row["label"] = f"{row['label']} ({k} of {of})"
        else:
            row["label"] = f"{names.get(k, k)} of {of} (×{len(group)})"
        for c in cols:
            row[c], row[c + SE_SUFFIX], _ = pool_trials(group, c)
        if "replicates" in group.columns:
            row["replicates"] = int(group["replicates"].sum())
        row["madds"] = float(pd.to_numeric(group["madds"], errors="coerce").mean())
        pooled.setdefault(point, []).append(row)
    rows = []
    for _, row in plain.iterrows():
        rows.append(row.to_dict())
        rows += pooled.pop(str(row.get("trial_id")), [])
    for rest in pooled.values():  # baselines of a point that is not in the table
        rows += rest
    return pd.DataFrame(rows, columns=summary.columns).reset_index(drop=True)


# --------------------------------------------------------------------------------------------- verdict
def verdict_lines(long: pd.DataFrame, hypervolumes: pd.DataFrame | None = None,
                  kinds: Sequence[str] = ("permuted", "vanilla", "random"), column: str = "delta_m",
                  method_names: Mapping[str, str] | None = None, by_method: str = "method",
                  methods: Sequence[str] | None = None) -> list[str]:
    """Sentences a person can read first: each searched method's front vs each kind of baseline at
    equal MAdds (:func:`baseline_gaps`, :func:`overall_gap`), then the hypervolume of each method of
    ``hypervolumes`` (:func:`hypervolume_replicates`; only ``methods``, in that order, when given).

    >>> long = pd.DataFrame({"trial_id": ["f", "f", "p1", "p1", "p2", "p2"], "retrain_seed": [0, 1] * 3,
    ...     "label": ["B1", "B1", "P1a", "P1a", "P1b", "P1b"], "method": ["bmtas"] * 2 + ["permuted"] * 4,
    ...     "madds": 5, "delta_m": [3.0, 5.0, 1.0, 1.0, 2.0, 2.0],
    ...     "baseline_of": [None, None, "f", "f", "f", "f"], "baseline_kind": [None, None] + ["permuted"] * 4})
    >>> hv = pd.DataFrame({"method": ["bmtas", "random"], "hypervolume": [12.3, 8.1], "hypervolume/se": [0.4, 0.9]})
    >>> for line in verdict_lines(long, hv): print(line)
    BMTAS front vs permutations at equal MAdds: Δm +2.5 ± 1.1 % (1 front point, 2 trees; 2.2 s.e.)
    hypervolume: BMTAS 12.30 ± 0.40, random 8.10 ± 0.90
    """
    names = {**METHOD_NAMES, **(method_names or {})}
    lines = []
    if {"baseline_kind", "baseline_of"} <= set(long.columns):
        present = set(long["baseline_kind"].dropna().astype(str))
        for kind in kinds:
            if kind not in present:
                continue
            gaps = baseline_gaps(long, kind, column)
            for method, part in gaps.groupby("method", sort=False):
                gap, se = overall_gap(part)
                z = f"; {gap / se:.1f} s.e." if se and math.isfinite(se) and se > 0 else ""
                points = len(part)
                trees = int(part["baseline_trials"].sum())
                what = "Δm" if column == "delta_m" else column
                unit = " %" if column == "delta_m" else ""
                lines.append(f"{names.get(str(method), str(method))} front vs {KIND_NAMES.get(kind, kind)} at equal "
                             f"MAdds: {what} {format_mean_se(gap, se, sign=True)}{unit} ({points} front "
                             f"point{'s' if points != 1 else ''}, {trees} tree{'s' if trees != 1 else ''}{z})")
    if hypervolumes is not None and len(hypervolumes):
        hv = hypervolumes.set_index(hypervolumes[by_method].astype(str))
        order = [str(m) for m in methods if str(m) in hv.index] if methods is not None else list(hv.index)
        parts = [f"{names.get(m, m)} {format_mean_se(hv.loc[m, 'hypervolume'], hv.loc[m].get('hypervolume/se', math.nan))}"
                 for m in order]
        if parts:
            lines.append("hypervolume: " + ", ".join(parts))
    return lines


def trivial_margins(results: pd.DataFrame, trivial: Mapping[str, float], directions: Mapping[str, str],
                    label: str = "label") -> pd.DataFrame:
    """Each model's metric over the trivial predictor's (constant prediction fitted on the training
    labels): ``ratio = model / trivial`` per metric ("—" when the trivial score is 0), and whether it
    beats it on every metric (higher for higher-is-better, lower for lower-is-better metrics). The first
    row is the trivial predictor.

    >>> res = pd.DataFrame({"label": ["Single", "Shared"], "a/mIoU": [60.0, 30.0], "b/rmse": [0.3, 0.7]})
    >>> t = trivial_margins(res, {"a/mIoU": 20.0, "b/rmse": 0.6}, {"a/mIoU": "max", "b/rmse": "min"})
    >>> t[["model", "a/mIoU ratio", "b/rmse ratio", "beats trivial"]].values.tolist()
    [['Trivial', '1×', '1×', False], ['Single', '3.00×', '0.50×', True], ['Shared', '1.50×', '1.17×', False]]
    """
    metrics = [m for m in directions if m in trivial and m in results.columns]
    rows = [{"model": "Trivial", **{m: float(trivial[m]) for m in metrics},
             **{f"{m} ratio": "1×" for m in metrics}, "beats trivial": False}]
    for _, row in results.iterrows():
        out: dict[str, Any] = {"model": str(row[label])}
        beats = True
        for m in metrics:
            value, base = float(row[m]), float(trivial[m])
            out[m] = value
            out[f"{m} ratio"] = f"{value / base:.2f}×" if base else "—"
            beats = beats and (value > base if directions[m] == "max" else value < base)
        out["beats trivial"] = bool(beats)
        rows.append(out)
    table = pd.DataFrame(rows)
    return table[["model", *[c for m in metrics for c in (m, f"{m} ratio")], "beats trivial"]]
