"""The papers' baselines at matched cost, as search methods: ``vanilla``, ``permuted`` and ``random``.

Both papers judge a search by architectures of the *same* MAdds that were not searched:

* ``vanilla`` (BMTAS Table 3 "Vanilla"): all tasks share layers ``[0, k)``, each task has its own
  branch from ``k`` on; ``k`` is chosen so the MAdds come closest to a target (``target_madds``, or
  the MAdds of the tree at ``like``), or given (``branch_at``). Ties go to the smaller ``k``.
* ``permuted`` (BMTAS Table 3 "Permutations"): the tree at ``like`` with its task-to-branch assignment
  permuted. Its MAdds are those of ``like`` (a permutation changes which tasks share, not how many
  blocks run). :func:`distinct_permutations` lists ``K`` distinct seeded permutations; a run exports
  the ``index``-th, so ``K`` trials with ``index`` 0..K-1 and one seed give ``K`` distinct trees.
* ``random`` (BMTAS Figure 2 "random structures"; Learning to Branch's random groupings): a random
  tree of the same space (each layer's partition refines the previous one) whose MAdds lie within
  ``tolerance`` (relative) of the target, by rejection sampling from :func:`random_tree`.

None searches anything (``space_type`` is None: a sweep adds them explicitly, not through Optuna): they are a
sweep's controls (``control_rank``), and :meth:`~branchsweep.search.base.SearchMethod.control_trials` says which
trials each adds for a front point of the searched methods (``permuted``: ``permutations`` distinct permutations
of its tree; ``vanilla``, ``random``: one tree at its MAdds). ``like``
is a path to a ``branch_config.json`` or the JSON text itself (so sweeps can pass it inline). The
search seed (``SearchContext.seed``) seeds ``permuted`` and ``random``.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from branchsweep.arch import BranchConfig, Partition, _canonical
from branchsweep.errors import ConfigError
from branchsweep.search.base import (
    SEARCH_METHODS,
    ControlTrial,
    SearchContext,
    SearchMethod,
    SearchResult,
    setting,
)

ARCH_FILE = "branch_config.json"
#: Up to this many tasks every permutation is enumerated (8! = 40320), so "fewer if fewer exist" is exact.
ENUMERATE_MAX_TASKS = 8
#: Up to this many group-count sequences :func:`random_tree_near` checks exactly whether its band is reachable.
EXACT_CHECK_MAX = 200_000


# --------------------------------------------------------------------------------------------- inputs
def load_like(like: str) -> BranchConfig:
    """The tree given by ``like``: JSON text (starting with ``{``) or the path of a branch-config file.

    >>> text = BranchConfig.shared(["a", "b"], 2).to_json()
    >>> load_like(text).groups(0)
    [['a', 'b']]
    """
    text = like.strip()
    if text.startswith("{"):
        return BranchConfig.from_json(text, source="like (inline JSON)")
    try:
        return BranchConfig.load(text)
    except ConfigError as err:
        raise ConfigError(f"like: {err}") from None


def _fitted(config: BranchConfig, ctx: SearchContext) -> BranchConfig:
    """``config`` checked against the run's tasks and backbone depth, tasks in the run's order."""
    names = [t.name for t in ctx.tasks]
    try:
        config.check_tasks(names, ctx.spec.num_layers)
    except ConfigError as err:
        raise ConfigError(f"like: {err}") from None
    return config.reorder(names)


def _check_target(cfg: Any, options: tuple[str, ...]) -> None:
    given = [name for name in options if getattr(cfg, name) is not None]
    flags = ", ".join("--" + name.replace("_", "-") for name in options)
    if len(given) != 1:
        what = "none" if not given else ", ".join("--" + g.replace("_", "-") for g in given)
        raise ConfigError(f"{cfg.METHOD}: give exactly one of {flags} (got {what})")
    if getattr(cfg, "target_madds", None) is not None and not cfg.target_madds > 0:
        raise ConfigError(f"{cfg.METHOD}: --target-madds must be > 0, got {cfg.target_madds}")


def _target(cfg: Any, ctx: SearchContext, table: Any) -> tuple[float, BranchConfig | None]:
    """The MAdds target: ``target_madds``, or the MAdds of the tree at ``like`` (returned as well)."""
    if cfg.target_madds is not None:
        return float(cfg.target_madds), None
    like = _fitted(load_like(cfg.like), ctx)
    return float(table.madds(like)), like


def _table(ctx: SearchContext) -> Any:
    from branchsweep.madds import madds_table

    return madds_table(ctx.spec, ctx.tasks, ctx.cache_dir)


def _export(ctx: SearchContext, config: BranchConfig, t0: float, info: dict[str, Any]) -> SearchResult:
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    config.save(ctx.out_dir / ARCH_FILE)
    return SearchResult(config=config, log_path=None, wall_time_s=time.perf_counter() - t0,
                        info={**info, "arch_hash": config.arch_hash()})


def _at_madds(name: str, row: Mapping[str, Any]) -> list[ControlTrial]:
    """The one control trial of ``name`` at a front point's MAdds (``vanilla``, ``random``)."""
    return [ControlTrial(name, {"target_madds": float(row["madds"])})]


# -------------------------------------------------------------------------------------------- vanilla
def vanilla_tree(tasks: Sequence[str], num_layers: int, branch_at: int) -> BranchConfig:
    """All tasks share layers ``[0, branch_at)``; from ``branch_at`` on each task has its own branch.

    ``branch_at`` 0 is the Single model, ``num_layers`` the Shared one.

    >>> vanilla_tree(["a", "b"], 3, 1).draw()
    'L1 [a b]\\n├─ L2-L3 [a]\\n└─ L2-L3 [b]'
    """
    if not 0 <= branch_at <= num_layers:
        raise ConfigError(f"vanilla: --branch-at must be in [0, {num_layers}], got {branch_at}")
    names = list(tasks)
    return BranchConfig.from_groups(names, [[names]] * branch_at + [[[n] for n in names]] * (num_layers - branch_at))


def vanilla_layers(num_layers: int, points: Sequence[int] | None = None) -> list[int]:
    """The ``k`` a vanilla tree may branch at: the branch points (default every layer) and ``num_layers``
    (Shared)."""
    from branchsweep.tree_space import check_branch_points

    return [*check_branch_points(points, num_layers), num_layers]


def closest_branch_layer(table: Any, tasks: Sequence[str], target: float, points: Sequence[int] | None = None) -> int:
    """The ``k`` (a branch point, or Shared) whose vanilla tree's MAdds are closest to ``target`` (ties: the
    smaller ``k``).

    MAdds fall as ``k`` grows (each shared layer runs once instead of ``T`` times).
    """
    num_layers = len(table.layers)
    options = vanilla_layers(num_layers, points)
    costs = {k: table.madds(vanilla_tree(tasks, num_layers, k)) for k in options}
    return min(options, key=lambda k: (abs(costs[k] - target), k))


@dataclass
class VanillaConfig:
    """``vanilla`` settings: exactly one of ``target_madds``, ``like`` or ``branch_at``."""

    METHOD = "vanilla"
    target_madds: float | None = setting(None, "MAdds to match (vanilla/random)")
    like: str | None = setting(None, "branch_config.json (or its JSON text) whose tree (permuted) or MAdds "
                                     "(vanilla/random) to use")
    branch_at: int | None = setting(None, "first layer where every task has its own branch (vanilla)")

    def validate(self) -> None:
        _check_target(self, ("target_madds", "like", "branch_at"))
        if self.branch_at is not None and self.branch_at < 0:
            raise ConfigError(f"vanilla: --branch-at must be >= 0, got {self.branch_at}")


class VanillaMethod(SearchMethod):
    """BMTAS "Vanilla": one branching point for all tasks, placed to match a MAdds target."""

    name = "vanilla"
    config_type = VanillaConfig
    control_rank = 1

    def control_trials(self, row: Mapping[str, Any], count: int, seed: int) -> list[ControlTrial]:
        return _at_madds(self.name, row)

    def run(self, cfg: VanillaConfig, ctx: SearchContext) -> SearchResult:
        t0 = time.perf_counter()
        names = [t.name for t in ctx.tasks]
        table = _table(ctx)
        info: dict[str, Any] = {}
        if cfg.branch_at is not None:
            k = cfg.branch_at
            allowed = vanilla_layers(ctx.spec.num_layers, ctx.branch_points)
            if 0 <= k <= ctx.spec.num_layers and k not in allowed:
                raise ConfigError(f"vanilla: --branch-at {k} is not a branch point (allowed: "
                                  f"{', '.join(map(str, allowed))})")
        else:
            target, _ = _target(cfg, ctx, table)
            k = closest_branch_layer(table, names, target, ctx.branch_points)
            info["target_madds"] = target
        config = vanilla_tree(names, ctx.spec.num_layers, k)
        return _export(ctx, config, t0, {**info, "branch_at": k, "madds": table.madds(config)})


# ------------------------------------------------------------------------------------------- permuted
def permute_tree(config: BranchConfig, perm: Sequence[int]) -> BranchConfig:
    """The same tree with task ``config.tasks[i]``'s place taken by task ``config.tasks[perm[i]]``.

    >>> tree = BranchConfig.from_groups("abc", [[["a", "b", "c"]], [["a", "b"], ["c"]]])
    >>> permute_tree(tree, [2, 1, 0]).groups(1)
    [['a'], ['b', 'c']]
    """
    if sorted(perm) != list(range(config.num_tasks)):
        raise ValueError(f"{list(perm)} is not a permutation of {config.num_tasks} tasks")
    return BranchConfig(config.tasks, tuple(tuple(tuple(perm[t] for t in g) for g in part)
                                            for part in config.partitions))


def _distinct_layers(config: BranchConfig) -> tuple[Partition, ...]:
    """The partitions where the tree changes (a permutation maps runs of equal layers to runs)."""
    parts = config.partitions
    return tuple(p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1])


