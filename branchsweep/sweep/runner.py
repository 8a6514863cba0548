"""A Pareto sweep: baselines, then Tune + Optuna (minimise MAdds, maximise Δm), then results and report.

:func:`run_sweep` runs these stages; each job lives in its own module:

1. the record (:mod:`~branchsweep.sweep.record`): a new sweep writes ``PREFIX/sweep.json``; ``--resume``
   checks that it continues the recorded experiment and pulls ``sweep.log`` and the Optuna journal;
2. the study (:mod:`~branchsweep.sweep.study`): the sweep's Optuna storage and study, bound to this driver
   (:func:`branchsweep.sweep.searcher.bind`) so that a restored searcher continues the same study;
3. Ray (:mod:`~branchsweep.sweep.cluster`): join a running cluster or start a private one;
4. the baselines: Single and Shared as Tune trials of their own (experiment ``baselines``,
   :mod:`~branchsweep.sweep.tuner`); they land in the retrain cache, so a later sweep with the same data,
   backbone, tasks, retrain settings and seeds reuses them at no cost. Every architecture is retrained with
   ``base.replicates`` seeds; rows carry mean and standard error, Δm is against Single's mean. The Single
   trial also fits the trivial predictor (``RUN_DIR/trivial.json``);
5. the search (experiment ``search``): ``OptunaSearch(metric=["madds", "delta_m"], mode=["min", "max"])``
   over the conditional space of :mod:`~branchsweep.sweep.space`, ``FailureConfig(max_failures)`` retrying a
   trial from its last checkpoint; a resume restores the Tuner (finished trials are not rerun);
6. the controls (:mod:`~branchsweep.sweep.controls`, ``controls``): for every front point of each searched
   method, the trees of the registered controls (``permutations`` permuted trees, one vanilla and one random
   tree at its MAdds), tagged ``baseline_of``; skipped once the time budget is spent;
7. the results (:mod:`~branchsweep.sweep.results`): Δm back-filled from the Single row, ``RUN_DIR/results.parquet``
   (one row per trial, failed ones with ``status="failed"``), ``replicates.parquet`` (per retrain seed),
   ``metrics.json`` (Δm columns and directions), the economy summary in ``PREFIX/sweep.log`` (appended to as
   the sweep runs), and the analysis report in ``RUN_DIR/report`` (``branchsweep report``, scored against the
   committed exhaustive table of the sweep's recipe when there is one, :mod:`branchsweep.truth`); each is
   uploaded to the prefix.

The settings are :class:`~branchsweep.sweep.settings.SweepConfig`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from branchsweep.errors import ConfigError
from branchsweep.pipeline import SweepCaches
from branchsweep.sweep import record, study
from branchsweep.sweep import storage as sweep_storage
from branchsweep.sweep.cluster import connect_ray
from branchsweep.sweep.controls import control_points, run_controls, searched_fronts
from branchsweep.sweep.record import SWEEP_FILE, sweep_record
from branchsweep.sweep.redact import redact
from branchsweep.sweep.results import (
    OBJECTIVES,
    OUTPUT_FILES,
    economy,
    fill_delta_m,
    metric_spec,
    replicate_rows,
    single_metrics,
    trivial_row,
    write_metric_spec,
    write_outputs,
    write_results,
)
from branchsweep.sweep.settings import SweepConfig
from branchsweep.sweep.tuner import BASELINE_EXPERIMENT, SEARCH_EXPERIMENT, run_stage

__all__ = [
    # re-exported for the importers of branchsweep.sweep.runner
    "OBJECTIVES", "SWEEP_FILE", "SweepConfig", "SweepOutcome", "connect_ray", "control_points", "replicate_rows",
    "run_sweep", "searched_fronts", "sweep_record", "trivial_row", "write_metric_spec", "write_results",
]


@dataclass
class SweepOutcome:
    run_dir: Path
    results_path: Path
    report_dir: Path | None
    rows: list[dict[str, Any]]
    wall_time_s: float


def run_sweep(cfg: SweepConfig) -> SweepOutcome:
    """Run (or resume) the sweep described by ``cfg``; see the module docstring."""
    from branchsweep.sweep.searcher import Binding, SweepLog, bind, clock, driver_files  # imports Ray Tune

    cfg.validate()
    t0 = time.perf_counter()
    deadline = clock() + cfg.time_budget_s if cfg.time_budget_s else None
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    prefix = cfg.prefix
    # 1-2. the record and the study, before any searcher is restored
    log_file, journal = driver_files(cfg, run_dir)
    pulled = record.begin(cfg, log_file, journal)
    say = SweepLog(log_file, cfg.verbose)
    print(f"[sweep] storage: {redact(prefix)}{' (resumed)' if cfg.resume else ''}  (resume with --resume "
          f"{redact(prefix)})", flush=True)
    if cfg.resume:
        say(f"resumed by a new driver (run folder {run_dir.resolve()}): {pulled}")
    storage, name = study.open_study(cfg, journal.local.parent if journal else run_dir / "optuna", say)
    binding = Binding(open_storage=lambda: storage, study_name=name, num_trials=cfg.num_trials,
                      concurrency=cfg.concurrency, deadline=deadline, say=say,
                      sync=journal.push if journal else (lambda: None), resume=cfg.resume)
    with bind(binding):
        started = connect_ray(cfg.num_cpus, local=cfg.local)  # 3. Ray
        try:
            sweep_storage.check_shared(prefix)
            say(f"sweep {cfg.name} in {prefix} ({'resumed' if cfg.resume else 'new'}): "
                f"{cfg.num_trials} trials, concurrency {cfg.concurrency}, backend "
                f"{cfg.trial_settings(False).resolved_backend}")
            # 4. the baselines
            rows = run_stage(cfg, BASELINE_EXPERIMENT, say, len(cfg.baselines), baseline=True)
            for row in rows:
                row["is_baseline"] = True
            bad = [r for r in rows if r["status"] != "ok"]
            if bad:
                raise ConfigError(f"baseline {bad[0]['label']} failed ({bad[0].get('error', '')}); see {prefix}/trials")
            spec = metric_spec(rows)
            # 5. the search
            search_rows = run_stage(cfg, SEARCH_EXPERIMENT, say, cfg.num_trials,
                                    baseline_metrics=single_metrics(rows, spec))
            spec = metric_spec(search_rows, spec)
            rows += search_rows
            fill_delta_m(rows, spec)
            # 6. the controls
            control_rows, spec = run_controls(cfg, rows, spec, say, binding.out_of_time)
            rows += control_rows
        finally:
            if started:
                import ray

                ray.shutdown()
    # 7. the results, the economy summary and the report
    fill_delta_m(rows, spec)
    results = write_outputs(rows, spec, run_dir)
    caches = cfg.caches_root
    lines = economy(rows, SweepCaches(caches) if caches is not None else None) + [
        f"wall time {time.perf_counter() - t0:.1f} s", f"results: {sweep_storage.join(prefix, 'results.parquet')}"]
    for line in lines:
        say(line, prefix="[economy] ")
    report_dir = None
    if cfg.report:
        from branchsweep.cli import main as cli_main

        # sweep.json (in the sweep's storage) gives the report the recipe to find the exhaustive table by.
        if cli_main(["report", str(run_dir), "--sweep-config", sweep_storage.join(prefix, SWEEP_FILE)]) == 0:
            report_dir = run_dir / "report"
            print(f"[sweep] report: {sweep_storage.join(prefix, 'report')}", flush=True)
    # sweep.log and the journal are in the prefix already (appended to, or pushed after every change).
    for name in (*OUTPUT_FILES, "report"):
        if (run_dir / name).exists():
            sweep_storage.upload(run_dir / name, sweep_storage.join(prefix, name))
    return SweepOutcome(run_dir, results, report_dir, rows, time.perf_counter() - t0)
