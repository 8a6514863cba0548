"""Figures of a report: MAdds-vs-Δm Pareto plot, λ-vs-MAdds, and branching-tree drawings.

Figures are built with the object-oriented matplotlib API (``Figure`` + Agg canvas), never pyplot, so
importing :mod:`analysis` does not change a notebook's backend and nothing needs a display. Every
function returns the ``Figure``; :func:`save` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.pareto import front_steps
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


def _figure(width: float = 7.0, height: float = 4.8) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path, dpi: int = 150) -> Path:
    """Write ``fig`` as PNG to ``path`` and return the path."""
    fig.savefig(path, dpi=dpi)
    return Path(path)


def _label_offsets(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float, str]]:
    """``(dx, dy, ha)`` per label, in points: labels of (nearly) coinciding points fan out vertically,
    and points in the right-most fifth are labelled on their left so no label runs off the axes."""
    if len(x) == 0:
        return []
    offsets: list[tuple[float, float, str]] = []
    lo, span_x = float(np.min(x)), max(float(np.ptp(x)), 1e-12)
    span_y = max(float(np.ptp(y)), 1e-12)
    placed: list[tuple[float, float]] = []
    for xi, yi in zip(x, y):
        near = sum(abs(xi - px) / span_x < 0.03 and abs(yi - py) / span_y < 0.06 for px, py in placed)
        right = (xi - lo) / span_x > 0.8
        offsets.append((-7.0 if right else 7.0, 4.0 - 11.0 * near, "right" if right else "left"))
        placed.append((xi, yi))
    return offsets


def pareto_plot(
    df: pd.DataFrame,
    x: str = "madds",
    y: str = "delta_m",
    label: str = "label",
    title: str | None = None,
) -> Figure:
    """Scatter of MAdds (G/M/KMAdds, see :func:`madds_unit`) vs Δm (%), front connected as a step line,
    baselines and points labelled.

    ``df`` needs ``x`` (raw MAdds), ``y``, ``label`` and optionally ``status``, ``is_baseline``,
    ``method``; failed rows are left out of the figure (the report lists them).
    """
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    ok = ok[ok[x].notna() & ok[y].notna()]
    fig = _figure()
    ax = fig.add_subplot()
    scale, unit = madds_unit(ok[x])
    gx = ok[x].to_numpy(dtype=float) / scale
    gy = ok[y].to_numpy(dtype=float)
    baseline = ok["is_baseline"].to_numpy(dtype=bool) if "is_baseline" in ok.columns else np.zeros(len(ok), bool)
    methods = ok["method"].fillna("").astype(str) if "method" in ok.columns else pd.Series([""] * len(ok))
    for i, method in enumerate(dict.fromkeys(methods[~baseline])):
        mask = (methods.to_numpy() == method) & ~baseline
        ax.scatter(gx[mask], gy[mask], s=36, color=f"C{i % 10}", label=method or "models", zorder=3)
    if baseline.any():
        ax.scatter(gx[baseline], gy[baseline], s=150, marker="*", color="black", label="baselines", zorder=4)
    steps = front_steps(ok.assign(_gx=gx, _gy=gy), "_gx", "_gy")
    if len(steps):
        ax.plot(steps["_gx"], steps["_gy"], drawstyle="steps-post", color="0.35", lw=1.4, zorder=2,
                label="Pareto front")
        ax.scatter(steps["_gx"], steps["_gy"], s=110, facecolors="none", edgecolors="0.2", lw=1.2, zorder=5)
    for (xi, yi, text, base), (dx, dy, ha) in zip(zip(gx, gy, ok[label].astype(str), baseline), _label_offsets(gx, gy)):
        ax.annotate(text, (xi, yi), xytext=(dx, dy), textcoords="offset points", fontsize=8, ha=ha,
                    fontweight="bold" if base else "normal")
    ax.axhline(0.0, color="0.7", lw=0.8, ls="--", zorder=1)
    ax.set_xlabel(f"MAdds [{unit}]")
    ax.set_ylabel(DELTA_M_LABEL)
    ax.set_title(title or "Multi-task performance vs cost (front: circled, connected)")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.12)
    ax.legend(fontsize=8, loc="best")
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
