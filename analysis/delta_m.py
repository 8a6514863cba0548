"""Δm: the average relative gain of a multi-task model over its single-task baselines, in percent.

Maninis et al. (2019), used as Eq. 7 of BMTAS::

    Δm = (1/n) Σ_i (-1)^{l_i} (M_m,i − M_b,i) / M_b,i · 100

with ``l_i = 1`` when lower is better for metric ``i``. Positive Δm: better than the baselines on
average. What ``i`` runs over is the *aggregation level*, and it changes the number:

* ``level="metric"`` (the BMTAS tables): one term per metric column; pass one metric per task
  (each task's primary metric, see :func:`primary_metric_columns`) and ``n`` is the number of tasks;
* ``level="task"`` (LibMTL style): the terms of a task's metrics are averaged first, then the
  per-task means are averaged, so a task reported with five metrics does not outweigh one with one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from analysis.directions import check_direction, split_header
from analysis.errors import AnalysisError

Level = Literal["metric", "task"]
TaskOf = Callable[[str], str] | Mapping[str, str]


def task_of_column(column: str) -> str:
    """The task a metric column belongs to: the part before ``/`` (``"depth/rmse"`` -> ``"depth"``).

    Paper-table headers without a ``/`` are their own task: ``"Norm↓"`` -> ``"Norm"``.

    >>> task_of_column("depth/rmse"), task_of_column("Norm↓")
    ('depth', 'Norm')
    """
    name, _ = split_header(column)
    return name.split("/", 1)[0]


def metric_columns(columns: Iterable[str]) -> list[str]:
    """Columns named ``"<task>/<metric>"`` that are not hyperparameters (``hp/...``), standard errors
    over replicates (``.../se``) or Δm's own columns.

    >>> metric_columns(["label", "depth/rmse", "depth/rmse/se", "hp/lambda", "sal/maxF", "delta_m/se"])
    ['depth/rmse', 'sal/maxF']
    """
    return [c for c in columns if "/" in str(c) and not str(c).startswith(("hp/", "delta_m"))
            and not str(c).endswith("/se")]


def primary_metric_columns(columns: Iterable[str], primaries: Mapping[str, str] | None = None) -> list[str]:
    """Each task's primary metric column (the one BMTAS-style Δm uses), in column order.

    ``primaries`` maps a task to its primary metric, ``{"depth": "rmse"}`` (``branchsweep report``
    passes the task registry's, :func:`branchsweep.tasks.primary_metrics`). A task in it uses
    ``"<task>/<primary>"``, which must be a column; a task not in it must have exactly one metric
    column, otherwise the choice would be a guess and it is an AnalysisError (name the metric columns).

    >>> primary_metric_columns(["depth/rmse", "depth/abs_rel", "sal/maxF", "hp/lambda"], {"depth": "rmse"})
    ['depth/rmse', 'sal/maxF']
    """
    primaries = dict(primaries or {})
    by_task: dict[str, list[str]] = {}
    for column in metric_columns(columns):
        by_task.setdefault(task_of_column(column), []).append(column)
    chosen: list[str] = []
    for task, cols in by_task.items():
        if task in primaries:
            primary = f"{task}/{primaries[task]}"
            if primary not in cols:
                raise AnalysisError(
                    f"task {task!r}: its primary metric column {primary!r} is missing (have {', '.join(cols)})"
                )
            chosen.append(primary)
        elif len(cols) == 1:
            chosen.append(cols[0])
        else:
            raise AnalysisError(
                f"task {task!r} has several metric columns ({', '.join(cols)}) and no known primary metric; "
                "name the ones Δm should use (--metrics)"
            )
    if not chosen:
        raise AnalysisError("no metric columns named '<task>/<metric>' found; name them (--metrics)")
    return chosen


def _baseline_values(results: pd.DataFrame, baseline: str | pd.Series, metrics: Sequence[str]) -> pd.Series:
    if isinstance(baseline, pd.Series):
        missing = [m for m in metrics if m not in baseline.index]
        if missing:
            raise AnalysisError(f"the baseline scores have no value for {', '.join(map(repr, missing))}")
        values = baseline[list(metrics)]
    else:
        if baseline not in results.index:
            known = ", ".join(map(str, results.index[:12]))
            raise AnalysisError(f"baseline row {baseline!r} not found; rows are: {known}")
        rows = results.loc[[baseline], list(metrics)]
        values = rows.astype(float).mean(axis=0)  # repeated label (several seeds): their mean
    values = pd.to_numeric(values, errors="coerce").astype(float)
    bad = [m for m in metrics if not np.isfinite(values[m]) or values[m] == 0]
    if bad:
        raise AnalysisError(
            f"baseline value of {', '.join(map(repr, bad))} is zero or missing; Δm divides by it"
        )
    return values


def delta_m(
    results: pd.DataFrame,
    baseline: str | pd.Series,
    directions: Mapping[str, str],
    level: Level = "metric",
    task_of: TaskOf | None = None,
) -> pd.Series:
    """Δm of every row of ``results`` against ``baseline``, in percent.

    ``Δm = (1/n) Σ_i (-1)^{l_i} (M_m,i − M_b,i) / M_b,i · 100``, ``l_i = 1`` for lower-is-better.

    Args:
        results: one row per model, one column per metric (other columns are ignored).
        baseline: a row label of ``results`` (rows sharing the label are averaged) or a Series of the
            single-task scores indexed by metric column.
        directions: metric column -> ``"max"``/``"min"``; its keys are the metrics Δm averages over
            (for the BMTAS convention, each task's primary metric: :func:`primary_metric_columns`,
            directed by :func:`~analysis.directions.resolve_directions`).
        level: ``"metric"`` averages all terms; ``"task"`` averages within each task first.
        task_of: column -> task (callable or mapping) for ``level="task"``; default: the part before ``/``.

    Returns:
        A float Series named ``"delta_m"`` aligned with ``results``; NaN where a metric is missing.

    >>> df = pd.DataFrame({"a/acc": [50.0, 55.0], "b/err": [10.0, 12.0]}, index=["single", "mtl"])
    >>> delta_m(df, "single", {"a/acc": "max", "b/err": "min"}).round(2).tolist()  # (+10 − 20) / 2
    [0.0, -5.0]
    """
    if level not in ("metric", "task"):
        raise AnalysisError(f"level must be 'metric' or 'task', got {level!r}")
    metrics = list(directions)
    if not metrics:
        raise AnalysisError("Δm needs at least one metric")
    absent = [m for m in metrics if m not in results.columns]
    if absent:
        raise AnalysisError(f"metric column {absent[0]!r} is not in the results (columns: {', '.join(map(str, results.columns))})")
    signs = np.array([1.0 if check_direction(m, directions[m]) == "max" else -1.0 for m in metrics])
    base = _baseline_values(results, baseline, metrics)
    values = results[metrics].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    terms = signs * (values - base.to_numpy()) / base.to_numpy() * 100.0  # (rows, metrics)
    if level == "metric":
        out = terms.mean(axis=1)
    else:
        mapping = task_of if task_of is not None else task_of_column
        lookup = mapping.__getitem__ if isinstance(mapping, Mapping) else mapping
        try:
            tasks = [lookup(m) for m in metrics]
        except KeyError as err:
            raise AnalysisError(f"task_of has no task for metric column {err.args[0]!r}") from None
        groups = {t: [i for i, u in enumerate(tasks) if u == t] for t in dict.fromkeys(tasks)}
        per_task = np.stack([terms[:, idx].mean(axis=1) for idx in groups.values()], axis=1)
        out = per_task.mean(axis=1)
    return pd.Series(out, index=results.index, name="delta_m")
