"""``fafs``: Fully-Adaptive Feature Sharing (Lu et al., CVPR 2017) as the BMTAS paper's comparator.

Lu et al. widen a thin, fully shared network into a tree, layer by layer from the output towards the
input: at each junction the branches above it are grouped by *task affinity* into ``d`` clusters and each
cluster gets its own copy of the layer. BMTAS (supplement B) runs it as: "we pre-train a fully shared
network on all the tasks and then calculate the task groupings in all layers greedily (starting from the
last) according to the task affinity measure described in [Lu et al.]", with per-sample losses deciding
sample difficulty (the paper names the loss for edges, where a per-sample metric does not exist), and
three models per backbone from three complexity penalties. Here, step by step:

1. **pre-train** (:func:`pretrain`): the Shared tree, trained with the project's retrain loop
   (:func:`branchsweep.train.train_network`: the data set's train split, ``ctx.seed``, the run's device
   and precision) for ``pretrain_iterations`` at ``lr`` and ``batch_size``;
2. **difficulty and affinity** (:func:`difficulty`, :func:`affinity_matrix`): per-example losses of
   every task on ``affinity_images`` held-out (validation) examples; an example is *difficult* for a task
   when its loss lies above that task's mean (``difficulty_threshold``: or median); the affinity of two
   tasks is the probability that an example is difficult for both or easy for both;
3. **greedy grouping** (:func:`fafs_chain`): from the last branch point towards the first, the branches
   of the segment above (at the last segment: the tasks) are grouped into ``d`` clusters, ``d`` minimising
   Lu et al.'s loss ``(d − 1)·u_k + λ·L_s(g_d)``: ``u_k`` the MAdds of one more copy of segment ``k``
   (relative to the Shared backbone's branchable layers), ``L_s`` the separation of the grouping
   (:func:`separation_cost`, from the branch affinity of :func:`branch_affinity`) and ``λ`` the
   separation weight (larger: more branches). The best grouping for each ``d`` is found exactly
   (:func:`groupings`; agglomerative beyond :data:`EXACT_MAX_BRANCHES` branches). Layers before the
   first branch point stay shared (:func:`branchsweep.tree_space.from_segments`);
4. **budget** (:func:`fafs_candidates`): with ``target_madds`` or ``like``, every tree the greedy
   yields for some ``λ ≥ 0`` is listed exactly (the breakpoints of ``λ`` at each junction) and the one
   whose MAdds are closest to the target is exported (ties: the smaller ``λ``); ``separation_weight``
   gives ``λ`` directly instead.

``affinity_cache`` (a folder; a sweep sets it per method) keeps the per-example losses per seed, data,
backbone and pre-training recipe, so several budgets share one pre-training. docs/baselines.md lists the
differences from the paper.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from branchsweep import paper
from branchsweep.arch import BranchConfig, Partition, _canonical
from branchsweep.atomic import file_lock, read_json, write_json, write_text
from branchsweep.config import TrainConfig, to_dict
from branchsweep.errors import ConfigError
from branchsweep.search.base import SEARCH_METHODS, SearchContext, SearchMethod, SearchResult, setting

ARCH_FILE = "branch_config.json"
LOG_NAME = "search_log.jsonl"
#: Up to this many branches at one junction every grouping is scored (Bell(8) = 4140 partitions).
EXACT_MAX_BRANCHES = 8
THRESHOLDS = ("mean", "median")


# ------------------------------------------------------------------------------------------ the maths
def difficulty(losses: Sequence[Sequence[float]], threshold: str = "mean") -> np.ndarray:
    """Per task (row) and example (column): 1 *difficult* (loss above the task's mean, or median, over its
    labelled examples), 0 *easy*, -1 unlabelled (a NaN loss, or exactly 0: the project's losses give an
    exact 0 for an example without a valid label, e.g. a PASCAL image without persons for human parts).

    >>> difficulty([[1.0, 2.0, 3.0, 10.0], [0.5, 0.5, 4.0, 0.0]]).tolist()
    [[0, 0, 0, 1], [0, 0, 1, -1]]
    >>> difficulty([[1.0, 2.0, 3.0, 10.0]], "median").tolist()
    [[0, 0, 1, 1]]
    """
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")
    values = np.asarray(losses, dtype=float)
    out = np.full(values.shape, -1, dtype=int)
    for t, row in enumerate(values):
        labelled = np.isfinite(row) & (row != 0.0)
        if not labelled.any():
            continue
        cut = row[labelled].mean() if threshold == "mean" else np.median(row[labelled])
        out[t, labelled] = (row[labelled] > cut).astype(int)
    return out


def affinity_matrix(difficult: np.ndarray) -> np.ndarray:
    """Lu et al.'s task affinity: ``A(i, j) = P(e_i = e_j)``, the share of the examples labelled for both
    tasks that are difficult for both or easy for both (0.5, chance, when no example is labelled for both).

    >>> affinity_matrix(np.array([[1, 0, 1, 0], [1, 0, 1, 1], [0, 1, 0, 1]])).tolist()
    [[1.0, 0.75, 0.0], [0.75, 1.0, 0.25], [0.0, 0.25, 1.0]]
    """
    e = np.asarray(difficult)
    n = len(e)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            both = (e[i] >= 0) & (e[j] >= 0)
            out[i, j] = out[j, i] = float((e[i][both] == e[j][both]).mean()) if both.any() else 0.5
    return out


def branch_affinity(affinity: np.ndarray, branches: Sequence[Sequence[int]]) -> np.ndarray:
    """Lu et al.'s affinity of two branches (groups of tasks): over one branch's tasks, the mean of their
    lowest affinity to the other branch's tasks, averaged over both directions; 1 on the diagonal.

    >>> A = np.array([[1, .9, .2], [.9, 1, .4], [.2, .4, 1]])
    >>> branch_affinity(A, [(0, 1), (2,)]).round(3).tolist()
    [[1.0, 0.25], [0.25, 1.0]]
    """
    a = np.asarray(affinity, dtype=float)
    c = len(branches)
    out = np.eye(c)
    for k in range(c):
        for m in range(k + 1, c):
            block = a[np.ix_(list(branches[k]), list(branches[m]))]
            out[k, m] = out[m, k] = 0.5 * (block.min(axis=1).mean() + block.min(axis=0).mean())
    return out


def separation_cost(branch_aff: np.ndarray, clusters: Sequence[Sequence[int]]) -> float:
    """Lu et al.'s separation ``L_s`` of grouping branches into ``clusters``: the mean over clusters of
    ``1 −`` (the mean over the cluster's branches of their lowest affinity to another branch of the
    cluster); a one-branch cluster costs 0.

    >>> Ab = np.array([[1, .9, .2], [.9, 1, .4], [.2, .4, 1]])
    >>> round(separation_cost(Ab, [(0, 1), (2,)]), 4), round(separation_cost(Ab, [(0, 1, 2)]), 4)
    (0.05, 0.7333)
    """
    b = np.asarray(branch_aff, dtype=float)
    total = 0.0
    for g in clusters:
        if len(g) > 1:
            total += 1.0 - float(np.mean([min(b[k, m] for m in g if m != k) for k in g]))
    return total / len(clusters)


def _all_partitions(c: int) -> list[Partition]:
    from branchsweep.tree_space import refinements

    return list(refinements((tuple(range(c)),)))


def linkage_cuts(dissimilarity: np.ndarray) -> list[Partition]:
    """The partitions of a complete-linkage agglomeration on ``dissimilarity``, from every item alone to one
    group: each step merges the two clusters whose most dissimilar pair is least dissimilar (ties: the
    lowest indices). FAFS runs it on negated affinities, BMN on RSA dissimilarities.

    >>> linkage_cuts(np.array([[0, .1, .9], [.1, 0, .8], [.9, .8, 0]]))
    [((0,), (1,), (2,)), ((0, 1), (2,)), ((0, 1, 2),)]
    """
    clusters = [[i] for i in range(len(dissimilarity))]
    out = [_canonical(clusters)]
    while len(clusters) > 1:
        best: tuple[float, int, int] | None = None
        for x in range(len(clusters)):
            for y in range(x + 1, len(clusters)):
                link = max(dissimilarity[i, j] for i in clusters[x] for j in clusters[y])
                if best is None or link < best[0]:
                    best = (link, x, y)
        assert best is not None
        clusters[best[1]] = clusters[best[1]] + clusters.pop(best[2])
        out.append(_canonical(clusters))
    return out


def groupings(branch_aff: np.ndarray, exact_max: int = EXACT_MAX_BRANCHES) -> dict[int, tuple[Partition, float]]:
    """For every ``d`` in ``1..c``: the grouping of the ``c`` branches into ``d`` clusters with the lowest
    :func:`separation_cost` and that cost. Every partition is scored up to ``exact_max`` branches (ties:
    the first in :func:`branchsweep.tree_space.refinements` order); beyond, the cuts of a complete-linkage
    agglomeration are used.

    >>> Ab = np.array([[1, .9, .1, .1], [.9, 1, .1, .1], [.1, .1, 1, .8], [.1, .1, .8, 1]])
    >>> groupings(Ab)[2][0]
    ((0, 1), (2, 3))
    """
    b = np.asarray(branch_aff, dtype=float)
    best: dict[int, tuple[Partition, float]] = {}
    parts = _all_partitions(len(b)) if len(b) <= exact_max else linkage_cuts(-b)
    for part in parts:
        cost = separation_cost(b, part)
        d = len(part)
        if d not in best or cost < best[d][1] - 1e-12:
            best[d] = (part, cost)
    return dict(sorted(best.items()))


def choose_clusters(options: dict[int, tuple[Partition, float]], unit_cost: float, weight: float) -> int:
    """The ``d`` minimising Lu et al.'s ``(d − 1)·unit_cost + weight·L_s(g_d)`` (ties: fewer clusters).

    >>> opts = {1: (((0, 1),), 0.6), 2: (((0,), (1,)), 0.0)}
    >>> choose_clusters(opts, 0.5, 0.5), choose_clusters(opts, 0.5, 1.0)
    (1, 2)
    """
    return min(options, key=lambda d: ((d - 1) * unit_cost + weight * options[d][1], d))


def _merge(branches: Sequence[Sequence[int]], grouping: Partition) -> Partition:
    """Task groups of ``grouping`` (clusters of branch indices) over ``branches`` (groups of tasks)."""
    return _canonical([[t for b in cluster for t in branches[b]] for cluster in grouping])


def _singletons(n: int) -> Partition:
    return tuple((t,) for t in range(n))


def fafs_chain(affinity: np.ndarray, unit_costs: Sequence[float], weight: float) -> list[Partition]:
    """The greedy FAFS tree at separation weight ``weight``: per segment (first to last) its partition of
    the tasks, built from the last segment towards the first (each coarsens the one after it).

    >>> A = np.array([[1, .9, .1, .1], [.9, 1, .1, .1], [.1, .1, 1, .8], [.1, .1, .8, 1]])
    >>> fafs_chain(A, [1.0, 0.5], 1.0)  # splitting the first segment would cost more than it separates
    [((0, 1, 2, 3),), ((0, 1), (2, 3))]
    """
    a = np.asarray(affinity, dtype=float)
    branches = _singletons(len(a))
    chain: list[Partition] = []
    for u in reversed(list(unit_costs)):
        options = groupings(branch_affinity(a, branches))
        branches = _merge(branches, options[choose_clusters(options, u, weight)][0])
        chain.insert(0, branches)
    return chain


def _inside(lo: float, hi: float) -> float:
    return (lo + hi) / 2 if math.isfinite(hi) else 2 * lo + 1


def fafs_candidates(affinity: np.ndarray, unit_costs: Sequence[float]) -> list[tuple[float, float, list[Partition]]]:
    """Every tree :func:`fafs_chain` gives for some weight ``λ ≥ 0``, as ``(lo, hi, chain)``: the chain at
    every ``λ`` in ``(lo, hi)`` (``hi`` may be ``inf``), in increasing ``λ``. Exact: at a junction the
    choice changes only where two of its lines ``(d − 1)·u + λ·L_s(g_d)`` cross.

    >>> A = np.array([[1, .9, .1, .1], [.9, 1, .1, .1], [.1, .1, 1, .8], [.1, .1, .8, 1]])
    >>> [len(chain[-1]) for _, _, chain in fafs_candidates(A, [0.5])]
    [1, 2, 3, 4]
    """
    a = np.asarray(affinity, dtype=float)
    units = list(unit_costs)
    out: list[tuple[float, float, list[Partition]]] = []
    memo: dict[Partition, dict[int, tuple[Partition, float]]] = {}

    def rec(k: int, branches: Partition, lo: float, hi: float, suffix: list[Partition]) -> None:
        if k < 0:
            out.append((lo, hi, suffix))
            return
        if branches not in memo:
            memo[branches] = groupings(branch_affinity(a, branches))
        options = memo[branches]
        u = units[k]
        cuts = {lo, hi}
        for d1, (_, s1) in options.items():
            for d2, (_, s2) in options.items():
                if d1 < d2 and s1 > s2:
                    x = (d2 - d1) * u / (s1 - s2)
                    if lo < x < hi:
                        cuts.add(x)
        points = sorted(cuts)
        runs: list[list[Any]] = []
        for x, y in zip(points, points[1:]):
            d = choose_clusters(options, u, _inside(x, y))
            if runs and runs[-1][2] == d:
                runs[-1][1] = y
            else:
                runs.append([x, y, d])
        for x, y, d in runs:
            part = _merge(branches, options[d][0])
            rec(k - 1, part, x, y, [part, *suffix])

    rec(len(units) - 1, _singletons(len(a)), 0.0, math.inf, [])
    return out


def chain_madds(fixed: float, segment_madds: Sequence[float], chain: Sequence[Partition]) -> float:
    """MAdds of a tree given per segment: ``fixed`` (stem, shared layers, heads) plus each segment's MAdds
    times its number of groups.

    >>> chain_madds(10, [2, 3], [((0, 1),), ((0,), (1,))])
    18
    """
    return fixed + sum(c * len(part) for c, part in zip(segment_madds, chain, strict=True))


# ------------------------------------------------------------------ shared by the affinity comparators
def segment_costs(ctx: SearchContext) -> tuple[Any, float, list[float]]:
    """The run's MAdds table, the MAdds every tree has (stem, layers before the first branch point, heads)
    and the MAdds of one copy of each free segment."""
    from branchsweep.search.baselines import SegmentTable, _table

    table = _table(ctx)
    seg = SegmentTable.of(table, ctx.branch_points)
    return table, seg.stem + sum(seg.heads[t.name] for t in ctx.tasks), list(seg.layers)


def pretrain(ctx: SearchContext, tree: BranchConfig, iterations: int, batch_size: int, lr: float) -> torch.nn.Module:
    """``tree`` over ``ctx.spec`` trained with the retrain loop on the train split (``ctx.seed``, the run's
    device and precision, SGD with the project's poly schedule) and returned in eval mode. Its checkpoint
    goes to ``ctx.out_dir``; ``ctx.resume`` continues from it."""
    from branchsweep.network import BranchedNetwork
    from branchsweep.train import CHECKPOINT_NAME, train_network

    tcfg = TrainConfig(iterations=iterations, batch_size=batch_size, lr=lr, seed=ctx.seed, device=ctx.device,
                       amp=ctx.amp, channels_last=ctx.channels_last, progress=ctx.progress)
    tcfg.validate()
    torch.manual_seed(ctx.seed)
    model = BranchedNetwork(ctx.spec, ctx.tasks, tree)
    resume = ctx.resume and (Path(ctx.out_dir) / CHECKPOINT_NAME).is_file()
    train_network(model, ctx.data, ctx.tasks, tcfg, Path(ctx.out_dir), resume, ctx.on_step)
    return model.eval()


def held_out(ctx: SearchContext, count: int) -> Dataset:
    """``count`` examples of the validation split (all when it has fewer), drawn with ``ctx.seed``."""
    val = ctx.data.split("val", train=False)
    if count >= len(val):
        return val
    pick = torch.randperm(len(val), generator=torch.Generator().manual_seed(ctx.seed))[:count]
    return Subset(val, sorted(pick.tolist()))


def cache_key(ctx: SearchContext, method: str, **settings: Any) -> dict[str, Any]:
    """What an affinity depends on: method, data set (name, info, split sizes), tasks, backbone, seed,
    precision and the settings given."""
    return {"method": method, "data": ctx.data.name, "data_info": json.loads(json.dumps(ctx.data.info, default=str)),
            "split_sizes": [len(ctx.data.split(s, train=False)) for s in ("train", "val")],
            "tasks": [t.name for t in ctx.tasks], "spec": json.loads(json.dumps(ctx.spec.cache_key(), default=str)),
            "seed": ctx.seed, "amp": ctx.amp, **settings}


def cached(folder: str | None, key: dict[str, Any], compute: Callable[[], Any]) -> tuple[Any, bool]:
    """``compute()``'s JSON value, stored in ``folder`` under ``key`` (read back when stored: ``(value,
    True)``); concurrent callers with one key take turns. ``folder`` None: always computed."""
    if folder is None:
        return compute(), False
    text = json.dumps(key, sort_keys=True)
    path = Path(folder) / f"{key['method']}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            stored = read_json(path, "affinity cache")
            if isinstance(stored, dict) and stored.get("key") == json.loads(text):
                return stored["value"], True
        value = compute()
        write_json(path, {"key": json.loads(text), "value": value}, indent=None)
    return value, False


def export(ctx: SearchContext, config: BranchConfig, t0: float, log: dict[str, Any],
           info: dict[str, Any]) -> SearchResult:
    """Write ``branch_config.json`` and the search log (``log`` as the header, ``info`` as the result)."""
    out = Path(ctx.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / ARCH_FILE)
    info = {**info, "arch_hash": config.arch_hash()}
    log_path = write_text(out / LOG_NAME, json.dumps({"header": log}) + "\n"
                          + json.dumps({"final": True, **info, "branch_config": config.to_dict()}) + "\n")
    return SearchResult(config=config, log_path=log_path, wall_time_s=time.perf_counter() - t0, info=info)


def named_groups(names: Sequence[str], chain: Sequence[Partition]) -> list[list[list[str]]]:
    """Per segment, its groups as task names."""
    return [[[names[t] for t in g] for g in part] for part in chain]


def paper_pretraining(dataset: str, backbone: str) -> dict[str, Any]:
    """On the BMTAS paper's data sets the pre-training is its retraining (length, batch size per backbone).

    >>> paper_pretraining("nyud", "resnet50"), paper_pretraining("ltb-synthetic", "mlp")
    ({'pretrain_iterations': 20000, 'batch_size': 8}, {})
    """
    out: dict[str, Any] = {}
    if paper.paper_iterations(dataset) is not None:
        out["pretrain_iterations"] = paper.paper_iterations(dataset)
        if paper.paper_batch(backbone) is not None:
            out["batch_size"] = paper.paper_batch(backbone)
    return out


def check_positive(method: str, **values: float) -> None:
    """A one-line ConfigError for the first value that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{method}: --{name.replace('_', '-')} must be > 0, got {value}")