def _key(layers: tuple[Partition, ...], perm: Sequence[int]) -> tuple:
    return tuple(_canonical([[perm[t] for t in g] for g in part]) for part in layers)


def distinct_permutations(config: BranchConfig, k: int, seed: int) -> list[BranchConfig]:
    """``k`` distinct trees obtained by permuting ``config``'s task assignment, none equal to ``config``.

    Permutations that give a grouping already seen (the identity, swaps inside a group, swaps of two
    identical subtrees) are skipped; fewer than ``k`` come back when fewer exist. Up to
    ``ENUMERATE_MAX_TASKS`` tasks every distinct tree is enumerated and ``k`` of them drawn with
    ``random.Random(seed)``; beyond, permutations are drawn at random (``200·k`` tries at most).

    >>> tree = BranchConfig.from_groups("abcd", [[["a", "b", "c", "d"]], [["a", "b"], ["c", "d"]]])
    >>> [t.groups(1) for t in distinct_permutations(tree, 5, seed=0)]  # only 2 other pairings exist
    [[['a', 'c'], ['b', 'd']], [['a', 'd'], ['b', 'c']]]
    """
    return [permute_tree(config, p) for p in distinct_permutation_indices(config, k, seed)]


def distinct_permutation_indices(config: BranchConfig, k: int, seed: int) -> list[tuple[int, ...]]:
    """The permutations behind :func:`distinct_permutations` (``perm[i]``: the task taking task ``i``'s place)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    layers = _distinct_layers(config)
    n = config.num_tasks
    seen = {_key(layers, range(n))}
    rng = random.Random(seed)
    if n <= ENUMERATE_MAX_TASKS:
        found: list[tuple[int, ...]] = []
        for perm in itertools.permutations(range(n)):
            key = _key(layers, perm)
            if key not in seen:
                seen.add(key)
                found.append(perm)
        return [found[i] for i in sorted(rng.sample(range(len(found)), min(k, len(found))))]
    picks: list[tuple[int, ...]] = []
    for _ in range(200 * k):
        if len(picks) == k:
            break
        perm = list(range(n))
        rng.shuffle(perm)
        key = _key(layers, perm)
        if key not in seen:
            seen.add(key)
            picks.append(tuple(perm))
    return picks


def describe_permutation(tasks: Sequence[str], perm: Sequence[int]) -> str:
    """Which task took whose place (unchanged places left out).

    >>> describe_permutation(["sal", "depth", "edge"], [1, 0, 2])
    'sal<-depth,depth<-sal'
    """
    return ",".join(f"{tasks[i]}<-{tasks[p]}" for i, p in enumerate(perm) if p != i)


@dataclass
class PermutedConfig:
    """``permuted`` settings: the tree (``like``), how many distinct permutations, which one to export."""

    METHOD = "permuted"
    like: str | None = setting(None, "branch_config.json (or its JSON text) whose tree (permuted) or MAdds "
                                     "(vanilla/random) to use")
    permutations: int = setting(5, "distinct permutations drawn (BMTAS Table 3: 5)")
    index: int = setting(0, "which drawn tree to export (0-based; permuted/random)")

    def validate(self) -> None:
        if self.like is None:
            raise ConfigError("permuted: give --like (the tree to permute)")
        if self.permutations < 1:
            raise ConfigError(f"permuted: --permutations must be >= 1, got {self.permutations}")
        if not 0 <= self.index < self.permutations:
            raise ConfigError(f"permuted: --index must be in [0, {self.permutations}), got {self.index}")


class PermutedMethod(SearchMethod):
    """BMTAS "Permutations": the found tree with its task-to-branch assignment permuted."""

    name = "permuted"
    config_type = PermutedConfig
    control_rank = 0

    def control_trials(self, row: Mapping[str, Any], count: int, seed: int) -> list[ControlTrial]:
        """``count`` distinct permutations of the front point's tree (fewer when fewer exist), drawn with ``seed``."""
        if count <= 0:
            return []
        like = str(row["arch_json"])
        found = len(distinct_permutation_indices(BranchConfig.from_json(like), count, seed=seed))
        return [ControlTrial(f"{self.name} {i + 1}", {"like": like, "permutations": count, "index": i})
                for i in range(found)]

    def run(self, cfg: PermutedConfig, ctx: SearchContext) -> SearchResult:
        t0 = time.perf_counter()
        like = _fitted(load_like(cfg.like), ctx)  # type: ignore[arg-type]
        from branchsweep.tree_space import check_respects

        check_respects(like, ctx.branch_points, "permuted: --like")  # a permutation splits where its tree does
        perms = distinct_permutation_indices(like, cfg.permutations, ctx.seed)
        if not perms:
            raise ConfigError("permuted: every task assignment of the --like tree gives the same grouping "
                              "(e.g. a Single, Shared or vanilla tree); nothing to permute")
        if cfg.index >= len(perms):
            raise ConfigError(f"permuted: the tree has only {len(perms)} distinct permutation(s); "
                              f"--index {cfg.index} does not exist")
        config = permute_tree(like, perms[cfg.index])
        madds = _table(ctx).madds(config)
        return _export(ctx, config, t0, {"madds": madds, "target_madds": float(madds), "like_hash": like.arch_hash(),
                                         "permutation": describe_permutation(like.tasks, perms[cfg.index]),
                                         "distinct": len(perms)})


