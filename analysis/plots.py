"""Figures of a report: MAdds-vs-Δm Pareto plot, λ-vs-MAdds, branching-tree drawings, and the searched
trees among every tree of an exhaustive table (:func:`truth_plot`).

Figures are built with the object-oriented matplotlib API (``Figure`` + Agg canvas), never pyplot, so
importing :mod:`analysis` does not change a notebook's backend and nothing needs a display. Every
function returns the ``Figure``; :func:`save` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.exhaustive import exhaustive_front
from analysis.pareto import front_steps
from analysis.replicates import format_mean_se, near_ties
from analysis.trees import BranchTree, branch_tree

GIGA = 1e9
_UNITS = ((1e9, "GMAdds"), (1e6, "MMAdds"), (1e3, "KMAdds"))


def madds_unit(madds: object) -> tuple[float, str]:
    """``(scale, name)`` that prints the largest of ``madds`` with a digit before the point.

    Paper-size networks are read in GMAdds; the embedded CPU-size ones (~0.5 MMAdds) would all print
    as ``0.00 GMAdds``, so the unit follows the data: G from 0.1 G, M from 0.1 M, else K.

    >>> madds_unit([15.6e9, 6.0e9]), madds_unit([4.7e5, 2.3e5]), madds_unit([])
    ((1000000000.0, 'GMAdds'), (1000000.0, 'MMAdds'), (1000000000.0, 'GMAdds'))
    """
    values = pd.to_numeric(pd.Series(madds, dtype=object), errors="coerce").abs()
    largest = float(values.max()) if values.notna().any() else GIGA
    for scale, name in _UNITS:
        if largest >= 0.1 * scale:
            return scale, name
    return _UNITS[-1]
DELTA_M_LABEL = "Δm [%] (higher is better)"
#: Axis labels of cost columns other than MAdds.
AXIS_LABELS = {"latency_ms": "median latency [ms]"}


def _figure(width: float = 7.0, height: float = 4.8) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path, dpi: int = 150) -> Path:
    """Write ``fig`` as PNG to ``path`` and return the path."""
    fig.savefig(path, dpi=dpi)
    return Path(path)


#: Plot ids of rows of these (baseline) methods; other methods get their initial (see :func:`short_ids`).
FIXED_IDS = {"single": "S", "shared": "Sh"}
#: Plot-id prefix and marker of each kind of matched-MAdds baseline (``baseline_kind``).
KIND_IDS = {"permuted": "P", "vanilla": "V", "random": "R"}
KIND_MARKERS = {"permuted": "X", "vanilla": "s", "random": "^"}
TIE_COLOUR = "#e07b00"


def _present(value: object) -> bool:
    return not (value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) or str(value) == "")


def short_ids(df: pd.DataFrame, x: str = "madds", method: str = "method") -> pd.Series:
    """Short plot ids of the rows of ``df``: ``S``/``Sh`` (Single/Shared), ``B1``, ``B2``, ``L1``, ...
    (a method's initial, numbered by MAdds), and ``P1a``, ``P1b``, ``V1``, ``R1a`` for the
    permuted/vanilla/random baselines of the first front point that has baselines (``baseline_of``,
    ``baseline_kind``; front points numbered by MAdds; a letter when a point has several of a kind).

    Methods sharing an initial get more letters (``split-at`` next to ``single``: ``Sp1``). Index as
    ``df``'s; the ids are unique.

    >>> df = pd.DataFrame({"trial_id": ["s", "a", "b", "c", "p1", "p2", "v"],
    ...     "method": ["single", "bmtas", "bmtas", "ltb", "permuted", "permuted", "vanilla"],
    ...     "is_baseline": [True] + [False] * 6, "madds": [9, 5, 3, 4, 3, 3, 3],
    ...     "baseline_of": [None] * 4 + ["b", "b", "b"], "baseline_kind": [None] * 4 + ["permuted"] * 2 + ["vanilla"]})
    >>> short_ids(df).tolist()
    ['S', 'B2', 'B1', 'L1', 'P1a', 'P1b', 'V1']
    """
    n = len(df)
    ids = pd.Series([""] * n, index=df.index, dtype=object)
    methods = df[method].fillna("").astype(str) if method in df.columns else pd.Series([""] * n, index=df.index)
    xs = pd.to_numeric(df[x], errors="coerce") if x in df.columns else pd.Series(np.arange(n), index=df.index)
    of = df["baseline_of"] if "baseline_of" in df.columns else pd.Series([None] * n, index=df.index)
    kind = df["baseline_kind"] if "baseline_kind" in df.columns else pd.Series([None] * n, index=df.index)
    is_kind = of.map(_present) & kind.map(_present)
    baseline = df["is_baseline"].fillna(False).astype(bool) if "is_baseline" in df.columns else pd.Series(False, index=df.index)
    taken: dict[str, str] = {}  # prefix -> owner (method or kind)

    def prefix(owner: str, preferred: str | None) -> str:
        letters = [c for c in owner.removeprefix("kind:") if c.isalnum()] or ["M"]
        options = ([preferred] if preferred else []) + [
            (letters[0].upper() + "".join(letters[1:k])) for k in range(1, len(letters) + 1)]
        for p in options:
            if taken.setdefault(p, owner) == owner:
                return p
        return options[-1] + str(len(taken))

    for k in KIND_IDS:  # reserve the kinds' letters first, so a method named "p..." does not take "P"
        taken.setdefault(KIND_IDS[k], "kind:" + k)
    for m, fixed in FIXED_IDS.items():
        taken.setdefault(fixed, m)

    # Matched baselines: numbered by their front point's MAdds order.
    trial_ids = df["trial_id"].astype(str) if "trial_id" in df.columns else pd.Series(df.index.astype(str), index=df.index)
    points = list(dict.fromkeys(of[is_kind].astype(str)))
    point_x = {p: float(xs[trial_ids == p].min()) if (trial_ids == p).any() else float("inf") for p in points}
    number = {p: i + 1 for i, p in enumerate(sorted(points, key=lambda p: (point_x[p], points.index(p))))}
    for (p, k), group in df[is_kind].groupby([of[is_kind].astype(str), kind[is_kind].astype(str)], sort=False):
        pre = prefix("kind:" + k, KIND_IDS.get(k))
        order = group.assign(_x=xs[group.index]).sort_values("_x", kind="stable").index
        for j, i in enumerate(order):
            ids[i] = f"{pre}{number[p]}" + ("" if len(order) == 1 else _letters(j))
    # Everything else by method, numbered by MAdds (a lone baseline row keeps its bare prefix).
    rest = df.index[~is_kind]
    for m in dict.fromkeys(methods[rest]):
        rows = [i for i in rest if methods[i] == m]
        pre = prefix("kind:" + m if m in KIND_IDS else m, FIXED_IDS.get(m) or KIND_IDS.get(m))
        order = sorted(rows, key=lambda i: (xs[i] if pd.notna(xs[i]) else float("inf")))
        bare = len(order) == 1 and bool(baseline[order[0]])
        for j, i in enumerate(order):
            ids[i] = pre if bare else f"{pre}{j + 1}"
    seen: dict[str, int] = {}
    for i in ids.index:  # unique, whatever the input
        seen[ids[i]] = seen.get(ids[i], 0) + 1
        if seen[ids[i]] > 1:
            ids[i] = f"{ids[i]}.{seen[ids[i]]}"
    return ids.rename("id")


def _letters(j: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa ..."""
    out = ""
    j += 1
    while j:
        j, r = divmod(j - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Overlap area of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


# Label positions tried, nearest first: 8 directions at growing distances from the marker's edge (points).
_DIRECTIONS = ((1, 0), (1, 1), (1, -1), (-1, 0), (-1, 1), (-1, -1), (0, 1), (0, -1),
               (2, 1), (2, -1), (-2, 1), (-2, -1))
_RADII = (1.5, 5.0, 9.0, 14.0, 20.0, 28.0, 38.0, 50.0, 65.0, 80.0)


def place_labels(ax, x: np.ndarray, y: np.ndarray, texts: list[str], *, bold: np.ndarray | None = None,
                 yerr: np.ndarray | None = None, radius: np.ndarray | float = 4.0, fontsize: float = 8):
    """Annotate point ``i`` with ``texts[i]`` where the label overlaps no other label, no marker and no
    error bar (``yerr``, data units) and stays inside the axes. ``radius``: the marker sizes (points).

    Candidate spots around each point are tried nearest first (8 directions, growing distance; a leader
    line from 20 points on); where none is free the least-overlapping one is taken. The figure's layout
    is settled first (one draw) and then frozen, so what was checked is what is saved. Returns the
    annotations.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    fig.set_layout_engine("none")  # keep the settled layout: offsets were checked against it
    px = ax.transData.transform(np.column_stack([x, y])) if len(x) else np.zeros((0, 2))
    box = ax.get_window_extent(renderer)
    scale = fig.dpi / 72.0
    marker = np.broadcast_to(np.asarray(radius, dtype=float), (len(px),)) * scale
    blocked = [(a - r, b - r, a + r, b + r) for (a, b), r in zip(px, marker)]
    if yerr is not None and len(x):
        e = np.nan_to_num(np.asarray(yerr, dtype=float))
        lo = ax.transData.transform(np.column_stack([x, y - e]))
        hi = ax.transData.transform(np.column_stack([x, y + e]))
        blocked += [(a[0] - 3, a[1], a[0] + 3, b[1]) for a, b, v in zip(lo, hi, e) if v > 0]
    bold = np.zeros(len(texts), bool) if bold is None else bold
    annotations = []
    order = np.lexsort((px[:, 1], px[:, 0])) if len(px) else []
    near = np.hypot(px[:, None, 0] - px[None, :, 0], px[:, None, 1] - px[None, :, 1]) if len(px) else np.zeros((0, 0))
    twins = near <= np.maximum(marker[:, None], 3 * scale)
    for i in order:
        probe = ax.text(0, 0, texts[i], fontsize=fontsize, fontweight="bold" if bold[i] else "normal")
        ext = probe.get_window_extent(renderer)
        probe.remove()
        w, h = ext.width + 2, ext.height + 2
        best, best_cost = None, float("inf")
        for radius in _RADII:
            for cx, cy in _DIRECTIONS:
                norm = 1.0 / math.hypot(cx, cy)
                reach = marker[i] / scale + radius  # from the marker's edge
                dx, dy = cx * reach * norm, cy * reach * norm
                ax0 = px[i, 0] + dx * scale - (0 if cx > 0 else w if cx < 0 else w / 2)
                ay0 = px[i, 1] + dy * scale - (0 if cy > 0 else h if cy < 0 else h / 2)
                cand = (ax0, ay0, ax0 + w, ay0 + h)
                cost = 10 * sum(_overlap(cand, o) for o in blocked)  # overlaps weigh most
                # A label nearer to another point than to its own would name the wrong point.
                gap_x = np.maximum(np.maximum(cand[0] - px[:, 0], px[:, 0] - cand[2]), 0)
                gap_y = np.maximum(np.maximum(cand[1] - px[:, 1], px[:, 1] - cand[3]), 0)
                dist = np.hypot(gap_x, gap_y)
                own = dist[i]
                dist[twins[i]] = np.inf  # itself, and points its marker hides anyway
                if len(dist) > 1 and dist.min() < own + 1:
                    cost += 0.5 * w * h * (1 + own - dist.min()) / (1 + own)
                outside = (max(0, box.x0 - cand[0]) + max(0, cand[2] - box.x1)) * h + \
                          (max(0, box.y0 - cand[1]) + max(0, cand[3] - box.y1)) * w
                cost += 20 * outside
                if cost < best_cost:
                    best, best_cost = (dx, dy, cx, cy, cand), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        dx, dy, cx, cy, cand = best  # type: ignore[misc]
        ha = "left" if cx > 0 else "right" if cx < 0 else "center"
        va = "bottom" if cy > 0 else "top" if cy < 0 else "center"
        far = math.hypot(dx, dy) > marker[i] / scale + 4  # away from the marker: a leader line shows whose label
        annotations.append(ax.annotate(
            texts[i], (x[i], y[i]), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=ha, va=va,
            fontweight="bold" if bold[i] else "normal", annotation_clip=False,
            arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 1,
                        "shrinkB": float(marker[i] / scale)} if far else None))
        blocked.append(cand)
    return annotations


def pareto_plot(
    df: pd.DataFrame,
    x: str = "madds",
    y: str = "delta_m",
    label: str = "label",
    title: str | None = None,
    *,
    yerr: str | None = "auto",
    ties: pd.Series | str | None = "auto",
    tie_k: float = 2.0,
) -> Figure:
    """Scatter of MAdds (G/M/KMAdds, see :func:`madds_unit`) vs Δm (%), front connected as a step line,
    every point labelled (no two labels overlap, see :func:`place_labels`).

    ``df`` needs ``x`` (raw MAdds), ``y``, ``label`` and optionally ``status``, ``is_baseline``,
    ``method``, ``baseline_kind`` (marker shape); failed rows are left out of the figure (the report lists
    them). ``yerr``: the column of Δm's standard error drawn as error bars (``"auto"``: ``<y>/se`` when
    present; None: none). ``ties``: front points to ring as near ties — a boolean Series over ``df``'s
    index, or ``"auto"``: with error bars, front points within ``tie_k`` s.e. of a neighbour on the front
    (:func:`analysis.replicates.near_ties`). Pass short ids (:func:`short_ids`) as ``label`` when there
    are many points; :func:`pareto_plot_with_ids` does that and returns the id table.
    """
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    ok = ok[ok[x].notna() & ok[y].notna()]
    fig = _figure(8.0, 5.2)
    ax = fig.add_subplot()
    scale, unit = madds_unit(ok[x]) if x == "madds" else (1.0, "")
    gx = ok[x].to_numpy(dtype=float) / scale
    gy = ok[y].to_numpy(dtype=float)
    err_col = f"{y}/se" if yerr == "auto" else yerr
    err = (pd.to_numeric(ok[err_col], errors="coerce").to_numpy(dtype=float)
           if err_col and err_col in ok.columns else np.full(len(ok), np.nan))
    baseline = ok["is_baseline"].fillna(False).to_numpy(dtype=bool) if "is_baseline" in ok.columns else np.zeros(len(ok), bool)
    methods = ok["method"].fillna("").astype(str).to_numpy() if "method" in ok.columns else np.array([""] * len(ok))
    kinds = (ok["baseline_kind"].map(lambda v: str(v) if _present(v) else "").to_numpy()
             if "baseline_kind" in ok.columns else np.array([""] * len(ok)))
    for i, method in enumerate(dict.fromkeys(methods[~baseline])):
        mask = (methods == method) & ~baseline
        marker = KIND_MARKERS.get(method) or next((KIND_MARKERS.get(k) for k in kinds[mask] if k), "o")
        ax.scatter(gx[mask], gy[mask], s=36, marker=marker, color=f"C{i % 10}", label=method or "models", zorder=3)
        has = mask & np.isfinite(err)
        if has.any():
            ax.errorbar(gx[has], gy[has], yerr=err[has], fmt="none", ecolor=f"C{i % 10}", elinewidth=1.0,
                        capsize=2.5, alpha=0.8, zorder=2.5)
    if baseline.any():
        ax.scatter(gx[baseline], gy[baseline], s=150, marker="*", color="black", label="baselines", zorder=4)
        has = baseline & np.isfinite(err)
        if has.any():
            ax.errorbar(gx[has], gy[has], yerr=err[has], fmt="none", ecolor="black", elinewidth=1.0, capsize=2.5,
                        zorder=2.5)
    if np.isfinite(err).any():
        ax.plot([], [], color="0.3", lw=1.0, label="± 1 s.e. (retrain seeds)")
    steps = front_steps(ok.assign(_gx=gx, _gy=gy), "_gx", "_gy")
    if len(steps):
        ax.plot(steps["_gx"], steps["_gy"], drawstyle="steps-post", color="0.35", lw=1.4, zorder=2,
                label="Pareto front")
        ax.scatter(steps["_gx"], steps["_gy"], s=110, facecolors="none", edgecolors="0.2", lw=1.2, zorder=5)
    tie_mask = _tie_mask(ok, steps.index, ties, err_col, y, x, tie_k)
    if tie_mask.any():
        ax.scatter(gx[tie_mask], gy[tie_mask], s=260, facecolors="none", edgecolors=TIE_COLOUR, lw=1.4,
                   linestyle="--", zorder=5, label=f"front point within {tie_k:g} s.e. of a neighbour")
    ax.axhline(0.0, color="0.7", lw=0.8, ls="--", zorder=1)
    ax.set_xlabel(f"MAdds [{unit}]" if x == "madds" else AXIS_LABELS.get(x, x))
    ax.set_ylabel(DELTA_M_LABEL)
    ax.set_title(title or "Multi-task performance vs cost (front: circled, connected)")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.12)
    if len(ok):
        fig.legend(fontsize=8, loc="outside right upper")
    radius = np.where(baseline, 7.0, 4.0)
    radius[np.asarray(ok.index.isin(steps.index))] = 6.5
    radius[tie_mask] = 9.5
    place_labels(ax, gx, gy, ok[label].astype(str).tolist(), bold=baseline, yerr=err, radius=radius)
    return fig


def _tie_mask(ok: pd.DataFrame, front_index: pd.Index, ties: pd.Series | str | None, err_col: str | None,
              y: str, x: str, k: float) -> np.ndarray:
    if ties is None:
        return np.zeros(len(ok), bool)
    if isinstance(ties, str):
        if ties != "auto":
            raise ValueError(f"ties must be a boolean Series, 'auto' or None, got {ties!r}")
        if not err_col or err_col not in ok.columns or len(front_index) < 2:
            return np.zeros(len(ok), bool)
        front = ok.loc[front_index, [x, y, err_col]].rename(columns={err_col: f"{y}/se"})
        ties = near_ties(front, y, k, order_by=x)
    return ties.reindex(ok.index, fill_value=False).fillna(False).astype(bool).to_numpy()


def id_table(df: pd.DataFrame, ids: pd.Series, y: str = "delta_m", ties: pd.Series | None = None) -> pd.DataFrame:
    """What each plot id stands for: id, label, method, MAdds, Δm (± s.e.), front, near tie, baseline of.

    >>> df = pd.DataFrame({"trial_id": ["a"], "label": ["bmtas λ=1"], "method": ["bmtas"], "madds": [5e5],
    ...                    "delta_m": [1.234], "delta_m/se": [0.2]})
    >>> id_table(df, short_ids(df)).to_dict("records")
    [{'id': 'B1', 'label': 'bmtas λ=1', 'method': 'bmtas', 'MMAdds': 0.5, 'Δm [%]': '+1.23 ± 0.20'}]
    """
    scale, unit = madds_unit(df["madds"]) if "madds" in df.columns else (1.0, "MAdds")
    out = pd.DataFrame({"id": ids.reindex(df.index)}, index=df.index)
    for c in ("label", "method"):
        if c in df.columns:
            out[c] = df[c]
    if "madds" in df.columns:
        out[unit] = (pd.to_numeric(df["madds"], errors="coerce") / scale).round(3)
    if y in df.columns:
        se = df[f"{y}/se"] if f"{y}/se" in df.columns else pd.Series(np.nan, index=df.index)
        out["Δm [%]"] = [format_mean_se(float(m), float(s), sign=True) for m, s in zip(df[y], se)]
    if "on_front" in df.columns:
        out["front"] = np.where(df["on_front"].fillna(False).astype(bool), "★", "")
    if ties is not None:
        out["near tie"] = np.where(ties.reindex(df.index, fill_value=False).fillna(False).astype(bool), "≈", "")
    if "baseline_of" in df.columns and "trial_id" in df.columns:
        by_trial = dict(zip(df["trial_id"].astype(str), out["id"]))
        out["baseline of"] = df["baseline_of"].map(lambda v: by_trial.get(str(v), str(v)) if _present(v) else "")
    return out.reset_index(drop=True)


def pareto_plot_with_ids(df: pd.DataFrame, title: str | None = None, **kwargs) -> tuple[Figure, pd.DataFrame]:
    """:func:`pareto_plot` with short ids (:func:`short_ids`) as labels, and the table mapping them
    (:func:`id_table`, rows sorted by MAdds). Keyword arguments go to :func:`pareto_plot`."""
    ids = short_ids(df)
    fig = pareto_plot(df.assign(_plot_id=ids), label="_plot_id", title=title, **kwargs)
    y = kwargs.get("y", "delta_m")
    ties = None
    err = f"{y}/se"
    if "on_front" in df.columns and err in df.columns and kwargs.get("ties", "auto") is not None:
        front = df[df["on_front"].fillna(False).astype(bool)]
        if len(front) > 1:
            ties = near_ties(front, y, kwargs.get("tie_k", 2.0))
    table = id_table(df, ids, y, ties)
    order = pd.to_numeric(df["madds"], errors="coerce").reset_index(drop=True).sort_values(kind="stable").index
    return fig, table.loc[order].reset_index(drop=True)


def cost_plot(df: pd.DataFrame, x: str = "madds", y: str = "latency_ms", rho: float | None = None) -> Figure:
    """MAdds (G/M/KMAdds) vs measured latency, one point per successful row, one colour per method
    (baselines as stars): how well MAdds predicts latency on the measuring hardware. ``rho``: the rank
    correlation, printed in the title."""
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    ok = ok[pd.to_numeric(ok[x], errors="coerce").notna() & pd.to_numeric(ok[y], errors="coerce").notna()]
    fig = _figure(6.0, 4.4)
    ax = fig.add_subplot()
    scale, unit = madds_unit(ok[x])
    gx = pd.to_numeric(ok[x]).to_numpy(dtype=float) / scale
    gy = pd.to_numeric(ok[y]).to_numpy(dtype=float)
    baseline = ok["is_baseline"].fillna(False).to_numpy(dtype=bool) if "is_baseline" in ok.columns else np.zeros(len(ok), bool)
    methods = ok["method"].fillna("").astype(str).to_numpy() if "method" in ok.columns else np.array([""] * len(ok))
    for i, method in enumerate(dict.fromkeys(methods[~baseline])):
        mask = (methods == method) & ~baseline
        ax.scatter(gx[mask], gy[mask], s=30, color=f"C{i % 10}", label=method or "models", zorder=3)
    if baseline.any():
        ax.scatter(gx[baseline], gy[baseline], s=150, marker="*", color="black", label="baselines", zorder=4)
        labels = ok["label"].astype(str).to_numpy() if "label" in ok.columns else np.array([""] * len(ok))
        for bx, by, text in zip(gx[baseline], gy[baseline], labels[baseline]):
            ax.annotate(text, (bx, by), textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.set_xlabel(f"MAdds [{unit}]")
    ax.set_ylabel(AXIS_LABELS.get(y, y))
    ax.set_title("MAdds vs measured latency" + (f" (Spearman ρ = {rho:.2f})" if rho is not None else ""))
    ax.grid(True, alpha=0.3)
    if len(ok):
        ax.legend(fontsize=8)
    return fig


def lambda_plot(df: pd.DataFrame, lam: str = "hp/lambda", x: str = "madds") -> Figure:
    """Resource weight λ (log axis; symlog when λ = 0 is among them) vs MAdds (G/M/KMAdds), one colour per method."""
    ok = df[(df["status"] == "ok") & df[lam].notna()] if "status" in df.columns else df[df[lam].notna()]
    fig = _figure(6.0, 4.2)
    ax = fig.add_subplot()
    values = pd.to_numeric(ok[lam], errors="coerce")
    scale, unit = madds_unit(ok[x])
    methods = ok["method"].fillna("").astype(str) if "method" in ok.columns else pd.Series([""] * len(ok))
    for i, method in enumerate(dict.fromkeys(methods)):
        mask = (methods == method).to_numpy()
        ax.scatter(values[mask], ok[x].to_numpy(dtype=float)[mask] / scale, color=f"C{i % 10}",
                   label=method or "trials", zorder=3)
    if len(values) and (values > 0).all():
        ax.set_xscale("log")
    elif len(values) and (values >= 0).all() and (values > 0).any():  # λ = 0 (no resource loss) included
        ax.set_xscale("symlog", linthresh=float(values[values > 0].min()))
    ax.set_xlabel("resource loss weight λ (hp/lambda)")
    ax.set_ylabel(f"MAdds [{unit}]")
    ax.set_title("Resource weight vs cost of the found architecture")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


#: Colour of the table's trees in :func:`truth_plot`.
TABLE_COLOUR = "0.62"


def truth_plot(means: pd.DataFrame, methods: Mapping[str, pd.DataFrame | Sequence[str]] | None = None,
               front: pd.DataFrame | None = None, title: str | None = None) -> Figure:
    """Every tree of an exhaustive table against cost, with the searched trees on top (BMTAS Figure 2).

    ``means``: one row per tree with ``madds``, ``delta_m`` and optionally ``delta_m/se``
    (:func:`analysis.exhaustive.tree_means`): grey points with their s.e. bars. ``front``: the rows
    drawn as the exhaustive front's step line (default: :func:`analysis.exhaustive.exhaustive_front`).
    ``methods``: ``{name: trees}`` drawn on top, one colour and legend entry each; ``trees`` is a
    DataFrame with ``madds``, ``delta_m`` (and ``delta_m/se``) or a list of arch hashes looked up in
    ``means`` (hashes not in ``means``, trees of another space, are left out). MAdds in the unit
    :func:`madds_unit` picks for the table.
    """
    fig = _figure(8.0, 5.2)
    ax = fig.add_subplot()
    scale, unit = madds_unit(means["madds"])

    def xy(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = pd.to_numeric(df["madds"], errors="coerce").to_numpy(dtype=float) / scale
        y = pd.to_numeric(df["delta_m"], errors="coerce").to_numpy(dtype=float)
        e = (pd.to_numeric(df["delta_m/se"], errors="coerce").to_numpy(dtype=float) if "delta_m/se" in df.columns
             else np.full(len(df), np.nan))
        return x, y, e

    x, y, err = xy(means)
    has = np.isfinite(err)
    if has.any():
        ax.errorbar(x[has], y[has], yerr=err[has], fmt="none", ecolor=TABLE_COLOUR, elinewidth=0.8, capsize=1.5,
                    alpha=0.7, zorder=1.5)
    seeds = int(pd.to_numeric(means["seeds"], errors="coerce").max()) if "seeds" in means.columns and len(means) else 0
    what = f"every tree of the table ({len(means)}" + (f", ± 1 s.e. over {seeds} seeds)" if has.any() else ")")
    ax.scatter(x, y, s=14, color=TABLE_COLOUR, label=what, zorder=2)
    front = exhaustive_front(means) if front is None else front
    if len(front):
        fx, fy, _ = xy(front)
        steps = front_steps(pd.DataFrame({"_x": fx, "_y": fy}), "_x", "_y")
        ax.plot(steps["_x"], steps["_y"], drawstyle="steps-post", color="0.2", lw=1.3, zorder=2.2,
                label=f"exhaustive front ({len(front)} trees)")
    for i, (name, trees) in enumerate((methods or {}).items()):
        if not isinstance(trees, pd.DataFrame):
            hashes = list(dict.fromkeys(str(h) for h in trees))
            trees = means.loc[[h for h in hashes if h in means.index]]
        mx, my, me = xy(trees)
        colour = f"C{i % 10}"
        ax.scatter(mx, my, s=46, marker=KIND_MARKERS.get(str(name), "o"), color=colour, edgecolors="black",
                   linewidths=0.5, label=f"{name} ({len(trees)} tree{'s' if len(trees) != 1 else ''})", zorder=4)
        ok = np.isfinite(me)
        if ok.any():
            ax.errorbar(mx[ok], my[ok], yerr=me[ok], fmt="none", ecolor=colour, elinewidth=1.0, capsize=2.5, zorder=3.5)
    ax.axhline(0.0, color="0.7", lw=0.8, ls="--", zorder=1)
    ax.set_xlabel(f"MAdds [{unit}]")
    ax.set_ylabel(DELTA_M_LABEL)
    ax.set_title(title or "Searched trees among every tree of the space")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.1)
    fig.legend(fontsize=8, loc="outside right upper")
    return fig


def leaf_order(tree: BranchTree) -> list[str]:
    """Tasks in depth-first order of the tree (sorted by their group index at each layer), so that
    drawn branches never cross.

    >>> leaf_order(branch_tree({"version": 1, "tasks": ["a", "b", "c"], "layers": [[["a", "c"], ["b"]]]}))
    ['a', 'c', 'b']
    """
    owners = [{t: i for i, g in enumerate(part) for t in g} for part in tree.layers]
    return sorted(tree.tasks, key=lambda t: [owner[t] for owner in owners])


def tree_plot(arch: BranchTree | Mapping | str, title: str = "") -> Figure:
    """A branching tree: layers left to right, one node per block, leaves labelled with their tasks.

    ``arch`` is a branch-config as plain data (its JSON text or parsed object, see
    :mod:`analysis.trees`), a :class:`~analysis.trees.BranchTree`, or any object whose ``to_dict()``
    returns the JSON object. A block's height is the mean position of its tasks (tasks in
    :func:`leaf_order`), so branches fan out towards the heads and a shared block sits at the centre of
    the tasks it serves.
    """
    if isinstance(arch, BranchTree):
        tree = arch
    else:
        tree = branch_tree(arch.to_dict() if hasattr(arch, "to_dict") else arch)
    num_layers = len(tree.layers)
    pos = {t: i for i, t in enumerate(leaf_order(tree))}
    fig = _figure(max(4.0, 0.5 * num_layers + 2.5), max(2.5, 0.45 * len(tree.tasks) + 1.2))
    ax = fig.add_subplot()

    def height(group: tuple[str, ...]) -> float:
        return float(np.mean([pos[t] for t in group]))

    for layer, (part, ups) in enumerate(zip(tree.layers, tree.parents)):
        for group, up in zip(part, ups):
            ax.scatter([layer], [height(group)], s=40, color="C0" if len(group) > 1 else "C1", zorder=3)
            if layer > 0:
                parent = tree.layers[layer - 1][up]
                ax.plot([layer - 1, layer], [height(parent), height(group)], color="0.4", lw=1.2, zorder=2)
    for group in tree.layers[-1]:
        ax.annotate(" ".join(group), (num_layers - 1, height(group)), xytext=(8, 0),
                    textcoords="offset points", va="center", fontsize=9)
    ax.set_xticks(range(num_layers), [f"L{i + 1}" for i in range(num_layers)], fontsize=7 if num_layers > 12 else 9)
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("backbone layer (blue: shared block, orange: single-task block)")
    ax.margins(x=0.25, y=0.15)
    ax.set_title(title or "branching tree", fontsize=10)
    return fig