# ------------------------------------------------------------------------------------- the method
@torch.no_grad()
def per_example_losses(model: torch.nn.Module, dataset: Dataset, ctx: SearchContext,
                       batch_size: int) -> list[list[float]]:
    """Per task, the loss of every example of ``dataset`` (the task's own loss on a batch of one)."""
    runtime = ctx.runtime()
    runtime.prepare(model).eval()
    out: list[list[float]] = [[] for _ in ctx.tasks]
    for batch in runtime.loader(dataset, batch_size):
        batch = runtime.batch(batch)
        with runtime.autocast():
            preds = model(batch["image"])
        for t, task in enumerate(ctx.tasks):
            pred, label = preds[task.name].float(), batch[task.name]
            out[t] += [float(task.loss(pred[i:i + 1], label[i:i + 1])) for i in range(pred.shape[0])]
    return out


@dataclass
class FAFSConfig:
    """``fafs`` settings: exactly one of ``target_madds``, ``like`` or ``separation_weight``."""

    METHOD = "fafs"
    target_madds: float | None = setting(None, "MAdds to match (vanilla/random/fafs; bmn: the cap)")
    like: str | None = setting(None, "branch_config.json (or its JSON text) whose tree (permuted) or MAdds "
                                     "(vanilla/random/fafs; bmn: the cap) to use")
    separation_weight: float | None = setting(None, "Lu et al.'s weight of the separation term (fafs; larger: "
                                                    "more branches), instead of a MAdds target")
    difficulty_threshold: str = setting("mean", "an example is difficult for a task when its loss is above the "
                                                "task's mean or median (fafs)", choices=THRESHOLDS)
    pretrain_iterations: int = setting(200, "iterations of the network trained before measuring affinity "
                                            "(fafs: Shared, bmn: Single; paper data sets: the paper's retrain length)")
    batch_size: int = setting(8, "batch size")
    lr: float = setting(0.005, "learning rate")
    affinity_images: int = setting(500, "validation examples the affinity is measured on (fafs: 500, bmn: 50)")
    affinity_cache: str | None = setting(None, "folder keeping measured affinities (a sweep sets it), so several "
                                               "budgets share one pre-training (fafs/bmn)")

    def validate(self) -> None:
        from branchsweep.search.baselines import _check_target

        _check_target(self, ("target_madds", "like", "separation_weight"))
        if self.separation_weight is not None and not self.separation_weight >= 0:
            raise ConfigError(f"fafs: --separation-weight must be >= 0, got {self.separation_weight}")
        if self.difficulty_threshold not in THRESHOLDS:
            raise ConfigError(f"fafs: --difficulty-threshold must be one of {', '.join(THRESHOLDS)}, "
                              f"got {self.difficulty_threshold!r}")
        check_positive("fafs", pretrain_iterations=self.pretrain_iterations, batch_size=self.batch_size, lr=self.lr)
        if self.affinity_images < 2:
            raise ConfigError(f"fafs: --affinity-images must be >= 2, got {self.affinity_images}")