# --------------------------------------------------------------------------------------------- random
def _random_partitions(n: int, num_layers: int, rng: random.Random) -> list[list[list[int]]]:
    """Per layer the groups (task indices) of a random tree (see :func:`random_tree`)."""
    # split[g] = the layer at which group g splits; children are drawn from [split, num_layers].
    groups: list[list[int]] = []  # final leaves with their lifetime
    spans: list[tuple[list[int], int, int]] = []  # (members, first layer, last layer + 1)

    def grow(members: list[int], start: int) -> None:
        stop = rng.randint(start, num_layers) if len(members) > 1 else num_layers
        spans.append((members, start, stop))
        if stop == num_layers:
            groups.append(members)
            return
        shuffled = list(members)
        rng.shuffle(shuffled)
        cut = rng.randint(1, len(shuffled) - 1)
        grow(sorted(shuffled[:cut]), stop)
        grow(sorted(shuffled[cut:]), stop)

    grow(list(range(n)), 0)
    layers: list[list[list[int]]] = [[] for _ in range(num_layers)]
    for members, start, stop in spans:
        for layer in range(start, stop):
            layers[layer].append(members)
    return layers


def random_tree(tasks: Sequence[str], num_layers: int, rng: random.Random) -> BranchConfig:
    """A random tree of the branching space: every layer's partition refines the previous one.

    A group of tasks (first: all tasks, from layer 0) keeps going until a layer drawn uniformly from
    ``[start, num_layers]`` (``num_layers``: never splits); there it splits in two at random and each part
    does the same from that layer. Several splits at one layer give multi-way branchings, so every tree of
    the space (Single and Shared included) can be drawn.

    >>> tree = random_tree(["a", "b", "c"], 4, random.Random(1))
    >>> all(len(tree.partitions[l]) >= len(tree.partitions[l - 1]) for l in range(1, 4))
    True
    """
    if num_layers < 1:
        raise ValueError("a tree needs at least one layer")
    layers = _random_partitions(len(tasks), num_layers, rng)
    return BranchConfig(tuple(tasks), tuple(tuple(tuple(g) for g in part) for part in layers))


