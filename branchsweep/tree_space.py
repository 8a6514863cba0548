"""The space of trees a search may export: branch points, and every tree of a space.

A **branch point** ``p`` is a layer boundary at which branches may split: the start of layer ``p``
(0-based; ``0`` is the input, so a tree that splits at 0 gives some tasks their own stem). Between two
branch points the partition of the tasks stays the same, and every layer before the first branch point
is shared by all tasks. The default, every layer (``0, 1, …, L-1``), is the unrestricted space.

``--branch-points 1,3,5`` on a 7-layer backbone gives three free *segments*, layers ``[1, 3)``,
``[3, 5)`` and ``[5, 7)``, after a shared layer 0; with 4 tasks that space holds 154 trees
(:func:`count_trees`). Every search method and baseline takes the same setting
(:attr:`branchsweep.search.base.SearchContext.branch_points`) and never exports a tree that splits
elsewhere (:func:`respects`).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator, Sequence

from branchsweep.arch import BranchConfig, Partition, _canonical, _is_refinement
from branchsweep.errors import ConfigError


def parse_branch_points(text: str) -> tuple[int, ...]:
    """``"1,3,5"`` -> ``(1, 3, 5)`` (argparse type; ``"all"`` -> ``()``, meaning every layer).

    >>> parse_branch_points("5, 1,3")
    (1, 3, 5)
    """
    text = text.strip()
    if text in ("", "all"):
        return ()
    try:
        points = sorted({int(t) for t in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--branch-points expects comma-separated layer indices, got {text!r}") from None
    return tuple(points)


def check_branch_points(points: Sequence[int] | None, num_layers: int) -> tuple[int, ...]:
    """The branch points of a ``num_layers``-layer backbone, sorted; None or empty: every layer.

    >>> check_branch_points(None, 3), check_branch_points([2, 0], 3)
    ((0, 1, 2), (0, 2))
    """
    if not points:
        return tuple(range(num_layers))
    out = sorted({int(p) for p in points})
    bad = [p for p in out if not 0 <= p < num_layers]
    if bad:
        raise ConfigError(f"branch points must be layer indices in [0, {num_layers - 1}] "
                          f"(the backbone has {num_layers} branchable layers), got {bad[0]}")
    return tuple(out)


def segments(points: Sequence[int] | None, num_layers: int) -> list[tuple[int, int]]:
    """The free segments ``[start, end)``: one per branch point, up to the next one (or the last layer).

    >>> segments([1, 3, 5], 7)
    [(1, 3), (3, 5), (5, 7)]
    """
    pts = check_branch_points(points, num_layers)
    return [(p, pts[i + 1] if i + 1 < len(pts) else num_layers) for i, p in enumerate(pts)]


def segment_of_layer(points: Sequence[int] | None, num_layers: int) -> list[int | None]:
    """Per layer, the index of its segment, or None for the shared layers before the first branch point.

    >>> segment_of_layer([1, 3], 4)
    [None, 0, 0, 1]
    """
    out: list[int | None] = [None] * num_layers
    for i, (start, end) in enumerate(segments(points, num_layers)):
        for layer in range(start, end):
            out[layer] = i
    return out


def violation(config: BranchConfig, points: Sequence[int] | None) -> str | None:
    """Why ``config`` splits off the branch points (a phrase), or None when it respects them."""
    pts = set(check_branch_points(points, config.num_layers))
    if 0 not in pts and config.num_groups(0) > 1:
        return "it splits at the input (layer 0 is not a branch point)"
    for layer in range(1, config.num_layers):
        if layer not in pts and config.partitions[layer] != config.partitions[layer - 1]:
            return f"it splits at layer {layer}, which is not a branch point"
    return None


def respects(config: BranchConfig, points: Sequence[int] | None) -> bool:
    """True when ``config`` splits only at ``points``.

    >>> tree = BranchConfig.from_groups(["a", "b"], [[["a", "b"]], [["a"], ["b"]], [["a"], ["b"]]])
    >>> respects(tree, [1]), respects(tree, [2]), respects(tree, None)
    (True, False, True)
    """
    return violation(config, points) is None


def check_respects(config: BranchConfig, points: Sequence[int] | None, who: str) -> BranchConfig:
    """``config``, or a :class:`ConfigError` saying that ``who`` produced a tree off the branch points."""
    why = violation(config, points)
    if why is not None:
        raise ConfigError(f"{who}: the tree does not respect --branch-points {','.join(map(str, points or []))}: {why}")
    return config


def from_segments(tasks: Sequence[str], points: Sequence[int] | None, num_layers: int,
                  parts: Sequence[Partition]) -> BranchConfig:
    """The tree with partition ``parts[i]`` (task indices) on segment ``i`` and one group before the first."""
    segs = segments(points, num_layers)
    if len(parts) != len(segs):
        raise ConfigError(f"{len(parts)} partitions for {len(segs)} segments")
    everyone: Partition = (tuple(range(len(tasks))),)
    layers = [everyone] * segs[0][0]
    for (start, end), part in zip(segs, parts, strict=True):
        layers += [part] * (end - start)
    return BranchConfig(tuple(tasks), tuple(layers))


def segment_partitions(config: BranchConfig, points: Sequence[int] | None) -> list[Partition]:
    """The partition of each segment of ``config`` (its first layer's), the inverse of :func:`from_segments`."""
    return [config.partitions[start] for start, _ in segments(points, config.num_layers)]


def _partitions(items: tuple[int, ...]) -> Iterator[list[tuple[int, ...]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [(first, *part[i])] + part[i + 1:]
        yield [(first,)] + part


def refinements(part: Partition) -> Iterator[Partition]:
    """Every partition that refines ``part`` (``part`` itself included), canonical."""
    def rec(i: int) -> Iterator[list[tuple[int, ...]]]:
        if i == len(part):
            yield []
            return
        for sub in _partitions(tuple(part[i])):
            for tail in rec(i + 1):
                yield sub + tail
    for groups in rec(0):
        yield _canonical(groups)


def enumerate_trees(tasks: Sequence[str], points: Sequence[int] | None, num_layers: int) -> list[BranchConfig]:
    """Every distinct tree of ``tasks`` splitting only at ``points``, from Shared to the finest.

    >>> len(enumerate_trees(["a", "b", "c", "d"], [1, 3, 5], 7))
    154
    """
    n = len(tasks)
    segs = segments(points, num_layers)
    out: list[BranchConfig] = []

    def rec(prefix: list[Partition]) -> None:
        if len(prefix) == len(segs):
            out.append(from_segments(tasks, points, num_layers, prefix))
            return
        parent = prefix[-1] if prefix else (tuple(range(n)),)
        for part in refinements(parent):
            assert _is_refinement(part, parent)
            rec(prefix + [part])

    rec([])
    return out


@functools.cache
def stirling2(n: int, k: int) -> int:
    """Stirling numbers of the second kind ``S(n, k)`` (partitions of ``n`` items into ``k`` blocks)."""
    if n == k:
        return 1
    if k == 0 or k > n:
        return 0
    return k * stirling2(n - 1, k) + stirling2(n - 1, k - 1)


def count_trees(num_tasks: int, num_segments: int) -> int:
    """The number of trees of ``num_tasks`` tasks with ``num_segments`` free segments, in closed form.

    A tree is a chain of partitions, each refining the previous one; choosing the finest partition first
    (``m`` blocks: ``S(n, m)`` ways) leaves a chain of one segment fewer on its ``m`` blocks, so
    ``N_k(n) = Σ_m S(n, m) N_{k-1}(m)`` with ``N_0 = 1``: ``N_1`` is the Bell number.

    >>> [count_trees(4, k) for k in range(4)]
    [1, 15, 60, 154]
    """
    if num_segments == 0:
        return 1
    return sum(stirling2(num_tasks, m) * count_trees(m, num_segments - 1) for m in range(1, num_tasks + 1))
