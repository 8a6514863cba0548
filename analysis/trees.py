"""Branching trees as plain data, read from the branch-config JSON that a sweep stores in ``arch_json``.

Schema (version 1)::

    {"schema": "branchsweep.branch_config", "version": 1,
     "tasks": ["semseg", "depth", "normals"],
     "layers": [[["semseg", "depth", "normals"]], [["semseg"], ["depth", "normals"]]]}

One partition of the tasks per backbone layer (task names per group). Each layer's partition refines
the previous one (branches split, never merge), so a group's parent is the group of the previous layer
that contains its tasks. Reading it needs no model code: the sweep's ``arch_hash`` column identifies an
architecture and its ``arch_drawing`` column holds the text drawing; this module only gives the tree
shape for :func:`analysis.plots.tree_plot`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

from analysis.errors import AnalysisError

SCHEMA = "branchsweep.branch_config"
SCHEMA_VERSION = 1


class BranchTree(NamedTuple):
    """A branching tree: ``layers[l][g]`` are the task names of group ``g`` at layer ``l``;
    ``parents[l][g]`` is the index of its parent group at layer ``l - 1`` (``-1`` at layer 0)."""

    tasks: tuple[str, ...]
    layers: tuple[tuple[tuple[str, ...], ...], ...]
    parents: tuple[tuple[int, ...], ...]


def _is_names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def branch_tree(arch: Mapping | str, source: str = "architecture") -> BranchTree:
    """The tree of a branch-config (JSON text or its parsed object), with each group's parent.

    ``parent(l, g)`` = the group of layer ``l - 1`` holding the tasks of group ``g`` of layer ``l``; a
    group whose tasks sit in two groups of the layer above merges branches, which is an AnalysisError
    (so is anything else that does not follow the schema), named by ``source``.

    >>> tree = branch_tree('{"schema": "branchsweep.branch_config", "version": 1, "tasks": ["a", "b", "c"],'
    ...                    ' "layers": [[["a", "b", "c"]], [["a", "b"], ["c"]], [["a"], ["b"], ["c"]]]}')
    >>> tree.layers[1]
    (('a', 'b'), ('c',))
    >>> tree.parents
    ((-1,), (0, 0), (0, 0, 1))
    """
    if isinstance(arch, str):
        try:
            data = json.loads(arch)
        except json.JSONDecodeError as err:
            raise AnalysisError(f"{source}: malformed JSON ({err.msg} at line {err.lineno})") from None
    else:
        data = arch
    if not isinstance(data, Mapping):
        raise AnalysisError(f"{source}: expected a JSON object")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise AnalysisError(f"{source}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    if data.get("version") != SCHEMA_VERSION:
        raise AnalysisError(f"{source}: unsupported version {data.get('version')!r} (this reads {SCHEMA_VERSION})")
    tasks, layers = data.get("tasks"), data.get("layers")
    if not _is_names(tasks) or not tasks or len(set(tasks)) != len(tasks):
        raise AnalysisError(f"{source}: 'tasks' must be a non-empty list of distinct task names")
    if not isinstance(layers, list) or not layers or not all(
        isinstance(part, list) and all(_is_names(g) for g in part) for part in layers
    ):
        raise AnalysisError(f"{source}: 'layers' must be a non-empty list (per layer) of lists (groups) of task names")
    out_layers: list[tuple[tuple[str, ...], ...]] = []
    parents: list[tuple[int, ...]] = []
    above: dict[str, int] = {}  # task -> its group index in the previous layer
    for number, part in enumerate(layers, start=1):
        groups = tuple(tuple(g) for g in part)
        if any(not g for g in groups) or sorted(t for g in groups for t in g) != sorted(tasks):
            raise AnalysisError(f"{source}: layer {number} must put each task ({', '.join(tasks)}) in exactly one group")
        ups = [{above.get(t, -1) for t in g} for g in groups]
        merged = next((g for g, up in zip(groups, ups) if len(up) > 1), None)
        if merged is not None:
            raise AnalysisError(
                f"{source}: layer {number} merges branches ({' '.join(merged)} are apart in layer {number - 1}); "
                "branches may split, never merge"
            )
        out_layers.append(groups)
        parents.append(tuple(up.pop() for up in ups))
        above = {t: i for i, g in enumerate(groups) for t in g}
    return BranchTree(tuple(tasks), tuple(out_layers), tuple(parents))