@dataclass(frozen=True)
class SegmentTable:
    """A MAdds table with one "layer" per free segment of a branch-point space (the shared layers before
    the first branch point are folded into the stem): a tree's MAdds are additive over segments too."""

    stem: float
    layers: tuple[float, ...]
    heads: dict[str, float]

    @classmethod
    def of(cls, table: Any, points: Sequence[int] | None) -> SegmentTable:
        from branchsweep.tree_space import segments

        segs = segments(points, len(table.layers))
        return cls(table.stem + sum(table.layers[:segs[0][0]]),
                   tuple(sum(table.layers[s:e]) for s, e in segs), dict(table.heads))


def random_tree_in(table: Any, tasks: Sequence[str], target: float, tol: float, rng: random.Random,
                   points: Sequence[int] | None = None, max_tries: int = 20000) -> BranchConfig:
    """:func:`random_tree_near` in the space of trees that split only at ``points`` (None: every layer)."""
    from branchsweep.tree_space import from_segments

    coarse = random_tree_near(SegmentTable.of(table, points), tasks, target, tol, rng, max_tries)
    return from_segments(list(tasks), points, len(table.layers), coarse.partitions)


def random_tree_near(table: Any, tasks: Sequence[str], target: float, tol: float, rng: random.Random,
                     max_tries: int = 20000) -> BranchConfig:
    """A :func:`random_tree` whose MAdds are within ``tol·target`` of ``target`` (rejection sampling).

    ``table`` prices a tree (:class:`branchsweep.madds.MaddsTable`, or anything with ``stem``, ``layers``,
    ``heads``). Raises :class:`ConfigError` when no tree of the space lies in the band (outside Shared ..
    Single, or between the discrete values) or none was drawn within ``max_tries``.
    """
    num_layers = len(table.layers)
    fixed = table.stem + sum(table.heads[t] for t in tasks)
    lo, hi = fixed + sum(table.layers), fixed + len(tasks) * sum(table.layers)
    band = (target * (1 - tol), target * (1 + tol))

    def fmt(x: float) -> str:
        from branchsweep.madds import format_madds

        return format_madds(x)

    if band[1] < lo or band[0] > hi:
        raise ConfigError(f"random: no tree has MAdds within {tol:.0%} of {fmt(target)}: the space spans "
                          f"{fmt(lo)} (Shared) to {fmt(hi)} (Single)")
    if math.comb(num_layers + len(tasks) - 1, num_layers) <= EXACT_CHECK_MAX:
        # A tree's MAdds depend only on its (non-decreasing) group counts per layer, and every such
        # sequence is some tree's: when none lands in the band, no draw ever will.
        if not any(band[0] <= fixed + sum(c * k for c, k in zip(table.layers, counts)) <= band[1]
                   for counts in itertools.combinations_with_replacement(range(1, len(tasks) + 1), num_layers)):
            raise ConfigError(f"random: no tree has MAdds within {tol:.0%} of {fmt(target)} (the space's MAdds "
                              f"are discrete; raise --tolerance)")
    for _ in range(max_tries):
        layers = _random_partitions(len(tasks), num_layers, rng)
        madds = fixed + sum(c * len(layers[i]) for i, c in enumerate(table.layers))
        if band[0] <= madds <= band[1]:
            return BranchConfig(tuple(tasks), tuple(tuple(tuple(g) for g in part) for part in layers))
    raise ConfigError(f"random: no tree within {tol:.0%} of {fmt(target)} in {max_tries} draws "
                      f"(raise --tolerance or --max-tries)")


