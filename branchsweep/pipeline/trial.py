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
from branchsweep.pipeline.caches import RetrainClaimed, SweepCaches, retrain_key
from branchsweep.pipeline.config import BASELINES, TrialConfig, with_method_conventions

log = logging.getLogger(__name__)

ARCH_FILE = "branch_config.json"
RESULT_FILE = "result.json"
SEARCH_INFO_FILE = "search_info.json"
TRIAL_LOG = "trial.log"
#: What a trial that deferred (``run_trial(defer_claimed=True)``) keeps in its folder for the attempt
#: that resumes it: the claimed key, the seeds already done, the time spent so far.
DEFERRED_FILE = "deferred.json"


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
            say: TrialLog, device: str, on_step: Callable[[str, int, dict], None] | None = None
            ) -> tuple[BranchConfig, float, dict[str, Any]]:
    """The trial's architecture: a baseline, a fixed JSON, or a search (resumed from ``work/search``)."""
    from branchsweep.factory import resolve_arch
    from branchsweep.search import SEARCH_METHODS, SearchContext
    from branchsweep.search.base import run_method

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
                            channels_last=cfg.train.channels_last, branch_points=cfg.branch_points,
                            on_step=None if on_step is None else lambda it, info: on_step("search", it, info))
        shared = method.sweep_settings(caches.method_dir(cfg.method))
        say(f"search {cfg.method} {'(resumed from checkpoint) ' if again else ''}with "
            f"{json.dumps(dict(cfg.search), default=str)}"
            + (f"; shared by the sweep: {json.dumps(shared, default=str)}" if shared else ""))
        result = run_method(method, cfg.method_config(caches.method_dir(cfg.method)), ctx)
        config = result.config.reorder(names)
        seconds = float(result.wall_time_s)
        info = {k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool))}
    config.save(exported)
    write_json(work / SEARCH_INFO_FILE, {"search_time_s": seconds, **info}, indent=None)
    return config, seconds, info


def _retrain(cfg: TrialConfig, config: BranchConfig, data, spec, tasks, work: Path, resume: bool, device: str,
             seeds: list[int], hooks: list[Callable[[str, int, dict], None]], say: Callable[[str], None]
             ) -> list[dict[str, Any]]:
    """Retrain ``config`` once per seed, the seeds fused into one wide network where they can be
    (:mod:`branchsweep.fused_train`), each with its own checkpoint folder ``work/retrain/seed<seed>``;
    ``hooks[i]`` gets seed ``i``'s progress."""
    from branchsweep.factory import build_model
    from branchsweep.fused_train import Replicate, evaluate_networks, train_replicates
    from branchsweep.network import count_parameters
    from branchsweep.train import CHECKPOINT_NAME

    replicates = []
    for seed, hook in zip(seeds, hooks):
        folder = work / "retrain" / f"seed{seed}"
        replicates.append(Replicate(
            build_model(spec, tasks, config, seed), dataclasses.replace(cfg.train, seed=seed, device=device, progress=False),
            folder, resume and (folder / CHECKPOINT_NAME).is_file(),
            on_step=lambda it, info, hook=hook: hook("retrain", it, info)))
    results = train_replicates(replicates, data, tasks, say=say)
    eval_cfg = replicates[0].cfg
    metrics = evaluate_networks([r.model for r in replicates], data, tasks, eval_cfg, split=eval_cfg.eval_split)
    return [{"metrics": m, "params": count_parameters(r.model), "retrain_time_s": result.wall_time_s,
             "final_loss": result.losses[-1] if result.losses else math.nan, "resumed": r.resume}
            for r, result, m in zip(replicates, results, metrics)]


