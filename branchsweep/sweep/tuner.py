"""The Tune side of a sweep: one ``Tuner`` per stage (experiment), its ``RunConfig`` and callbacks.

Three experiments under ``<prefix>/tune``: ``baselines`` (a grid over the Single and Shared baselines),
``search`` (the Optuna searcher of :mod:`branchsweep.sweep.study`, bound to this driver's study by
:func:`branchsweep.sweep.searcher.bind`) and ``controls`` (a grid over the control points of
:mod:`branchsweep.sweep.controls`). A resumed sweep restores each experiment that Tune can restore.
:func:`run_stage` fits one and returns its rows (:func:`branchsweep.sweep.results.grid_rows`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from branchsweep.sweep import storage as sweep_storage
from branchsweep.sweep.results import grid_rows
from branchsweep.sweep.settings import SweepConfig
from branchsweep.sweep.trainable import TRIAL_CHECKPOINTS_KEPT, sweep_trial

log = logging.getLogger(__name__)

SEARCH_EXPERIMENT = "search"
BASELINE_EXPERIMENT = "baselines"
CONTROL_EXPERIMENT = "controls"


def run_stage(cfg: SweepConfig, experiment: str, say, total: int, baseline: bool = False,
              baseline_metrics: dict[str, float] | None = None,
              controls: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Fit (or resume) one experiment with its progress callback writing to ``say`` (``total``: the trials it
    expects) and return one row per trial."""
    progress = progress_callback(say, total, stage=experiment)
    return grid_rows(build_tuner(cfg, experiment, baseline, progress, baseline_metrics, controls=controls).fit())


def progress_callback(logfile: Path | Any, total: int, verbose: bool = True, stage: str = ""):
    """The progress callback of one stage (:class:`~branchsweep.sweep.searcher.SweepProgress`), writing to
    ``logfile`` (a path or a :class:`~branchsweep.sweep.searcher.SweepLog`)."""
    from branchsweep.sweep.searcher import Mirror, SweepLog, SweepProgress

    say = logfile if isinstance(logfile, SweepLog) else SweepLog(Mirror(Path(logfile), None), verbose)
    return SweepProgress(say, total, stage)


def build_tuner(cfg: SweepConfig, experiment: str, baseline: bool, progress, baseline_metrics=None,
                controls: list[dict[str, Any]] | None = None) -> Any:
    """The Tuner of ``experiment``: restored when resuming and Tune can, else a grid over the baselines
    (``baseline``) or over the control points (``controls``), else the Optuna search. Every trial gets
    :meth:`SweepConfig.trial_settings` with ``baseline_metrics`` (the Single baseline's, for Δm)."""
    from ray import tune

    settings = cfg.trial_settings(baseline, baseline_metrics)
    trainable = tune.with_resources(tune.with_parameters(sweep_trial, settings=settings), settings.tune_resources())
    path = f"{cfg.storage.rstrip('/')}/{experiment}"
    if cfg.resume and tune.Tuner.can_restore(path):
        log.info("restoring %s", path)
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False)
    if not sweep_storage.is_uri(cfg.storage):
        # Every retrain checkpoint beyond num_to_keep forces a snapshot of the experiment state; Tune warns
        # when that happens within 5 s, meant for cloud storage. On a local folder the snapshot is a file
        # copy of milliseconds, and the warning repeated itself ~10 times in the embedded sweep.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    run_config = tune.RunConfig(
        name=experiment, storage_path=cfg.storage, verbose=0, callbacks=[progress, *logger_callbacks(cfg)],
        failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=TRIAL_CHECKPOINTS_KEPT),
    )
    # Reused trial actors keep torch, the data set and the MAdds tables imported/loaded between trials
    # (Tune's default starts a fresh process per trial): 3.8 s instead of 10.9 s of overhead per trial
    # in benchmarks/bench_ray_overhead.py.
    if baseline:
        space = {"method": tune.grid_search(list(cfg.baselines))}
        return tune.Tuner(trainable, param_space=space, run_config=run_config,
                          tune_config=tune.TuneConfig(max_concurrent_trials=cfg.concurrency, reuse_actors=True))
    if controls is not None:
        space = {"point": tune.grid_search(controls)}
        return tune.Tuner(trainable, param_space=space, run_config=run_config,
                          tune_config=tune.TuneConfig(max_concurrent_trials=cfg.concurrency, reuse_actors=True))
    from branchsweep.sweep.study import make_searcher

    # The searcher (bound to this driver's study: searcher.bind) limits the trials, the concurrency and
    # the time budget itself: a restored one takes them from the resumed driver, and after the budget it
    # stops suggesting while running trials finish (Tune's time_budget_s would stop them).
    searcher = make_searcher(cfg.space, cfg.base.objectives, cfg.points, cfg.sampler_seed)
    return tune.Tuner(trainable, run_config=run_config, tune_config=tune.TuneConfig(
        search_alg=searcher, num_samples=-1, reuse_actors=True))


def logger_callbacks(cfg: SweepConfig) -> list[Any]:
    """``--mlflow URI``: Ray's MLflow logger callback (every reported result, per trial, as an MLflow run)."""
    if not cfg.mlflow_uri:
        return []
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from branchsweep.sweep.redact import split_userinfo

    # Credentials in the URI go to MLflow's variables in this process, not into the callback (which Tune
    # pickles into its experiment state).
    uri, user, password = split_userinfo(cfg.mlflow_uri)
    if user:
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
    if password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    return [MLflowLoggerCallback(tracking_uri=uri, experiment_name=cfg.name, save_artifact=False)]