class FAFSMethod(SearchMethod):
    """Lu et al.'s Fully-Adaptive Feature Sharing: a pre-trained Shared network split greedily from the
    last branch point by task affinity, at a MAdds target (module docstring)."""

    name = "fafs"
    config_type = FAFSConfig

    def data_defaults(self, dataset: str, backbone: str, num_tasks: int) -> dict[str, Any]:
        return paper_pretraining(dataset, backbone)

    def sweep_settings(self, shared_dir: Path) -> dict[str, Any]:
        return {"affinity_cache": str(shared_dir / "affinity")}

    def affinity(self, cfg: FAFSConfig, ctx: SearchContext) -> tuple[np.ndarray, list[list[float]], bool]:
        """Task affinity of the pre-trained Shared network, its per-example losses, and whether they were cached."""
        names = [t.name for t in ctx.tasks]

        def compute() -> list[list[float]]:
            model = pretrain(ctx, BranchConfig.shared(names, ctx.spec.num_layers), cfg.pretrain_iterations,
                             cfg.batch_size, cfg.lr)
            return per_example_losses(model, held_out(ctx, cfg.affinity_images), ctx, max(cfg.batch_size, 16))

        key = cache_key(ctx, "fafs", pretrain_iterations=cfg.pretrain_iterations, batch_size=cfg.batch_size,
                        lr=cfg.lr, affinity_images=cfg.affinity_images)
        losses, hit = cached(cfg.affinity_cache, key, compute)
        return affinity_matrix(difficulty(losses, cfg.difficulty_threshold)), losses, hit

    def run(self, cfg: FAFSConfig, ctx: SearchContext) -> SearchResult:
        from branchsweep.search.baselines import _target
        from branchsweep.tree_space import from_segments

        t0 = time.perf_counter()
        names = [t.name for t in ctx.tasks]
        table, fixed, seg = segment_costs(ctx)
        target = _target(cfg, ctx, table)[0] if cfg.separation_weight is None else None
        affinity, losses, hit = self.affinity(cfg, ctx)
        total = sum(seg) or 1.0
        units = [c / total for c in seg]
        if cfg.separation_weight is not None:
            lo = hi = cfg.separation_weight
            chain = fafs_chain(affinity, units, lo)
        else:
            assert target is not None
            pieces = fafs_candidates(affinity, units)
            lo, hi, chain = min(pieces, key=lambda p: abs(chain_madds(fixed, seg, p[2]) - target))
        config = from_segments(names, ctx.branch_points, ctx.spec.num_layers, chain)
        madds = float(table.madds(config))
        info: dict[str, Any] = {
            "madds": madds, "target_madds": target, "madds_ratio": madds / target if target else None,
            "separation_weight": lo if cfg.separation_weight is not None else _inside(lo, hi),
            "separation_weight_range": [lo, hi if math.isfinite(hi) else None],
            "affinity": affinity.tolist(), "groups": named_groups(names, chain),
            "branch_points": list(ctx.branch_points or ()), "affinity_cached": hit,
            "examples": len(losses[0]) if losses else 0}
        log = {"method": "fafs", "config": to_dict(cfg), "tasks": names, "seed": ctx.seed,
               "segment_madds": seg, "unit_costs": units}
        return export(ctx, config, t0, log, info)


SEARCH_METHODS.register("fafs", FAFSMethod())
