"""``bmn``: Branched Multi-Task Networks (Vandenhende et al., "Deciding What Layers To Share", BMVC 2020)
as the BMTAS paper's comparator.

BMN measures how alike the tasks' *single-task* representations are at every candidate branching
location with representation similarity analysis (RSA), then picks, among every tree whose cost stays
within a budget, the one whose grouped tasks are least dissimilar. BMTAS (supplement B): "training
separate single-task networks and computing the Representational Similarity Analysis matrix from the
resulting task-specific feature maps, exactly as described in the paper. Various branching structures can
be found by exhaustively searching candidates among a reduced pool, containing all possible structures
below a specified MAdds value." Here, step by step:

1. **single-task networks** (:func:`branchsweep.search.fafs.pretrain`): the Single tree (every task its
   own branch from layer 0) trained once with the project's retrain loop for ``pretrain_iterations``;
   the branches never exchange gradients, so each task's branch is its single-task network (only the
   parameter-free or tiny stem, which no tree branches, is shared);
2. **RDMs** (:func:`rdm`): at the end of every free segment (the last layer before the next branch point
   or the backbone's end), each task's features of the same ``affinity_images`` validation images;
   a task's representation dissimilarity matrix is ``1 −`` the correlation (``rdm_correlation``:
   Pearson, or Spearman) between the features of every pair of images;
3. **RSA** (:func:`rsa_dissimilarity`): the dissimilarity of two tasks at a segment is ``1 −`` the
   Spearman correlation between the upper triangles of their RDMs;
4. **tree cost** (:func:`tree_cost`): per segment, the mean over its groups of the largest dissimilarity
   between two tasks of the group (``group_cost mean``: the mean over the group's pairs; a task alone
   costs 0), summed over segments;
5. **selection** (:func:`best_tree`): among every tree of the branch-point space
   (:func:`branchsweep.tree_space.refinements`, the enumeration of
   :func:`branchsweep.tree_space.enumerate_trees`) whose MAdds are at most the budget (``target_madds``,
   or the MAdds of the tree at ``like``; ``tolerance``: only trees within that relative band of it), the
   one with the lowest cost (ties: fewer MAdds). Exhaustive, with pruning that never drops a feasible
   better tree, while the space holds at most ``max_trees`` trees; beyond, a beam search
   (``beam_width``) over the segments, which says so in the result (``exhaustive`` false).

``affinity_cache`` (a folder; a sweep sets it) keeps the dissimilarities per seed, data, backbone, recipe
and layers, so several budgets share one training. docs/baselines.md lists the differences from the paper.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from branchsweep.arch import BranchConfig, Partition, _canonical
from branchsweep.config import to_dict
from branchsweep.errors import ConfigError
from branchsweep.search.base import SEARCH_METHODS, SearchContext, SearchMethod, SearchResult, setting
from branchsweep.search.fafs import (
    cache_key,
    cached,
    chain_madds,
    check_positive,
    export,
    held_out,
    linkage_cuts,
    named_groups,
    paper_pretraining,
    pretrain,
    segment_costs,
)

GROUP_COSTS = ("max", "mean")
CORRELATIONS = ("pearson", "spearman")
#: A parent partition with at most this many refinements has all of them scored by the beam search.
BEAM_ALL_REFINEMENTS = 4140
_EPS = 1e-12


# ------------------------------------------------------------------------------------------ the maths
def rankdata(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank.

    >>> rankdata([3.0, 1.0, 3.0, 2.0]).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    values = np.asarray(x, dtype=float)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse.reshape(-1)]


def row_correlations(rows: np.ndarray) -> np.ndarray:
    """Pearson correlation between every pair of rows; a constant row correlates 0 with the others.
    float32 rows are kept in float32 (large feature maps), the result is float64.

    >>> row_correlations(np.array([[1., 2., 3.], [2., 4., 6.], [3., 2., 1.]])).round(6).tolist()
    [[1.0, 1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]
    """
    x = np.asarray(rows)
    x = x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1)
    z = x / np.where(norms > 0, norms, 1.0).astype(x.dtype)[:, None]
    out = np.clip((z @ z.T).astype(np.float64), -1.0, 1.0)
    np.fill_diagonal(out, 1.0)
    return out


def rdm(features: np.ndarray, correlation: str = "pearson") -> np.ndarray:
    """The representation dissimilarity matrix of ``K`` images (rows: each image's flattened features):
    ``1 −`` the Pearson (or Spearman: on ranks) correlation between every pair of images.

    >>> rdm(np.array([[1., 2., 3.], [2., 4., 7.], [3., 2., 1.]]), "spearman").round(6).tolist()
    [[0.0, 0.0, 2.0], [0.0, 0.0, 2.0], [2.0, 2.0, 0.0]]
    """
    x = np.asarray(features)
    x = (x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)).reshape(len(x), -1)
    if correlation == "spearman":
        x = np.stack([rankdata(row) for row in x]).astype(x.dtype)
    elif correlation != "pearson":
        raise ValueError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    return 1.0 - row_correlations(x)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (0 when either side is constant).

    >>> [round(spearman(x, y), 6) for x, y in [([1, 2, 3, 4], [10, 20, 30, 100]), ([1, 2, 3], [3, 2, 1]),
    ...                                         ([1, 1], [1, 2])]]
    [1.0, -1.0, 0.0]
    """
    return float(row_correlations(np.stack([rankdata(x), rankdata(y)]))[0, 1])


def rsa_dissimilarity(rdms: Sequence[np.ndarray]) -> np.ndarray:
    """RSA between tasks: ``D(i, j) = 1 −`` Spearman correlation of the upper triangles (diagonal left out)
    of task ``i``'s and task ``j``'s RDMs; 0 on the diagonal, in ``[0, 2]``.

    >>> a = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0]])
    >>> rsa_dissimilarity([a, 2 * a, 10 - a]).round(6).tolist()
    [[0.0, 0.0, 2.0], [0.0, 0.0, 2.0], [2.0, 2.0, 0.0]]
    """
    k = len(rdms[0])
    upper = np.triu_indices(k, 1)
    tri = [np.asarray(m, dtype=float)[upper] for m in rdms]
    n = len(tri)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = 1.0 - spearman(tri[i], tri[j])
    return out


def group_cost(dissimilarity: np.ndarray, group: Sequence[int], how: str = "max") -> float:
    """The dissimilarity of tasks sharing a block: the largest (``how="max"``) or the mean (``"mean"``)
    dissimilarity between two of them; 0 for a task alone.

    >>> D = np.array([[0, .2, .9], [.2, 0, .4], [.9, .4, 0]])
    >>> group_cost(D, (0, 1, 2)), round(group_cost(D, (0, 1, 2), "mean"), 4), group_cost(D, (1,))
    (0.9, 0.5, 0.0)
    """
    pairs = [dissimilarity[i, j] for a, i in enumerate(group) for j in group[a + 1:]]
    if not pairs:
        return 0.0
    if how == "max":
        return float(max(pairs))
    if how == "mean":
        return float(np.mean(pairs))
    raise ValueError(f"how must be one of {GROUP_COSTS}, got {how!r}")


def partition_cost(dissimilarity: np.ndarray, partition: Sequence[Sequence[int]], how: str = "max") -> float:
    """The clustering cost of one segment: the mean of :func:`group_cost` over its groups.

    >>> D = np.array([[0, .2, .9], [.2, 0, .4], [.9, .4, 0]])
    >>> partition_cost(D, [(0, 1), (2,)])
    0.1
    """
    return sum(group_cost(dissimilarity, g, how) for g in partition) / len(partition)


def tree_cost(dissimilarities: Sequence[np.ndarray], chain: Sequence[Sequence[Sequence[int]]],
              how: str = "max") -> float:
    """The cost of a tree (per segment its partition): the sum over segments of :func:`partition_cost`
    with that segment's task dissimilarity.

    >>> D = np.array([[0, .2, .9], [.2, 0, .4], [.9, .4, 0]])
    >>> round(tree_cost([D, D], [[(0, 1, 2)], [(0, 1), (2,)]]), 4)
    1.0
    """
    return sum(partition_cost(d, part, how) for d, part in zip(dissimilarities, chain, strict=True))


def _bell(n: int) -> int:
    from branchsweep.tree_space import stirling2

    return sum(stirling2(n, k) for k in range(n + 1))


def _candidates(parent: Partition, cuts: list[Partition]) -> list[Partition]:
    """The refinements of ``parent`` a beam step scores: all of them when few, else ``parent`` intersected
    with each cut of the complete-linkage agglomeration of this segment."""
    from branchsweep.tree_space import refinements

    if math.prod(_bell(len(g)) for g in parent) <= BEAM_ALL_REFINEMENTS:
        return list(refinements(parent))
    out = {}
    for cut in cuts:
        owner = {t: i for i, g in enumerate(cut) for t in g}
        groups: dict[tuple[int, int], list[int]] = {}
        for p, g in enumerate(parent):
            for t in g:
                groups.setdefault((p, owner[t]), []).append(t)
        part = _canonical(list(groups.values()))
        out[part] = None
    return list(out)


@dataclass(frozen=True)
class Selection:
    """The tree :func:`best_tree` chose: per segment its partition, its cost and MAdds, and whether every
    tree of the space was considered."""

    chain: list[Partition]
    cost: float
    madds: float
    exhaustive: bool


def best_tree(dissimilarities: Sequence[np.ndarray], segment_madds: Sequence[float], fixed: float, cap: float,
              floor: float = 0.0, how: str = "max", max_trees: int = 100_000_000,
              beam_width: int = 100) -> Selection | None:
    """The tree of lowest :func:`tree_cost` whose MAdds lie in ``[floor, cap]`` (ties: fewer MAdds, then the
    first in enumeration order), or None when no tree does.

    A tree is a chain of partitions, one per segment, each refining the one before (the first refines
    "all tasks together"). With at most ``max_trees`` trees in the space
    (:func:`branchsweep.tree_space.count_trees`) every one is considered, depth first with two safe cuts:
    a partial tree whose MAdds cannot end inside the band (groups never merge, so a segment has at least
    as many groups as the one before), or whose cost already exceeds the best found (costs are >= 0).
    The cuts make this fast in practice (on one CPU core: 6 tasks × 10 segments, 3·10^6 trees, under 1 s;
    8 tasks × 6 segments, 1.5·10^8 trees, under 10 s). Beyond, a beam search keeps the ``beam_width``
    cheapest partial trees per segment (scoring every refinement of a partial tree when there are at
    most :data:`BEAM_ALL_REFINEMENTS`, else the refinements along a complete-linkage agglomeration of the
    segment's dissimilarity); it may miss the best tree.

    >>> D = np.array([[0, .1, .9, .9], [.1, 0, .9, .9], [.9, .9, 0, .2], [.9, .9, .2, 0]])
    >>> best_tree([D], [10.0], fixed=0.0, cap=20.0).chain
    [((0, 1), (2, 3))]
    """
    from branchsweep.tree_space import count_trees, refinements

    n, k_total = len(dissimilarities[0]), len(dissimilarities)
    seg = list(segment_madds)
    rest = [sum(seg[k + 1:]) for k in range(k_total)]
    everyone: Partition = (tuple(range(n)),)
    memo: dict[tuple[int, Partition], float] = {}

    def cost_of(k: int, part: Partition) -> float:
        if (k, part) not in memo:
            memo[(k, part)] = partition_cost(dissimilarities[k], part, how)
        return memo[(k, part)]

    def feasible(k: int, part: Partition, madds: float) -> bool:
        return madds + len(part) * rest[k] <= cap * (1 + _EPS) and madds + n * rest[k] >= floor * (1 - _EPS)

    def key(cost: float, madds: float) -> tuple[float, float]:
        return (round(cost, 9), madds)

    exhaustive = count_trees(n, k_total) <= max_trees
    best: list[Any] = [None]  # (key, chain)
    if exhaustive:
        def rec(k: int, parent: Partition, cost: float, madds: float, chain: list[Partition]) -> None:
            if k == k_total:
                if best[0] is None or key(cost, madds) < best[0][0]:
                    best[0] = (key(cost, madds), chain)
                return
            for part in refinements(parent):
                m = madds + len(part) * seg[k]
                if not feasible(k, part, m):
                    continue
                c = cost + cost_of(k, part)
                if best[0] is not None and round(c, 9) > best[0][0][0]:
                    continue
                rec(k + 1, part, c, m, [*chain, part])

        rec(0, everyone, 0.0, float(fixed), [])
    else:
        beam: list[tuple[tuple[float, float], float, float, list[Partition]]] = [((0.0, fixed), 0.0, float(fixed), [])]
        for k in range(k_total):
            cuts = linkage_cuts(np.asarray(dissimilarities[k], dtype=float))
            grown = []
            for _, cost, madds, chain in beam:
                for part in _candidates(chain[-1] if chain else everyone, cuts):
                    m = madds + len(part) * seg[k]
                    if feasible(k, part, m):
                        c = cost + cost_of(k, part)
                        grown.append((key(c, m), c, m, [*chain, part]))
            grown.sort(key=lambda e: e[0])
            beam = grown[:beam_width]
        if beam:
            best[0] = (beam[0][0], beam[0][3])
    if best[0] is None:
        return None
    chain = best[0][1]
    return Selection(chain, tree_cost(dissimilarities, chain, how), chain_madds(fixed, seg, chain), exhaustive)


# ------------------------------------------------------------------------------------- the method
def segment_ends(ctx: SearchContext) -> list[int]:
    """The layer whose output each free segment's RSA reads: the segment's last layer."""
    from branchsweep.tree_space import segments

    return [end - 1 for _, end in segments(ctx.branch_points, ctx.spec.num_layers)]


@torch.no_grad()
def task_features(model: Any, dataset: Dataset, ctx: SearchContext, layer: int, batch_size: int) -> list[np.ndarray]:
    """Per task, the output of its own block at ``layer`` for every example of ``dataset`` (flattened float32
    rows, on the CPU: ``K`` × the layer's output size per task)."""
    runtime = ctx.runtime()
    runtime.prepare(model).eval()
    config = model.config
    taken: dict[int, list[torch.Tensor]] = {}
    hooks = []
    for t in range(len(ctx.tasks)):
        group = config.group_of(layer, t)

        def hook(_module: Any, _inputs: Any, output: torch.Tensor, t: int = t) -> None:
            taken.setdefault(t, []).append(output.detach().float().flatten(1).cpu())

        hooks.append(model.blocks[layer][group].register_forward_hook(hook))
    try:
        for batch in runtime.loader(dataset, batch_size):
            batch = runtime.batch(batch)
            with runtime.autocast():
                model(batch["image"])
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(taken[t]).numpy() for t in range(len(ctx.tasks))]


@dataclass
class BMNConfig:
    """``bmn`` settings: exactly one of ``target_madds`` or ``like`` (the MAdds budget)."""

    METHOD = "bmn"
    target_madds: float | None = setting(None, "MAdds to match (vanilla/random/fafs; bmn: the cap)")
    like: str | None = setting(None, "branch_config.json (or its JSON text) whose tree (permuted) or MAdds "
                                     "(vanilla/random/fafs; bmn: the cap) to use")
    tolerance: float | None = setting(None, "relative MAdds tolerance (random; bmn: only trees within it of the "
                                            "budget compete, default every tree up to it)")
    group_cost: str = setting("max", "dissimilarity of tasks sharing a block: the largest or the mean over "
                                     "their pairs (bmn)", choices=GROUP_COSTS)
    rdm_correlation: str = setting("pearson", "correlation between two images' features in an RDM (bmn)",
                                   choices=CORRELATIONS)
    pretrain_iterations: int = setting(200, "iterations of the network trained before measuring affinity "
                                            "(fafs: Shared, bmn: Single; paper data sets: the paper's retrain length)")
    batch_size: int = setting(8, "batch size")
    lr: float = setting(0.005, "learning rate")
    affinity_images: int = setting(50, "validation examples the affinity is measured on (fafs: 500, bmn: 50)")
    affinity_cache: str | None = setting(None, "folder keeping measured affinities (a sweep sets it), so several "
                                               "budgets share one pre-training (fafs/bmn)")
    max_trees: int = setting(100_000_000, "largest branch-point space (trees) searched exhaustively; beyond, a beam "
                                          "search (bmn)")
    beam_width: int = setting(100, "partial trees kept per segment by the beam search (bmn)")

    def validate(self) -> None:
        from branchsweep.search.baselines import _check_target

        _check_target(self, ("target_madds", "like"))
        if self.tolerance is not None and not 0 < self.tolerance < 1:
            raise ConfigError(f"bmn: --tolerance must be in (0, 1), got {self.tolerance}")
        if self.group_cost not in GROUP_COSTS:
            raise ConfigError(f"bmn: --group-cost must be one of {', '.join(GROUP_COSTS)}, got {self.group_cost!r}")
        if self.rdm_correlation not in CORRELATIONS:
            raise ConfigError(f"bmn: --rdm-correlation must be one of {', '.join(CORRELATIONS)}, "
                              f"got {self.rdm_correlation!r}")
        check_positive("bmn", pretrain_iterations=self.pretrain_iterations, batch_size=self.batch_size, lr=self.lr,
                       max_trees=self.max_trees, beam_width=self.beam_width)
        if self.affinity_images < 3:
            raise ConfigError(f"bmn: --affinity-images must be >= 3 (an RDM needs 3 images), "
                              f"got {self.affinity_images}")


class BMNMethod(SearchMethod):
    """Vandenhende et al.'s Branched Multi-Task Networks: RSA of single-task networks at every branch point,
    the least dissimilar tree under a MAdds budget (module docstring)."""

    name = "bmn"
    config_type = BMNConfig

    def data_defaults(self, dataset: str, backbone: str, num_tasks: int) -> dict[str, Any]:
        return paper_pretraining(dataset, backbone)

    def sweep_settings(self, shared_dir: Path) -> dict[str, Any]:
        return {"affinity_cache": str(shared_dir / "affinity")}

    def dissimilarities(self, cfg: BMNConfig, ctx: SearchContext, layers: list[int]) -> tuple[list[np.ndarray], bool]:
        """Per layer of ``layers``, the RSA dissimilarity between tasks, and whether it was cached."""
        names = [t.name for t in ctx.tasks]

        def compute() -> list[list[list[float]]]:
            model = pretrain(ctx, BranchConfig.single(names, ctx.spec.num_layers), cfg.pretrain_iterations,
                             cfg.batch_size, cfg.lr)
            images = held_out(ctx, cfg.affinity_images)
            out = []
            for layer in layers:
                feats = task_features(model, images, ctx, layer, max(cfg.batch_size, 16))
                out.append(rsa_dissimilarity([rdm(f, cfg.rdm_correlation) for f in feats]).tolist())
            return out

        key = cache_key(ctx, "bmn", pretrain_iterations=cfg.pretrain_iterations, batch_size=cfg.batch_size,
                        lr=cfg.lr, affinity_images=cfg.affinity_images, rdm_correlation=cfg.rdm_correlation,
                        layers=layers)
        value, hit = cached(cfg.affinity_cache, key, compute)
        return [np.asarray(d, dtype=float) for d in value], hit

    def run(self, cfg: BMNConfig, ctx: SearchContext) -> SearchResult:
        from branchsweep.madds import format_madds
        from branchsweep.search.baselines import _target
        from branchsweep.tree_space import from_segments

        t0 = time.perf_counter()
        names = [t.name for t in ctx.tasks]
        table, fixed, seg = segment_costs(ctx)
        target = _target(cfg, ctx, table)[0]
        floor = target * (1 - cfg.tolerance) if cfg.tolerance is not None else 0.0
        cap = target * (1 + cfg.tolerance) if cfg.tolerance is not None else target
        shared = fixed + sum(seg)
        if cap < shared * (1 - _EPS):
            raise ConfigError(f"bmn: no tree has MAdds within the budget {format_madds(cap)}: the Shared tree "
                              f"already has {format_madds(shared)}")
        layers = segment_ends(ctx)
        dis, hit = self.dissimilarities(cfg, ctx, layers)
        pick = best_tree(dis, seg, fixed, cap, floor, cfg.group_cost, cfg.max_trees, cfg.beam_width)
        if pick is None:
            raise ConfigError(f"bmn: no tree has MAdds in [{format_madds(floor)}, {format_madds(cap)}] "
                              f"(the space's MAdds are discrete; raise --tolerance)")
        config = from_segments(names, ctx.branch_points, ctx.spec.num_layers, pick.chain)
        madds = float(table.madds(config))
        info: dict[str, Any] = {
            "madds": madds, "target_madds": target, "madds_ratio": madds / target, "cost": pick.cost,
            "exhaustive": pick.exhaustive, "dissimilarity": [d.tolist() for d in dis],
            "affinity": [(1.0 - d).tolist() for d in dis], "rsa_layers": layers,
            "groups": named_groups(names, pick.chain), "branch_points": list(ctx.branch_points or ()),
            "affinity_cached": hit}
        log = {"method": "bmn", "config": to_dict(cfg), "tasks": names, "seed": ctx.seed, "segment_madds": seg,
               "budget": [floor, cap]}
        return export(ctx, config, t0, log, info)


SEARCH_METHODS.register("bmn", BMNMethod())
