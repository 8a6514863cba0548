"""Exhaustive truth tables: every tree of a small space, retrained with several seeds under one recipe.

Nobody knows where the best trees of a space are unless every tree is trained. A *truth table* is that
enumeration for one recipe (data, backbone, retraining, branch points): one row per tree × retrain seed
with the tree, its MAdds and parameters, every task metric and Δm against Single's mean. Searches are
then scored by looking their exported trees up (no retraining): ``benchmarks/score_searches.py``, and
the main job's report when its recipe matches a committed table.

Presets are registered in :data:`TABLES`; ``benchmarks/exhaustive_table.py --table NAME`` regenerates a
table into ``branchsweep/truth_tables/NAME/`` (``rows.csv`` and ``manifest.json``; committed, so scoring
needs no retraining). :func:`recipe_hash` identifies a recipe; :func:`find_table` finds the committed table
of a recipe.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import math
import multiprocessing as mp
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.errors import ConfigError
from branchsweep.registry import Registry

TABLES_DIR = Path(__file__).parent / "truth_tables"
ROWS_FILE = "rows.csv"
MANIFEST_FILE = "manifest.json"
TABLE_VERSION = 1


@dataclass(frozen=True)
class TablePreset:
    """One truth table's recipe: data, backbone, retraining, branch points, seeds, and the designed groups
    (the task grouping the data generator built in: what a search should recover)."""

    name: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    branch_points: tuple[int, ...]
    designed: tuple[tuple[str, ...], ...]
    seeds: int = 5
    #: The layer at which the designed groups split (a tree of the space); documentation and plots.
    designed_at: int = 0
    description: str = ""
    #: Per search method, the settings the searches scored against this table run with (method -> fields).
    search: dict[str, dict[str, Any]] = field(default_factory=dict)

    def designed_tree(self, num_layers: int) -> BranchConfig:
        """Shared up to ``designed_at``, then one branch per designed group, split no further."""
        tasks = list(self.data.tasks or [])
        groups = [list(g) for g in self.designed]
        return BranchConfig.from_groups(tasks, [[tasks]] * self.designed_at + [groups] * (num_layers - self.designed_at))


TABLES: Registry[TablePreset] = Registry("truth table")


def _main_job() -> TablePreset:
    from branchsweep.data.synthetic_dense import RELATED_GROUPS

    tasks = ["semseg", "sal", "depth", "normals"]
    return TablePreset(
        name="synthetic-dense",
        # The README's main job (sweeps/synthetic_pareto.py): same scenes, backbone and retraining.
        data=DataConfig(dataset="synthetic-dense", size=24, train_samples=256, val_samples=64, tasks=tasks),
        model=ModelConfig(backbone="convnet", width=0.375),
        train=TrainConfig(iterations=400, batch_size=8, eval_batch_size=64, optimizer="adam", lr=0.003,
                          divide_lr_by_sharing=False, loss_weights={"semseg": 3.0, "sal": 1.0, "normals": 2.0},
                          progress=False),
        branch_points=(0, 3, 5),
        designed=tuple(tuple(t for t in g if t in tasks) for g in RELATED_GROUPS),
        designed_at=3,
        description="the main job's scenes and retraining; convnet ×0.375 (7 layers), branch points 0, 3, 5",
        # The main job's search settings (tests/sweep/test_sweep_scripts.py checks they stay the preset's).
        search={"bmtas": {"iterations": 100, "warmup_iterations": 100, "batch_size": 16, "checkpoint_every": 25,
                          "mc_samples": 16, "resource_mode": "normalized", "hard": True, "arch_lr": 0.15,
                          "weight_steps_per_arch": 1},
                "ltb": {"iterations": 150, "batch_size": 16, "checkpoint_every": 50}},
    )


def _regressions() -> TablePreset:
    tasks = ["bent_0", "bent_1", "square_0", "square_1"]
    return TablePreset(
        name="ltb-regressions",
        # Learning to Branch Eq. 8: 2 activations × 2 tasks; the tasks of one activation share a basis.
        data=DataConfig(dataset="ltb-synthetic", tasks=tasks, train_samples=10000, val_samples=1000,
                        options={"activations": ["bent", "square"], "tasks_per_activation": 2,
                                 "normalize": "activation_std", "input_std": 0.3, "output_dim": 20}),
        model=ModelConfig(backbone="mlp", width=0.5),
        train=TrainConfig(iterations=1000, batch_size=50, eval_batch_size=500, optimizer="adam", lr=0.01,
                          lr_schedule="constant", divide_lr_by_sharing=False, progress=False),
        branch_points=(0, 2, 3),
        designed=(("bent_0", "bent_1"), ("square_0", "square_1")),
        designed_at=0,  # Eq. 8: the tasks of one activation share their map from the input on
        description="Learning to Branch Eq. 8 regressions, 2 activations × 2 tasks; mlp ×0.5 (4 layers), "
                    "branch points 0, 2, 3",
        # Short searches of the main job's shape (not tuned for this table).
        search={"bmtas": {"iterations": 300, "warmup_iterations": 200, "batch_size": 50, "resource_mode": "normalized",
                          "hard": True, "arch_lr": 0.15, "weight_steps_per_arch": 1, "mc_samples": 16, "lr": 0.01},
                "ltb": {"iterations": 600, "batch_size": 50}},
    )


TABLES.register("synthetic-dense", _main_job, help="the main job's scenes and recipe")
TABLES.register("ltb-regressions", _regressions, help="Learning to Branch Eq. 8 regressions, 2 × 2 tasks")


def preset(name: str, smoke: bool = False) -> TablePreset:
    """The table preset ``name``; ``smoke``: the same space at seconds scale (tiny data, 2 iterations), for
    checking the machinery (its recipe hash differs, so no sweep ever matches it)."""
    p = TABLES.get(name)()
    if not smoke:
        return p
    data = dataclasses.replace(p.data, train_samples=48, val_samples=8,
                               size=8 if p.data.size is not None else None)
    return dataclasses.replace(p, name=p.name + "-smoke", data=data, train=dataclasses.replace(p.train, iterations=2))


# ------------------------------------------------------------------------------------------- identity
def recipe(data: DataConfig, model: ModelConfig, train: TrainConfig) -> dict[str, Any]:
    """What a retrain's metrics depend on, besides tree and seed (the retrain cache's normal form)."""
    from branchsweep.pipeline.caches import result_settings

    return result_settings(data, model, train)


def recipe_hash(data: DataConfig, model: ModelConfig, train: TrainConfig) -> str:
    """16 hex digits identifying a recipe: a sweep whose data, backbone and retraining hash the same as a
    table's retrains every tree of the table exactly as the table did."""
    blob = json.dumps(recipe(data, model, train), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def table_dir(name: str, root: Path | None = None) -> Path:
    return Path(root or TABLES_DIR) / name


def load_table(name: str, root: Path | None = None):
    """``(rows, manifest)`` of a committed table: a DataFrame (one row per tree × seed) and a dict."""
    import pandas as pd

    folder = table_dir(name, root)
    if not (folder / ROWS_FILE).is_file():
        raise ConfigError(f"no truth table {name!r} in {folder} (regenerate it: python benchmarks/exhaustive_table.py "
                          f"--table {name})")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    return pd.read_csv(folder / ROWS_FILE), manifest


def find_table(data: DataConfig, model: ModelConfig, train: TrainConfig, root: Path | None = None) -> str | None:
    """The name of the committed table with this recipe (None when there is none)."""
    key = recipe_hash(data, model, train)
    folder = Path(root or TABLES_DIR)
    if not folder.is_dir():
        return None
    for manifest in sorted(folder.glob(f"*/{MANIFEST_FILE}")):
        try:
            if json.loads(manifest.read_text()).get("recipe_hash") == key:
                return manifest.parent.name
        except (OSError, json.JSONDecodeError):
            continue
    return None


# -------------------------------------------------------------------------------------------- retrain
def groups_label(config: BranchConfig, points: Sequence[int]) -> str:
    """A short label of a tree in a branch-point space: each segment's groups (tasks of a group joined by
    ``+``, groups by a space), ``|`` between segments.

    >>> tree = BranchConfig.from_groups("abc", [[["a", "b", "c"]], [["a", "b"], ["c"]]])
    >>> groups_label(tree, [0, 1])
    'a+b+c | a+b c'
    """
    from branchsweep.tree_space import segment_partitions

    return " | ".join(" ".join("+".join(config.tasks[t] for t in g) for g in part)
                      for part in segment_partitions(config, points))


@dataclass
class TableContext:
    """What retraining rows needs, built once per process."""

    preset: TablePreset
    data: Any
    spec: Any
    tasks: list
    table: Any

    @classmethod
    def build(cls, p: TablePreset) -> TableContext:
        from branchsweep.data import create_data
        from branchsweep.factory import build_spec
        from branchsweep.madds import madds_table

        data = create_data(p.data)
        tasks = data.select_tasks(p.data.tasks)
        spec = build_spec(p.model, data)
        return cls(p, data, spec, tasks, madds_table(spec, tasks))


def retrain_rows(ctx: TableContext, trees: Sequence[BranchConfig], seeds: Sequence[int], max_fused: int = 0,
                 say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Retrain every tree with every seed (fused where possible) and return one row per tree × seed:
    ``tree`` (its segment groups), ``arch_hash``, ``arch`` (the branch-config JSON), ``seed``, ``madds``,
    ``params``, ``time_s`` (the tree's wall time over its seeds, shared equally) and every metric."""
    from branchsweep.factory import build_model
    from branchsweep.fused_train import Replicate, evaluate_networks, train_replicates
    from branchsweep.network import count_parameters

    p = ctx.preset
    jobs = [(tree, seed) for tree in trees for seed in seeds]
    replicates = [Replicate(build_model(ctx.spec, ctx.tasks, tree, seed), dataclasses.replace(p.train, seed=seed))
                  for tree, seed in jobs]
    t0 = time.perf_counter()
    train_replicates(replicates, ctx.data, ctx.tasks, max_fused=max_fused, say=say)
    metrics = evaluate_networks([r.model for r in replicates], ctx.data, ctx.tasks, p.train, split=p.train.eval_split)
    share = (time.perf_counter() - t0) / max(1, len(jobs))
    rows = []
    for (tree, seed), r, m in zip(jobs, replicates, metrics):
        rows.append({"tree": groups_label(tree, p.branch_points), "arch_hash": tree.arch_hash(),
                     "arch": tree.to_json(indent=None), "seed": int(seed), "madds": int(ctx.table.madds(tree)),
                     "params": int(count_parameters(r.model)), "time_s": round(share, 3),
                     **{k: float(v) for k, v in m.items()}})
    return rows


def add_delta_m(rows, tasks: Sequence[Any]):
    """``rows`` (DataFrame) with ``delta_m``: Δm of each row's primary metrics (one per task, the BMTAS
    convention) against Single's mean over its seeds, and ``delta_m_paired`` against Single with the same
    retrain seed. ``tasks``: the :class:`~branchsweep.tasks.Task` objects (primary metric, direction)."""
    import pandas as pd

    from analysis import delta_m
    from branchsweep.pipeline import primary_directions

    directions = primary_directions(list(tasks))
    metrics = list(directions)
    num_layers = len(json.loads(rows["arch"].iloc[0])["layers"])
    single = BranchConfig.single([t.name for t in tasks], num_layers).arch_hash()
    ref = rows[rows["arch_hash"] == single]
    if ref.empty:
        raise ConfigError("the table has no Single tree: Δm needs it (include 0 in the branch points)")
    out = rows.copy()
    out["delta_m"] = delta_m(out[metrics], ref[metrics].astype(float).mean(axis=0), directions).to_numpy()
    paired = pd.Series(math.nan, index=out.index)
    for seed, part in out.groupby("seed"):
        base = ref[ref["seed"] == seed]
        if len(base):
            paired[part.index] = delta_m(part[metrics], base[metrics].astype(float).iloc[0], directions).to_numpy()
    out["delta_m_paired"] = paired
    return out


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int, init: Callable[..., None],
             initargs: tuple) -> Iterator[Any]:
    """``fn(job)`` for every job, as they finish (the benchmarks that build and score truth tables): in this
    process for one worker (its thread count restored afterwards), else in ``workers`` spawned processes
    started with ``init(*initargs)`` (a worker that dies raises, never hangs)."""
    if workers == 1:
        import torch

        threads = torch.get_num_threads()
        init(*initargs)
        try:
            for job in jobs:
                yield fn(job)
        finally:
            torch.set_num_threads(threads)
        return
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=init,
                                initargs=initargs) as pool:
        for fut in cf.as_completed([pool.submit(fn, job) for job in jobs]):
            yield fut.result()
