"""Scoring against an exhaustive table: every tree of a space retrained with seeds (a *truth table*).

A truth table has one row per tree × retrain seed with ``arch_hash``, ``tree``, ``madds``, ``seed`` and
``delta_m`` (``branchsweep/truth.py`` writes them). From it:

* :func:`tree_means`: one row per tree, Δm mean ± s.e. over seeds;
* :func:`front_value` / :func:`regret`: the best mean Δm any tree reaches at a cost, and how far a tree
  is below it;
* :func:`hypervolume_fraction`: the share of the exhaustive front's hypervolume that a set of trees
  reaches (same reference point for all); :func:`seed_fractions`: the same per retrain seed;
* :func:`matched_gaps` and :func:`designed_gap`: does the grouping matter at all in this table (best vs
  median tree at equal MAdds, paired by seed), and where is the designed grouping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from analysis.errors import AnalysisError
from analysis.pareto import hypervolume_2d, pareto_front
from analysis.replicates import format_mean_se, standard_error

OBJECTIVES = {"madds": "min", "delta_m": "max"}


def _check(rows: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise AnalysisError(f"truth table has no column {missing[0]!r}")


def tree_means(rows: pd.DataFrame, value: str = "delta_m") -> pd.DataFrame:
    """One row per tree (indexed by ``arch_hash``): ``tree``, ``madds``, ``delta_m`` (mean over seeds),
    ``delta_m/se`` and ``seeds``, sorted by MAdds then Δm (best first).

    >>> rows = pd.DataFrame({"arch_hash": ["a", "a", "b", "b"], "tree": ["A", "A", "B", "B"], "seed": [0, 1, 0, 1],
    ...                      "madds": [1, 1, 2, 2], "delta_m": [0.0, 2.0, 3.0, 5.0]})
    >>> tree_means(rows)[["madds", "delta_m", "seeds"]].to_dict("index")
    {'a': {'madds': 1, 'delta_m': 1.0, 'seeds': 2}, 'b': {'madds': 2, 'delta_m': 4.0, 'seeds': 2}}
    """
    _check(rows, ["arch_hash", "tree", "madds", "seed", value])
    g = rows.groupby("arch_hash", sort=False)
    out = pd.DataFrame({"tree": g["tree"].first(), "madds": g["madds"].first(), "delta_m": g[value].mean(),
                        "delta_m/se": g[value].agg(standard_error), "seeds": g["seed"].nunique()})
    return out.sort_values(["madds", "delta_m"], ascending=[True, False], kind="stable")


def table_reference(means: pd.DataFrame) -> dict[str, float]:
    """The hypervolume reference of a table: 1.1 × its costliest tree, and 1 point below its worst Δm."""
    return {"madds": float(means["madds"].max()) * 1.1, "delta_m": float(means["delta_m"].min()) - 1.0}


def exhaustive_front(means: pd.DataFrame) -> pd.DataFrame:
    """The non-dominated trees of the table (by their mean Δm), sorted by MAdds."""
    return means[pareto_front(means, OBJECTIVES).to_numpy()].sort_values("madds")


def front_value(means: pd.DataFrame, madds: float) -> float:
    """The best mean Δm of any tree costing at most ``madds`` (NaN when none is that cheap).

    >>> means = pd.DataFrame({"madds": [1, 2, 3], "delta_m": [0.0, 5.0, 4.0]})
    >>> front_value(means, 2.5), front_value(means, 0.5)
    (5.0, nan)
    """
    cheap = means[means["madds"] <= madds]
    return float(cheap["delta_m"].max()) if len(cheap) else math.nan


def regret(means: pd.DataFrame, arch_hash: str) -> float:
    """How far tree ``arch_hash`` is below the exhaustive front at its own MAdds (Δm points, ≥ 0)."""
    if arch_hash not in means.index:
        raise AnalysisError(f"tree {arch_hash} is not in the truth table (another space or recipe?)")
    row = means.loc[arch_hash]
    return front_value(means, float(row["madds"])) - float(row["delta_m"])


def hypervolume_fraction(means: pd.DataFrame, hashes: Sequence[str],
                         reference: Mapping[str, float] | None = None) -> float:
    """Hypervolume of the trees ``hashes`` (their mean Δm) over the hypervolume of every tree of the table.

    >>> means = pd.DataFrame({"madds": [1.0, 2.0], "delta_m": [0.0, 2.0]}, index=["a", "b"])
    >>> round(hypervolume_fraction(means, ["b"], {"madds": 3.0, "delta_m": -1.0}), 3)
    0.75
    """
    unknown = [h for h in hashes if h not in means.index]
    if unknown:
        raise AnalysisError(f"tree {unknown[0]} is not in the truth table (another space or recipe?)")
    ref = dict(reference or table_reference(means))
    total = hypervolume_2d(means, OBJECTIVES, ref)
    if total <= 0:
        return math.nan
    return hypervolume_2d(means.loc[list(dict.fromkeys(hashes))], OBJECTIVES, ref) / total


def seed_fractions(rows: pd.DataFrame, hashes: Sequence[str], reference: Mapping[str, float] | None = None,
                   value: str = "delta_m") -> pd.Series:
    """:func:`hypervolume_fraction` once per retrain seed of the table: the trees ``hashes`` against every
    tree, both with that seed's Δm (index: the seed). One reference for all seeds (default:
    :func:`table_reference` of the rows, so every single-seed point lies above it); the mean ± s.e. of
    the result measures how much of the fraction is seed noise.

    >>> rows = pd.DataFrame({"arch_hash": ["a", "b"] * 2, "seed": [0, 0, 1, 1], "madds": [1.0, 2.0] * 2,
    ...                      "delta_m": [0.0, 2.0, 1.0, 1.0]})
    >>> seed_fractions(rows, ["b"], {"madds": 3.0, "delta_m": -1.0}).round(3).to_dict()
    {0: 0.75, 1: 0.5}
    """
    _check(rows, ["arch_hash", "seed", "madds", value])
    unknown = [h for h in hashes if h not in set(rows["arch_hash"])]
    if unknown:
        raise AnalysisError(f"tree {unknown[0]} is not in the truth table (another space or recipe?)")
    data = rows[["arch_hash", "seed", "madds", value]].rename(columns={value: "delta_m"})
    ref = dict(reference or table_reference(data))
    wanted = set(hashes)
    out = {}
    for seed, part in data.groupby("seed", sort=True):
        total = hypervolume_2d(part, OBJECTIVES, ref)
        out[seed] = hypervolume_2d(part[part["arch_hash"].isin(wanted)], OBJECTIVES, ref) / total if total > 0 else math.nan
    return pd.Series(out, name="hv_fraction", dtype=float).rename_axis("seed")


def paired_gap(rows: pd.DataFrame, a: str, b: str, value: str = "delta_m") -> tuple[float, float, int]:
    """Mean and s.e. over seeds of ``value(a) − value(b)``, paired by retrain seed; and the number of seeds."""
    x = rows[rows["arch_hash"] == a].set_index("seed")[value]
    y = rows[rows["arch_hash"] == b].set_index("seed")[value]
    d = (x - y).dropna()
    return (float(d.mean()) if len(d) else math.nan), standard_error(d), len(d)


def matched_gaps(rows: pd.DataFrame, min_trees: int = 3) -> pd.DataFrame:
    """At every MAdds value that ``min_trees`` or more trees share: the best and the median tree (by mean
    Δm) and their gap paired by seed (mean, s.e., and the gap in s.e.: ``z``), most trees first.

    The best tree is chosen on the same seeds that measure the gap, so ``z`` is an upper estimate; the
    median tree is the lower median of the level.
    """
    means = tree_means(rows)
    out = []
    for madds, level in means.groupby("madds"):
        if len(level) < min_trees:
            continue
        ranked = level.sort_values("delta_m", ascending=False)
        best, median = ranked.index[0], ranked.index[(len(ranked) - 1) // 2 + (len(ranked) % 2 == 0)]
        gap, se, n = paired_gap(rows, best, median)
        out.append({"madds": madds, "trees": len(level), "best": ranked.loc[best, "tree"],
                    "median": ranked.loc[median, "tree"], "gap": gap, "gap/se": se,
                    "z": gap / se if se and se > 0 else math.nan, "seeds": n})
    cols = ["madds", "trees", "best", "median", "gap", "gap/se", "z", "seeds"]
    return pd.DataFrame(out, columns=cols).sort_values(["trees", "madds"], ascending=[False, True], kind="stable")


def designed_gap(rows: pd.DataFrame, designed: str) -> dict[str, float | str]:
    """The designed tree against the exhaustive front at its MAdds: the front's tree there (the best mean
    Δm at no more cost), the gap paired by seed (``front − designed``), its s.e. and ``z``; the designed
    tree's rank among all trees by mean Δm."""
    means = tree_means(rows)
    if designed not in means.index:
        raise AnalysisError(f"designed tree {designed} is not in the truth table")
    madds = float(means.loc[designed, "madds"])
    cheap = means[means["madds"] <= madds]
    best = cheap["delta_m"].idxmax()
    gap, se, n = paired_gap(rows, best, designed)
    rank = int((means["delta_m"] > means.loc[designed, "delta_m"]).sum()) + 1
    return {"designed": str(means.loc[designed, "tree"]), "front_tree": str(means.loc[best, "tree"]),
            "gap": gap, "gap/se": se, "z": gap / se if se and se > 0 else (0.0 if gap == 0 else math.nan),
            "rank": rank, "trees": len(means), "seeds": n}


