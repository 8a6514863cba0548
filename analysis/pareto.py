"""Pareto fronts and 2-D hypervolume over DataFrame columns.

Every objective is turned into a *minimisation* (``"max"`` columns are negated), then row ``i`` is
dominated when some row ``j`` is at least as good in every objective and strictly better in one::

    j ≻ i  ⇔  ∀k: x_jk ≤ x_ik  ∧  ∃k: x_jk < x_ik

Identical rows do not dominate each other, so duplicates of a front point are all on the front. Rows
with a missing (NaN) objective are neither on the front nor allowed to dominate (failed trials).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.directions import check_direction
from analysis.errors import AnalysisError

# Rows compared per block when testing dominance: keeps the (block, n, k) boolean array small.
_BLOCK = 1024


def _minimisation_matrix(df: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    """``(rows, objectives)`` float matrix with ``"max"`` columns negated, NaN for non-numbers."""
    if not objectives:
        raise AnalysisError("a Pareto front needs at least one objective")
    missing = [c for c in objectives if c not in df.columns]
    if missing:
        raise AnalysisError(f"objective column {missing[0]!r} is not in the table")
    cols = []
    for column, direction in objectives.items():
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        cols.append(values if check_direction(column, direction) == "min" else -values)
    return np.stack(cols, axis=1)


def pareto_front(df: pd.DataFrame, objectives: Mapping[str, str]) -> pd.Series:
    """Boolean Series: True for the non-dominated rows of ``df`` under ``objectives``.

    ``objectives`` maps column -> ``"min"``/``"max"``; any number of objectives. See the module
    docstring for the dominance rule, ties and NaN.

    >>> df = pd.DataFrame({"madds": [1, 2, 2, 3], "dm": [-5.0, -1.0, -2.0, -1.0]})
    >>> pareto_front(df, {"madds": "min", "dm": "max"}).tolist()
    [True, True, False, False]
    """
    x = _minimisation_matrix(df, objectives)
    valid = ~np.isnan(x).any(axis=1)
    pts = x[valid]
    dominated = np.zeros(len(pts), dtype=bool)
    for start in range(0, len(pts), _BLOCK):
        block = pts[start : start + _BLOCK]  # candidates i
        # le[i, j]: row j is <= row i everywhere; lt[i, j]: row j is < row i somewhere.
        le = (pts[None, :, :] <= block[:, None, :]).all(axis=2)
        lt = (pts[None, :, :] < block[:, None, :]).any(axis=2)
        dominated[start : start + len(block)] = (le & lt).any(axis=1)
    on_front = np.zeros(len(df), dtype=bool)
    on_front[np.flatnonzero(valid)[~dominated]] = True
    return pd.Series(on_front, index=df.index, name="on_front")


def _reference_pair(objectives: Mapping[str, str], reference: Mapping[str, float] | Sequence[float]) -> np.ndarray:
    cols = list(objectives)
    if isinstance(reference, Mapping):
        missing = [c for c in cols if c not in reference]
        if missing:
            raise AnalysisError(f"the hypervolume reference point has no value for {missing[0]!r}")
        ref = [float(reference[c]) for c in cols]
    else:
        ref = [float(v) for v in reference]
        if len(ref) != len(cols):
            raise AnalysisError(f"the hypervolume reference point has {len(ref)} values for {len(cols)} objectives")
    signs = [1.0 if check_direction(c, objectives[c]) == "min" else -1.0 for c in cols]
    return np.asarray(ref) * np.asarray(signs)


def hypervolume_2d(
    df: pd.DataFrame,
    objectives: Mapping[str, str],
    reference: Mapping[str, float] | Sequence[float],
) -> float:
    """Area dominated by the rows of ``df`` and bounded by ``reference`` (two objectives).

    After turning both objectives into minimisations and keeping the front points ``p_1..p_m`` that are
    strictly better than the reference ``r`` in both, sorted by the first objective (so the second
    decreases)::

        HV = Σ_i (x_{i+1} − x_i) · (r_y − y_i),   x_{m+1} = r_x

    A larger hypervolume is a better front; compare two sweeps with the same reference point.

    >>> df = pd.DataFrame({"madds": [1.0, 2.0, 3.0], "dm": [-3.0, -2.0, -1.0]})
    >>> hypervolume_2d(df, {"madds": "min", "dm": "max"}, {"madds": 4.0, "dm": -4.0})
    6.0
    """
    if len(objectives) != 2:
        raise AnalysisError(f"hypervolume_2d needs exactly two objectives, got {len(objectives)}")
    ref = _reference_pair(objectives, reference)
    x = _minimisation_matrix(df, objectives)
    x = x[~np.isnan(x).any(axis=1)]
    x = x[(x < ref).all(axis=1)]
    if len(x) == 0:
        return 0.0
    front = x[pareto_front(pd.DataFrame(x, columns=["a", "b"]), {"a": "min", "b": "min"}).to_numpy()]
    front = np.unique(front, axis=0)  # sorted by the first objective; duplicates add no area
    widths = np.diff(np.append(front[:, 0], ref[0]))
    return float(np.sum(widths * (ref[1] - front[:, 1])))


def front_steps(df: pd.DataFrame, x: str, y: str, x_direction: str = "min", y_direction: str = "max") -> pd.DataFrame:
    """The front rows of ``df`` in ``(x, y)``, sorted by ``x``: the vertices of the plotted step line."""
    on_front = pareto_front(df, {x: x_direction, y: y_direction})
    return df.loc[on_front].sort_values([x, y])