@dataclass
class RandomConfig:
    """``random`` settings: exactly one of ``target_madds`` or ``like``; ``tolerance`` relative."""

    METHOD = "random"
    target_madds: float | None = setting(None, "MAdds to match (vanilla/random)")
    like: str | None = setting(None, "branch_config.json (or its JSON text) whose tree (permuted) or MAdds "
                                     "(vanilla/random) to use")
    tolerance: float = setting(0.05, "relative MAdds tolerance of a random tree (random)")
    index: int = setting(0, "which drawn tree to export (0-based; permuted/random)")
    max_tries: int = setting(20000, "random trees drawn at most per accepted tree (random)")

    def validate(self) -> None:
        _check_target(self, ("target_madds", "like"))
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"random: --tolerance must be in (0, 1), got {self.tolerance}")
        if self.index < 0:
            raise ConfigError(f"random: --index must be >= 0, got {self.index}")
        if self.max_tries < 1:
            raise ConfigError(f"random: --max-tries must be >= 1, got {self.max_tries}")


class RandomMethod(SearchMethod):
    """Random structures of the same space at (nearly) the same MAdds."""

    name = "random"
    config_type = RandomConfig
    control_rank = 2

    def control_trials(self, row: Mapping[str, Any], count: int, seed: int) -> list[ControlTrial]:
        return _at_madds(self.name, row)

    def run(self, cfg: RandomConfig, ctx: SearchContext) -> SearchResult:
        t0 = time.perf_counter()
        names = [t.name for t in ctx.tasks]
        table = _table(ctx)
        target, like = _target(cfg, ctx, table)
        rng = random.Random(ctx.seed)
        seen: set[BranchConfig] = {like} if like is not None else set()
        config = None
        for _ in range(cfg.index + 1):  # the index-th distinct tree (other than ``like``) of the seeded stream
            for _ in range(1000):
                config = random_tree_in(table, names, target, cfg.tolerance, rng, ctx.branch_points, cfg.max_tries)
                if config not in seen:
                    break
            else:
                raise ConfigError(f"random: fewer than {cfg.index + 1} distinct trees lie within "
                                  f"{cfg.tolerance:.0%} of the target")
            seen.add(config)
        assert config is not None
        madds = table.madds(config)
        return _export(ctx, config, t0, {"target_madds": target, "madds": madds,
                                         "madds_ratio": madds / target if target else math.nan})