def grouping_evidence(rows: pd.DataFrame, designed: str | None = None) -> list[str]:
    """Lines saying whether the grouping matters in the table (the truth tables' acceptance numbers)."""
    means = tree_means(rows)
    lines = [f"{len(means)} trees × {int(means['seeds'].max())} seeds; Δm from {means['delta_m'].min():+.2f} to "
             f"{means['delta_m'].max():+.2f} % (tree means); exhaustive front: {len(exhaustive_front(means))} trees"]
    gaps = matched_gaps(rows)
    if len(gaps):
        top = gaps.iloc[0]
        strongest = gaps.loc[gaps["z"].idxmax()] if gaps["z"].notna().any() else top
        strong = int((gaps["z"] >= 5).sum())
        lines.append(f"MAdds levels of 3+ trees where the best tree beats the median one by ≥ 5 paired s.e.: "
                     f"{strong} of {len(gaps)}")
        for label, g in (("largest MAdds level", top), ("strongest level", strongest)):
            lines.append(f"best vs median tree at equal MAdds ({label}: {int(g['trees'])} trees at {g['madds']:.4g}): "
                         f"Δm {format_mean_se(g['gap'], g['gap/se'], sign=True)} % paired by seed "
                         f"({g['z']:.1f} s.e.; best {g['best']}, median {g['median']})")
    if designed is not None:
        d = designed_gap(rows, designed)
        lines.append(f"designed tree {d['designed']}: rank {d['rank']} of {d['trees']} by Δm; the front at its MAdds "
                     f"({d['front_tree']}) is ahead by {format_mean_se(d['gap'], d['gap/se'], sign=True)} % paired "
                     f"({d['z']:.1f} s.e.)")
    return lines
