"""Running one trial: export (baseline, fixed JSON or search) → price → retrain (or reuse) → evaluate → Δm."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.atomic import read_json, write_json
from branchsweep.errors import ConfigError
from branchsweep.pipeline.caches import SweepCaches, retrain_key
from branchsweep.pipeline.config import BASELINES, TrialConfig, with_method_conventions

log = logging.getLogger(__name__)

ARCH_FILE = "branch_config.json"
RESULT_FILE = "result.json"
SEARCH_INFO_FILE = "search_info.json"
TRIAL_LOG = "trial.log"


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

    from analysis import AnalysisError, delta_m

    row = pd.DataFrame([{k: metrics.get(k, math.nan) for k in directions}], index=["trial"])
    try:
        value = float(delta_m(row, pd.Series({k: baseline[k] for k in directions}), directions).iloc[0])
    except AnalysisError as err:
        raise ConfigError(f"Δm: {err}") from None
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
        info = read_json(work / SEARCH_INFO_FILE, "search info") if (work / SEARCH_INFO_FILE).is_file() else {}
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
                            resume=again, progress=False, cache_dir=caches.madds, amp=cfg.train.amp,
                            channels_last=cfg.train.channels_last)
        shared = method.sweep_settings(caches.method_dir(cfg.method))
        say(f"search {cfg.method} {'(resumed from checkpoint) ' if again else ''}with "
            f"{json.dumps(dict(cfg.search), default=str)}"
            + (f"; shared by the sweep: {json.dumps(shared, default=str)}" if shared else ""))
        result = method.run(cfg.method_config(caches.method_dir(cfg.method)), ctx)
        config = result.config.reorder(names)
        seconds = float(result.wall_time_s)
        info = {k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool))}
    config.save(exported)
    write_json(work / SEARCH_INFO_FILE, {"search_time_s": seconds, **info}, indent=None)
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
    metrics = evaluate_network(model, data, tasks, train_cfg, split=train_cfg.eval_split)
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
    return caches.retrain.get(retrain_key(with_method_conventions(cfg, name), config, spec.cache_key()))


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
    cfg = with_method_conventions(cfg)  # e.g. no lr division by sharing when retraining an LTB tree
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
        "arch_hash": config.arch_hash(), "arch_json": config.to_json(indent=None),
        "arch_drawing": config.draw(spec.layer_names), "madds": int(madds),
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
    write_json(work / RESULT_FILE, row)
    return row
