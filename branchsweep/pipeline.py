"""One sweep trial: data → tasks → backbone → search (or a baseline) → export → price → retrain → evaluate → Δm.

This is the unit of work a Ray Tune trial (or a plain function call) runs; it knows nothing about Ray.
The economy the sweeps rely on lives here:

* MAdds of the exported architecture are computed *before* retraining (the cheap objective, logged
  first), from the cached per-layer MAdds table;
* a retrain is never repeated: its outcome is stored in a :class:`RetrainCache` keyed by the
  architecture hash plus everything else the retrained weights depend on (data, backbone, tasks,
  retrain settings and seed). A trial whose architecture is already there reuses the metrics and says
  so (``retrain_cached`` in the result, a line in ``trial.log``). Concurrent trials that export the
  same architecture wait for one another on a file lock instead of training twice;
* Δm is measured against the Single baseline, which is itself just the cache entry of the ``single``
  architecture under the same settings (so baselines are trained once per sweep, or reused);
* a search method's config gets the sweep's warm-up cache folder (``warmup_cache`` field, BMTAS) so the
  λ- and schedule-independent warm-up is computed once per sweep.

A trial is resumable: its work folder keeps the search checkpoints, the exported architecture and the
retrain checkpoint, and ``run_trial(..., resume=True)`` continues from whatever is there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.config import DataConfig, ModelConfig, TrainConfig, from_mapping, to_dict
from branchsweep.errors import ConfigError
from branchsweep.registry import Registry

log = logging.getLogger(__name__)

ARCH_FILE = "branch_config.json"
RESULT_FILE = "result.json"
TRIAL_LOG = "trial.log"
CACHE_VERSION = 1

#: Architectures that need no search: name -> (task names, number of layers) -> BranchConfig.
BASELINES: Registry[Callable[[list[str], int], BranchConfig]] = Registry("baseline architecture")
BASELINES.register("single", BranchConfig.single, help="one network per task (the Δm reference)")
BASELINES.register("shared", BranchConfig.shared, help="every layer shared, task-specific heads")

#: TrainConfig fields that do not change the retrained weights or metrics (left out of cache keys).
_NON_RESULT_TRAIN_FIELDS = ("progress", "device", "checkpoint_every", "eval_batch_size")


@dataclass
class TrialConfig:
    """Everything one trial needs; built once from a Tune config or flags, validated, JSON-friendly.

    ``method``: a baseline name (``single``, ``shared``), ``fixed`` (retrain the architecture JSON at
    ``arch``) or a registered search method (``bmtas``, ``ltb``) configured by ``search`` (field names
    of that method's config dataclass). ``hp``: the hyperparameters to record as ``hp/<name>``.
    """

    method: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: dict[str, Any] = field(default_factory=dict)
    arch: str | None = None
    seed: int = 0
    label: str | None = None
    is_baseline: bool = False
    hp: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        from branchsweep.search import SEARCH_METHODS

        known = [*BASELINES.names(), "fixed", *SEARCH_METHODS.names()]
        if self.method not in known:
            raise ConfigError(f"unknown trial method {self.method!r} (known: {', '.join(known)})")
        if self.method == "fixed" and not self.arch:
            raise ConfigError("method 'fixed' needs arch=<path to a branch-config JSON>")
        if self.method in SEARCH_METHODS:
            self.search_config(None)  # unknown fields and bad values fail here, before any work

    @property
    def display_label(self) -> str:
        return self.label or self.method

    def search_config(self, warmup_cache: Path | None) -> Any:
        """The method's typed config from ``search``, with the sweep's warm-up cache when it takes one."""
        from branchsweep.search import SEARCH_METHODS

        method = SEARCH_METHODS.get(self.method)
        values = dict(self.search)
        names = {f.name for f in fields(method.config_type)}
        if warmup_cache is not None and "warmup_cache" in names and not values.get("warmup_cache"):
            values["warmup_cache"] = str(warmup_cache)
        return from_mapping(method.config_type, values, what=f"{self.method} search settings")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("data", "model", "train"):
            out[name] = to_dict(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrialConfig:
        raw = dict(raw)
        parts = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        for name, typ in parts.items():
            if name in raw and isinstance(raw[name], dict):
                raw[name] = from_mapping(typ, raw[name], what=f"trial {name} config")
        return from_mapping(cls, raw, what="trial config")


def retrain_key(cfg: TrialConfig, config: BranchConfig, spec_key: Any) -> str:
    """Hash of what a retrained network's metrics depend on: architecture, data, backbone, tasks, settings.

    Search hyperparameters are *not* part of it: two searches that export the same tree share a retrain.
    """
    train = {k: v for k, v in to_dict(cfg.train).items() if k not in _NON_RESULT_TRAIN_FIELDS}
    data = {k: v for k, v in to_dict(cfg.data).items() if k != "num_workers"}
    key = {
        "arch": config.arch_hash(), "tasks": list(config.tasks), "data": data, "model": to_dict(cfg.model),
        "spec": spec_key, "train": train, "seed": cfg.seed, "version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


class RetrainCache:
    """Retrain outcomes (metrics, parameters, time) on disk, one JSON file per :func:`retrain_key`.

    Shared by every trial of a sweep (and by later sweeps pointed at the same folder). On a multi-node
    cluster the folder must be on shared storage, otherwise each node keeps its own cache.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(entry, indent=1, default=str))
        tmp.replace(self.path(key))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` (a second trial with the same architecture waits here)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class SweepCaches:
    """The folders a sweep's trials share: retrain cache, BMTAS warm-up cache, MAdds tables."""

    root: Path

    @property
    def retrain(self) -> RetrainCache:
        return RetrainCache(self.root / "retrain")

    @property
    def warmup(self) -> Path:
        return self.root / "warmup"

    @property
    def madds(self) -> Path:
        return self.root


class TrialLog:
    """Appends timestamped lines to ``trial.log`` in the trial's folder and to the module logger."""

    def __init__(self, path: Path, label: str) -> None:
        self.path, self.label = path, label
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} [{self.label}] {message}"
        log.info(line)
        with open(self.path, "a") as handle:
            handle.write(line + "\n")


def primary_directions(tasks: list) -> dict[str, str]:
    """``{"<task>/<primary metric>": "max"|"min"}``: the metrics Δm averages over."""
    return {f"{t.name}/{t.primary}": t.primary_direction for t in tasks}


def compute_delta_m(metrics: dict[str, float], baseline: dict[str, float], directions: dict[str, str]) -> float:
    """Δm in percent: ``(1/n) Σ_i (-1)^{l_i} (M_i − B_i) / B_i · 100`` with ``l_i = 1`` for lower-is-better.

    Delegates to :func:`analysis.delta_m` so a trial and the report agree by construction.

    >>> compute_delta_m({"a/acc": 55.0, "b/err": 12.0}, {"a/acc": 50.0, "b/err": 10.0}, {"a/acc": "max", "b/err": "min"})
    -5.0
    """
    import pandas as pd

    from analysis import delta_m

    row = pd.DataFrame([{k: metrics.get(k, math.nan) for k in directions}], index=["trial"])
    value = float(delta_m(row, pd.Series({k: baseline[k] for k in directions}), directions).iloc[0])
    return round(value, 10)


def _export(cfg: TrialConfig, data, spec, tasks, work: Path, caches: SweepCaches, resume: bool,
            say: TrialLog, device: str) -> tuple[BranchConfig, float, dict[str, Any]]:
    """The trial's architecture: a baseline, a fixed JSON, or a search (resumed from ``work/search``)."""
    from branchsweep.factory import resolve_arch
    from branchsweep.search import SEARCH_METHODS, SearchContext

    names = [t.name for t in tasks]
    exported = work / ARCH_FILE
    if resume and exported.is_file():
        say(f"architecture already exported by an earlier attempt: {exported}")
        info = json.loads((work / "search_info.json").read_text()) if (work / "search_info.json").is_file() else {}
        return BranchConfig.load(exported).reorder(names), float(info.get("search_time_s", 0.0)), info
    if cfg.method in BASELINES:
        config, seconds, info = BASELINES.get(cfg.method)(names, spec.num_layers), 0.0, {}
    elif cfg.method == "fixed":
        config, seconds, info = resolve_arch(str(cfg.arch), names, spec.num_layers), 0.0, {}
    else:
        method = SEARCH_METHODS.get(cfg.method)
        search_dir = work / "search"
        again = resume and search_dir.is_dir() and any(search_dir.glob("*.pt"))
        ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=search_dir, seed=cfg.seed, device=device,
                            resume=again, progress=False, cache_dir=caches.madds)
        scfg = cfg.search_config(caches.warmup)
        say(f"search {cfg.method} {'(resumed from checkpoint) ' if again else ''}with "
            f"{json.dumps({k: v for k, v in cfg.search.items()}, default=str)}")
        result = method.run(scfg, ctx)
        config = result.config.reorder(names)
        seconds = float(result.wall_time_s)
        info = {k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool))}
        if "warmup_cache" in {f.name for f in fields(method.config_type)}:
            say(f"warm-up cache: {scfg.warmup_cache} (shared by the sweep's trials)")
    config.save(exported)
    tmp = work / f"search_info.json.tmp{os.getpid()}"  # atomic: a resumed trial reads it next to the export
    tmp.write_text(json.dumps({"search_time_s": seconds, **info}, default=str))
    os.replace(tmp, work / "search_info.json")
    return config, seconds, info


def _retrain(cfg: TrialConfig, config: BranchConfig, data, spec, tasks, work: Path, resume: bool,
             device: str) -> dict[str, Any]:
    from branchsweep.factory import build_model
    from branchsweep.network import count_parameters
    from branchsweep.train import CHECKPOINT_NAME, evaluate_network, train_network

    train_cfg = dataclasses.replace(cfg.train, seed=cfg.seed, device=device, progress=False)
    model = build_model(spec, tasks, config, cfg.seed)
    again = resume and (work / "retrain" / CHECKPOINT_NAME).is_file()
    result = train_network(model, data, tasks, train_cfg, out_dir=work / "retrain", resume=again)
    metrics = evaluate_network(model, data, tasks, train_cfg)
    return {"metrics": metrics, "params": count_parameters(model), "retrain_time_s": result.wall_time_s,
            "final_loss": result.losses[-1] if result.losses else math.nan, "resumed": again}


def baseline_entry(cfg: TrialConfig, caches: SweepCaches, name: str = "single") -> dict[str, Any] | None:
    """The cached retrain of baseline ``name`` under ``cfg``'s data, backbone, tasks and settings, if any."""
    from branchsweep.data import create_data
    from branchsweep.factory import build_spec

    data = create_data(cfg.data)
    tasks = data.select_tasks(cfg.data.tasks)
    spec = build_spec(cfg.model, data)
    config = BASELINES.get(name)([t.name for t in tasks], spec.num_layers)
    return caches.retrain.get(retrain_key(cfg, config, spec.cache_key()))


def run_trial(cfg: TrialConfig, work_dir: str | Path, caches: SweepCaches, resume: bool = False,
              device: str | None = None, on_phase: Callable[[str, dict[str, Any]], None] | None = None
              ) -> dict[str, Any]:
    """Run one trial and return its flat result row (the columns of ``results.parquet``).

    ``on_phase("priced", partial_row)`` is called once the architecture is exported and priced, before
    retraining (Ray trials report it as an intermediate result with a checkpoint). Errors propagate:
    the caller records the trial as failed. ``device`` overrides ``cfg.train.device`` (a Ray worker
    passes the GPU it was given).
    """
    from branchsweep.data import create_data
    from branchsweep.factory import build_spec
    from branchsweep.madds import madds_table

    cfg.validate()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    say = TrialLog(work / TRIAL_LOG, cfg.display_label)
    dev = device or cfg.train.device
    t0 = time.perf_counter()
    data = create_data(cfg.data)
    tasks = data.select_tasks(cfg.data.tasks)
    spec = build_spec(cfg.model, data)
    config, search_s, info = _export(cfg, data, spec, tasks, work, caches, resume, say, dev)
    madds = madds_table(spec, tasks, cache_dir=caches.madds).madds(config)
    row: dict[str, Any] = {
        "label": cfg.display_label, "method": cfg.method, "is_baseline": cfg.is_baseline,
        "arch_hash": config.arch_hash(), "arch_json": config.to_json(indent=None), "madds": int(madds),
        "search_time_s": search_s, **{f"hp/{k}": v for k, v in cfg.hp.items()},
    }
    say(f"exported {row['arch_hash']}: {madds / 1e6:.2f} MMAdds (priced before retraining)")
    if on_phase is not None:
        on_phase("priced", dict(row))
    key = retrain_key(cfg, config, spec.cache_key())
    cache = caches.retrain
    with cache.lock(key):
        entry = cache.get(key)
        if entry is not None:
            say(f"retrain skipped: architecture {row['arch_hash']} with these retrain settings was already "
                f"trained by {entry['trained_by']!r} (cache {cache.path(key).name}); reusing its metrics")
            cached = True
        else:
            say(f"retraining {row['arch_hash']} for {cfg.train.iterations} iterations on {dev}")
            entry = _retrain(cfg, config, data, spec, tasks, work, resume, dev)
            entry.update(trained_by=cfg.display_label, arch_hash=row["arch_hash"], key=key)
            cache.put(key, entry)
            cached = False
    row.update(entry["metrics"])
    row.update(params=int(entry["params"]), retrain_time_s=0.0 if cached else float(entry["retrain_time_s"]),
               retrain_cached=cached, retrain_key=key)
    single = entry if cfg.method == "single" else baseline_entry(cfg, caches)
    directions = primary_directions(tasks)
    row["delta_m"] = compute_delta_m(entry["metrics"], single["metrics"], directions) if single else math.nan
    if single is None:
        say("no Single baseline in the cache yet: delta_m is NaN (run the baselines first)")
    row["trial_time_s"] = time.perf_counter() - t0
    say(f"done: delta_m={row['delta_m']:.3f}% params={row['params']} "
        f"search={search_s:.1f}s retrain={row['retrain_time_s']:.1f}s{' (cached)' if cached else ''}")
    tmp = work / f"{RESULT_FILE}.tmp{os.getpid()}"  # atomic: result.json marks the trial finished on resume
    tmp.write_text(json.dumps(row, indent=1, default=str))
    os.replace(tmp, work / RESULT_FILE)
    return row