def measure_latency(cfg: TrialConfig, config: BranchConfig, data, spec, tasks, say: Callable[[str], None]
                    ) -> dict[str, Any]:
    """The tree's measured latency on this node (:func:`branchsweep.latency.measure` with
    ``cfg.latency``), as row columns: ``latency_ms`` (median), ``latency_ms/p90``, ``latency_peak_mb`` and
    ``latency_settings`` (what was measured, for the report). The weights do not change the time, so the
    tree is built afresh, which also serves a retrain reused from the cache."""
    import torch

    from branchsweep.factory import build_model
    from branchsweep.latency import measure

    settings = cfg.latency_settings()
    model = build_model(spec, tasks, config, cfg.train.seed)
    example = torch.randn(settings.batch, *data.input_shape)
    result = measure(model, example, settings)
    what = (f"{settings.device}, batch {settings.batch}, {settings.threads} thread{'s' if settings.threads != 1 else ''}, "
            f"{settings.runtime}")
    say(f"latency ({what}): median {result.median_ms:.3f} ms, p90 {result.p90_ms:.3f} ms over {result.repeats} runs")
    return {"latency_ms": float(result.median_ms), "latency_ms/p90": float(result.p90_ms),
            "latency_peak_mb": float(result.peak_mem_mb), "latency_settings": what}


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error ``s / √n`` of the non-NaN values (:func:`analysis.standard_error`; NaN
    for fewer than two values).

    >>> [round(v, 4) for v in mean_and_se([1.0, 2.0, 3.0])]
    [2.0, 0.5774]
    """
    from analysis import standard_error

    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    return sum(finite) / len(finite), standard_error(finite)


def baseline_entries(cfg: TrialConfig, caches: SweepCaches, name: str = "single", data=None, spec=None,
                     tasks=None) -> list[dict[str, Any]] | None:
    """The cached retrains of baseline ``name`` (one per retrain seed of ``cfg``) under ``cfg``'s data,
    backbone, tasks and settings; None unless every replicate is there."""
    if data is None:
        from branchsweep.data import create_data
        from branchsweep.factory import build_spec

        data = create_data(cfg.data)
        tasks = data.select_tasks(cfg.data.tasks)
        spec = build_spec(cfg.model, data)
    config = BASELINES.get(name)([t.name for t in tasks], spec.num_layers)
    cfg = with_method_conventions(cfg, name)
    entries = [caches.retrain.get(retrain_key(cfg, config, spec.cache_key(), s)) for s in cfg.retrain_seeds()]
    return None if any(e is None for e in entries) else entries


def mean_metrics(entries: list[dict[str, Any]]) -> dict[str, float]:
    """Per-metric mean over replicate entries (``{"metrics": {...}}`` each)."""
    keys = list(entries[0]["metrics"])
    return {k: mean_and_se([float(e["metrics"].get(k, math.nan)) for e in entries])[0] for k in keys}


def run_trial(cfg: TrialConfig, work_dir: str | Path, caches: SweepCaches, resume: bool = False,
              device: str | None = None, on_phase: Callable[[str, dict[str, Any]], None] | None = None,
              baseline_metrics: dict[str, float] | None = None,
              on_step: Callable[[str, int, dict[str, Any]], None] | None = None,
              defer_claimed: bool = False) -> dict[str, Any]:
    """Run one trial and return its flat result row (the columns of ``results.parquet``).

    ``on_phase("priced", partial_row)`` is called once the architecture is exported and priced, before
    retraining (Ray trials report it as an intermediate result with a checkpoint). Errors propagate:
    the caller records the trial as failed. ``device`` overrides ``cfg.train.device`` (a Ray worker
    passes the GPU it was given).

    ``baseline_metrics``: the Single baseline's metrics, handed over by the sweep's driver, so that Δm
    does not depend on what this worker's cache holds (None: look the Single result up in the cache).
    ``on_step(stage, iteration, info)``: progress of the search (``stage="search"``) and the retrain
    (``"retrain"``); ``info["checkpoint"]`` marks a fresh resumable checkpoint in ``work_dir``.

    ``defer_claimed``: when another live trial is retraining one of this trial's retrain keys, raise
    :class:`~branchsweep.pipeline.caches.RetrainClaimed` instead of waiting here (a Ray Train worker
    then ends and gives its GPU back while the trial waits). The seeds done so far and the time spent
    are kept in ``work_dir/deferred.json``; ``run_trial(..., resume=True)`` on that folder, once the
    claimed entry is cached (:meth:`RetrainCache.wait_for`), finishes with the row that waiting in place
    would have given (``trial_time_s`` counts from the first attempt's start, the wait included).
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
    deferred = read_json(work / DEFERRED_FILE, "deferred trial state") \
        if resume and (work / DEFERRED_FILE).is_file() else None
    if deferred is not None:
        t0 -= float(deferred["elapsed_s"]) + max(0.0, time.time() - float(deferred["deferred_at"]))
    data = create_data(cfg.data)
    tasks = data.select_tasks(cfg.data.tasks)
    spec = build_spec(cfg.model, data)
    config, search_s, info = _export(cfg, data, spec, tasks, work, caches, resume, say, dev, on_step)
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
    cache = caches.retrain
    seeds = cfg.retrain_seeds()
    entries: list[dict | None] = [None] * len(seeds)
    keys = [retrain_key(cfg, config, spec.cache_key(), seed) for seed in seeds]
    cached = [False] * len(seeds)
    done_before = {d["key"]: d for d in (deferred or {}).get("done", [])}
    claimed: list[int] = []  # seeds (by position) this trial holds the claim of and has not trained yet

    def train_claimed() -> None:
        """Retrain the claimed seeds together (fused), cache each entry, release each claim."""
        if not claimed:
            return
        say(f"retraining {row['arch_hash']} with seed{'s' if len(claimed) > 1 else ''} "
            f"{', '.join(str(seeds[i]) for i in claimed)} for {cfg.train.iterations} iterations on {dev}")
        # A thread keeps the claims fresh through the whole retrain and evaluation (RetrainCache.holding);
        # a claim taken over meanwhile stops the retrain at its next step, and put never overwrites.
        try:
            with cache.holding([keys[i] for i in claimed]) as beat:
                hooks = [beat.guard(on_step if n == 0 else None) for n in range(len(claimed))]
                trained = _retrain(cfg, config, data, spec, tasks, work, resume, dev, [seeds[i] for i in claimed],
                                   hooks, say)
                beat.check()
                for i, entry in zip(claimed, trained):
                    entry.update(trained_by=cfg.display_label, arch_hash=row["arch_hash"], key=keys[i], seed=seeds[i])
                    entries[i] = cache.put(keys[i], entry)
                    cached[i] = entries[i] is not entry  # another attempt cached it first: reused
        finally:
            for i in claimed:
                cache.release(keys[i], work.name)
        claimed.clear()

    for i, (seed, key) in enumerate(zip(seeds, keys)):
        if key in done_before:  # settled before this trial deferred: as it was then
            entries[i], cached[i] = done_before[key]["entry"], bool(done_before[key]["cached"])
            say(f"retrain seed {seed}: result from before the wait kept "
                f"({'reused from the cache' if cached[i] else 'trained by this trial'})")
            continue
        # The lock is held only to check the cache and claim the key. A key claimed by another live
        # trial is waited for (RetrainCache.get_or_claim) instead of trained twice, or with
        # defer_claimed left for (RetrainClaimed) without holding the worker; either way the seeds this
        # trial claimed before it are trained first, so that no claim of its own goes stale meanwhile.
        try:
            entry = cache.get_or_claim(key, owner=work.name, say=say, wait=False)
        except RetrainClaimed as claim:
            train_claimed()
            if defer_claimed:
                write_json(work / DEFERRED_FILE, {
                    "retrain_key": key, "claimed_by": claim.holder, "seed": seed,
                    "elapsed_s": time.perf_counter() - t0, "deferred_at": time.time(),
                    "done": [{"key": keys[j], "entry": entries[j], "cached": cached[j]} for j in range(i)]})
                say(f"retrain of {key} (seed {seed}) claimed by trial {claim.holder}: waiting for its result "
                    "without holding the worker (this attempt ends; the trial resumes once the result is cached)")
                raise
            entry = cache.get_or_claim(key, owner=work.name, say=say, wait=True)
        if entry is None:
            claimed.append(i)
            continue
        say(f"retrain seed {seed} skipped: architecture {row['arch_hash']} with these retrain settings "
            f"was already trained by {entry['trained_by']!r} (cache {cache.path(key).name}); reusing it")
        entries[i], cached[i] = entry, True
    train_claimed()
    directions = primary_directions(tasks)
    if cfg.method == "single":
        reference = mean_metrics(entries)
    elif baseline_metrics:
        reference = dict(baseline_metrics)
    else:
        singles = baseline_entries(cfg, caches, data=data, spec=spec, tasks=tasks)
        reference = mean_metrics(singles) if singles else None
    replicates = []
    for seed, entry, was_cached in zip(cfg.retrain_seeds(), entries, cached):
        dm = compute_delta_m(entry["metrics"], reference, directions) if reference else math.nan
        replicates.append({"retrain_seed": seed, **entry["metrics"], "delta_m": dm,
                           "retrain_time_s": float(entry["retrain_time_s"]), "retrain_cached": was_cached})
    for name in entries[0]["metrics"]:
        mean, se = mean_and_se([float(e["metrics"].get(name, math.nan)) for e in entries])
        row[name], row[f"{name}/se"] = mean, se
    row["delta_m"], row["delta_m/se"] = mean_and_se([r["delta_m"] for r in replicates])
    row.update(params=int(entries[0]["params"]), replicates=len(entries), replicates_json=json.dumps(replicates),
               retrain_time_s=sum(r["retrain_time_s"] for r in replicates if not r["retrain_cached"]),
               retrain_cached=all(r["retrain_cached"] for r in replicates), retrain_key=keys[0],
               retrain_keys=json.dumps(keys), **dict(cfg.tags))
    if cfg.latency is not None:
        row.update(measure_latency(cfg, config, data, spec, tasks, say))
    # What the sweep's driver writes to metrics.json (it holds no data set); a string, as Tune flattens dicts.
    row["metric_spec"] = json.dumps({"primary": list(directions),
                                     "directions": {f"{t.name}/{m}": d for t in tasks for m, d in t.directions.items()}})
    if cfg.method == "single":
        from branchsweep.trivial import trivial_metrics

        row["trivial_json"] = json.dumps(trivial_metrics(data, tasks, dataclasses.replace(cfg.train, device=dev)))
    if reference is None:
        say("no Single baseline in the cache yet: delta_m is NaN (run the baselines first)")
    cached_any = any(r["retrain_cached"] for r in replicates)
    row["trial_time_s"] = time.perf_counter() - t0
    say(f"done: delta_m={row['delta_m']:.3f}% ± {row['delta_m/se']:.3f} (s.e., {len(entries)} retrain seeds) "
        f"params={row['params']} search={search_s:.1f}s retrain={row['retrain_time_s']:.1f}s"
        f"{' (some seeds cached)' if cached_any else ''}")
    write_json(work / RESULT_FILE, row)
    (work / DEFERRED_FILE).unlink(missing_ok=True)
    return row
