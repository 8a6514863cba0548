"""``BranchConfig``: the contract between search, training, pricing and analysis.

A branched multi-task network over ``L`` backbone layers is described by one *partition* of the task
set per layer: tasks in the same group share that layer's block. Going deeper a partition may only
*refine* the previous one (branches split, never merge). Both searches export this format, and
``BranchedNetwork``, the MAdds table, the drawings and the reports consume it.

JSON form (schema version 1)::

    {"schema": "branchsweep.branch_config", "version": 1,
     "tasks": ["semseg", "depth", "normals"],
     "layers": [[["semseg", "depth", "normals"]], [["semseg"], ["depth", "normals"]]]}

Groups are stored in a canonical order (tasks in the order of ``tasks``, groups by their first task), so
two configs describing the same tree compare and hash equal however their branches were labelled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from branchsweep.errors import ConfigError

SCHEMA = "branchsweep.branch_config"
SCHEMA_VERSION = 1

Partition = tuple[tuple[int, ...], ...]


def _canonical(groups: Sequence[Sequence[int]]) -> Partition:
    return tuple(sorted((tuple(sorted(g)) for g in groups), key=lambda g: g[0]))


def _is_refinement(finer: Partition, coarser: Partition) -> bool:
    """True when every group of ``finer`` lies inside one group of ``coarser``."""
    owner = {t: i for i, g in enumerate(coarser) for t in g}
    return all(len({owner[t] for t in g}) == 1 for g in finer)


@dataclass(frozen=True)
class BranchConfig:
    """One partition of the tasks per backbone layer, each refining the previous one.

    ``partitions[l]`` holds groups of task *indices* into ``tasks``. Build it with the constructors
    (:meth:`single`, :meth:`shared`, :meth:`from_op_indices`, :meth:`from_parents`,
    :meth:`from_groups`) rather than by hand: they validate and canonicalise.
    """

    tasks: tuple[str, ...]
    partitions: tuple[Partition, ...]

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("a branch config needs at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            dup = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
            raise ConfigError(f"task names repeat in the branch config: {', '.join(dup)}")
        if not self.partitions:
            raise ConfigError("a branch config needs at least one layer")
        everyone = set(range(len(self.tasks)))
        canon = []
        for layer, groups in enumerate(self.partitions, start=1):
            seen = [t for g in groups for t in g]
            if any(not g for g in groups):
                raise ConfigError(f"layer {layer}: empty task group")
            if len(seen) != len(set(seen)) or set(seen) != everyone:
                raise ConfigError(
                    f"layer {layer}: groups must contain every task exactly once (tasks: {', '.join(self.tasks)})"
                )
            canon.append(_canonical(groups))
        for layer in range(1, len(canon)):
            if not _is_refinement(canon[layer], canon[layer - 1]):
                raise ConfigError(
                    f"layer {layer + 1} merges branches that layer {layer} split "
                    f"({self._fmt(canon[layer - 1])} -> {self._fmt(canon[layer])}); branches may split, never merge"
                )
        object.__setattr__(self, "partitions", tuple(canon))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_groups(cls, tasks: Sequence[str], layers: Sequence[Sequence[Sequence[str]]]) -> BranchConfig:
        """From task *names* per group per layer (the JSON form)."""
        tasks = tuple(tasks)
        index = {t: i for i, t in enumerate(tasks)}
        parts = []
        for layer, groups in enumerate(layers, start=1):
            part = []
            for g in groups:
                unknown = [t for t in g if t not in index]
                if unknown:
                    raise ConfigError(f"layer {layer}: unknown task {unknown[0]!r}; tasks are {', '.join(tasks)}")
                part.append(tuple(index[t] for t in g))
            parts.append(tuple(part))
        return cls(tasks, tuple(parts))

    @classmethod
    def shared(cls, tasks: Sequence[str], num_layers: int) -> BranchConfig:
        """All tasks share every layer (only the heads are task-specific)."""
        return cls(tuple(tasks), tuple((tuple(range(len(tasks))),) for _ in range(num_layers)))

    @classmethod
    def single(cls, tasks: Sequence[str], num_layers: int) -> BranchConfig:
        """Every task has its own copy of every layer (independent single-task networks)."""
        return cls(tuple(tasks), tuple(tuple((i,) for i in range(len(tasks))) for _ in range(num_layers)))

    @classmethod
    def from_op_indices(cls, tasks: Sequence[str], op_indices: Sequence[Sequence[int]]) -> BranchConfig:
        """From a BMTAS op-index matrix ``[L][T]`` (candidate chosen per layer and task).

        Two tasks share layer ``l`` exactly when their op indices agree on layers ``1..l``, i.e. the
        groups at ``l`` are the classes of identical op-index *prefixes*.

        >>> BranchConfig.from_op_indices(["a", "b", "c"], [[0, 0, 0], [1, 1, 2]]).groups(1)
        [['a', 'b'], ['c']]
        """
        tasks = tuple(tasks)
        for layer, row in enumerate(op_indices, start=1):
            if len(row) != len(tasks):
                raise ConfigError(f"op-index row {layer} has {len(row)} entries for {len(tasks)} tasks")
        prefixes: list[tuple[int, ...]] = [() for _ in tasks]
        parts = []
        for row in op_indices:
            prefixes = [p + (int(row[t]),) for t, p in enumerate(prefixes)]
            by_prefix: dict[tuple[int, ...], list[int]] = {}
            for t, p in enumerate(prefixes):
                by_prefix.setdefault(p, []).append(t)
            parts.append(tuple(tuple(g) for g in by_prefix.values()))
        return cls(tasks, tuple(parts))

    @classmethod
    def from_parents(cls, tasks: Sequence[str], parents: Sequence[Sequence[int]]) -> BranchConfig:
        """From Learning-to-Branch parent lists.

        ``parents[l][j]`` is the parent node (index into layer ``l-1``'s nodes) chosen by child node
        ``j`` of layer ``l``; layer 0's nodes all hang off the input (their entries are ignored). The
        last layer must have exactly one node per task, node ``t`` feeding task ``t``'s head. Nodes that
        no task path reaches are pruned automatically.
        """
        tasks = tuple(tasks)
        if not parents:
            raise ConfigError("parent lists are empty")
        if len(parents[-1]) != len(tasks):
            raise ConfigError(f"the last layer has {len(parents[-1])} nodes; it needs one per task ({len(tasks)})")
        num_layers = len(parents)
        # Walk each task's leaf up to the root: node[l][t] = task t's node at layer l.
        node = [[0] * len(tasks) for _ in range(num_layers)]
        node[-1] = list(range(len(tasks)))
        for layer in range(num_layers - 1, 0, -1):
            for t in range(len(tasks)):
                j = node[layer][t]
                p = int(parents[layer][j])
                if not 0 <= p < len(parents[layer - 1]):
                    raise ConfigError(
                        f"layer {layer + 1} node {j} picks parent {p}, but layer {layer} has {len(parents[layer - 1])} nodes"
                    )
                node[layer - 1][t] = p
        # Tasks share layer l iff they pass through the same node there; a node is a distinct block,
        # so nodes are identified by their full path from the root (prefix of node ids).
        return cls.from_op_indices(tasks, node)

    # ------------------------------------------------------------------ queries
    @property
    def num_layers(self) -> int:
        return len(self.partitions)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def groups(self, layer: int) -> list[list[str]]:
        """Task names per group at ``layer`` (0-based)."""
        return [[self.tasks[t] for t in g] for g in self.partitions[layer]]

    def num_groups(self, layer: int) -> int:
        return len(self.partitions[layer])

    def group_of(self, layer: int, task: int) -> int:
        """Index of the group containing task index ``task`` at ``layer``."""
        for i, g in enumerate(self.partitions[layer]):
            if task in g:
                return i
        raise IndexError(task)

    def parent_group(self, layer: int, group: int) -> int:
        """Index of the group at ``layer - 1`` that feeds ``group`` at ``layer``."""
        return self.group_of(layer - 1, self.partitions[layer][group][0])

    def branch_layer(self, a: str, b: str) -> int | None:
        """First layer (0-based) at which tasks ``a`` and ``b`` are in different groups, or None."""
        ia, ib = self.tasks.index(a), self.tasks.index(b)
        for layer in range(self.num_layers):
            if self.group_of(layer, ia) != self.group_of(layer, ib):
                return layer
        return None

    def check_tasks(self, tasks: Sequence[str], num_layers: int | None = None) -> None:
        """Check that this config fits a network with ``tasks`` and ``num_layers`` backbone layers."""
        if set(tasks) != set(self.tasks):
            missing = sorted(set(tasks) - set(self.tasks))
            extra = sorted(set(self.tasks) - set(tasks))
            what = []
            if missing:
                what.append(f"missing tasks {', '.join(missing)}")
            if extra:
                what.append(f"unknown tasks {', '.join(extra)}")
            raise ConfigError(f"branch config does not match the tasks ({'; '.join(what)})")
        if num_layers is not None and num_layers != self.num_layers:
            raise ConfigError(
                f"branch config has {self.num_layers} layers but the backbone has {num_layers}"
            )

    def reorder(self, tasks: Sequence[str]) -> BranchConfig:
        """The same tree with task indices following ``tasks``."""
        self.check_tasks(tasks)
        return BranchConfig.from_groups(tasks, [self.groups(layer) for layer in range(self.num_layers)])

    # ------------------------------------------------------------------ identity
    def canonical(self) -> dict:
        """A label-free description: per layer, sorted groups of sorted task names."""
        return {
            "layers": [sorted(sorted(g) for g in self.groups(layer)) for layer in range(self.num_layers)],
        }

    def arch_hash(self) -> str:
        """Stable 16-hex-digit hash of the tree; independent of group labels and task order."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BranchConfig) and self.canonical() == other.canonical()

    def __hash__(self) -> int:
        return hash(self.arch_hash())

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "tasks": list(self.tasks),
            "layers": [self.groups(layer) for layer in range(self.num_layers)],
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: object, source: str = "branch config") -> BranchConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        if data.get("schema", SCHEMA) != SCHEMA:
            raise ConfigError(f"{source}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
        version = data.get("version")
        if version != SCHEMA_VERSION:
            raise ConfigError(f"{source}: unsupported version {version!r} (this branchsweep reads {SCHEMA_VERSION})")
        tasks, layers = data.get("tasks"), data.get("layers")
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise ConfigError(f"{source}: 'tasks' must be a list of task names")
        if not isinstance(layers, list) or not all(
            isinstance(p, list) and all(isinstance(g, list) for g in p) for p in layers
        ):
            raise ConfigError(f"{source}: 'layers' must be a list (per layer) of lists (groups) of task names")
        try:
            return cls.from_groups(tasks, layers)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "branch config") -> BranchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{source}: malformed JSON ({err.msg} at line {err.lineno})") from None
        return cls.from_dict(data, source)

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (a resumed trial trusts an existing file)."""
        from branchsweep.atomic import write_text

        return write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> BranchConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"branch config file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read branch config {path}: {err}") from None
        return cls.from_json(text, source=str(path))

    # ------------------------------------------------------------------ drawing
    def draw(self, layer_names: Sequence[str] | None = None) -> str:
        """A plain-text tree: one line per block (layer, tasks that share it), indented by depth.

        >>> print(BranchConfig.from_op_indices(["a", "b", "c"], [[0, 0, 0], [0, 0, 1]]).draw())
        L1 [a b c]
        ├─ L2 [a b]
        └─ L2 [c]
        """
        names = list(layer_names) if layer_names is not None else [f"L{i + 1}" for i in range(self.num_layers)]
        lines: list[str] = []
        # Collapse runs of layers in which a group does not split, so deep trees stay readable.

        def label(layer_from: int, layer_to: int, group: tuple[int, ...]) -> str:
            span = names[layer_from] if layer_from == layer_to else f"{names[layer_from]}-{names[layer_to]}"
            return f"{span} [{' '.join(self.tasks[t] for t in group)}]"

        def walk(layer: int, group: tuple[int, ...], prefix: str, connector: str) -> None:
            end = layer
            while end + 1 < self.num_layers and len(self._children(end, group)) == 1:
                end += 1
            lines.append(prefix + connector + label(layer, end, group))
            if end + 1 >= self.num_layers:
                return
            kids = self._children(end, group)
            child_prefix = prefix + ("" if not connector else ("   " if connector.startswith("└") else "│  "))
            for i, kid in enumerate(kids):
                walk(end + 1, kid, child_prefix, "└─ " if i == len(kids) - 1 else "├─ ")

        roots = self.partitions[0]
        for root in roots:
            walk(0, root, "", "")
        return "\n".join(lines)

    def _children(self, layer: int, group: tuple[int, ...]) -> list[tuple[int, ...]]:
        members = set(group)
        return [g for g in self.partitions[layer + 1] if g[0] in members]

    @staticmethod
    def _fmt(part: Partition) -> str:
        return "|".join(",".join(map(str, g)) for g in part)

    def __repr__(self) -> str:
        groups = [len(p) for p in self.partitions]
        return f"BranchConfig(tasks={list(self.tasks)}, groups_per_layer={groups}, hash={self.arch_hash()})"