def matched_baselines(like: BranchConfig | str, permutations: int = 5, vanilla: bool = True,
                      random_trees: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """``(method, search settings)`` of the baselines of one searched tree, for a sweep to add as trials:
    ``permutations`` permuted trees (``index`` 0..K-1, one seed gives K distinct trees), the vanilla tree
    and ``random_trees`` random trees at its MAdds. ``like`` travels inline, so trials need no files.

    >>> tree = BranchConfig.from_groups("abc", [[["a", "b", "c"]], [["a", "b"], ["c"]]])
    >>> [(m, s.get("index")) for m, s in matched_baselines(tree, permutations=2, random_trees=1)]
    [('permuted', 0), ('permuted', 1), ('vanilla', None), ('random', 0)]
    """
    text = like.to_json(indent=None) if isinstance(like, BranchConfig) else like
    out: list[tuple[str, dict[str, Any]]] = [
        ("permuted", {"like": text, "permutations": permutations, "index": i}) for i in range(permutations)]
    if vanilla:
        out.append(("vanilla", {"like": text}))
    out += [("random", {"like": text, "index": i}) for i in range(random_trees)]
    return out


SEARCH_METHODS.register("vanilla", VanillaMethod())
SEARCH_METHODS.register("permuted", PermutedMethod())
SEARCH_METHODS.register("random", RandomMethod())
