"""A Pareto sweep: baselines, then Tune + Optuna (minimise MAdds, maximise Δm), then results and report.

Flow of :func:`run_sweep`:

1. join a running Ray cluster (``RAY_ADDRESS`` or a ``ray start`` cluster) or start a private one with
   an explicit CPU budget (always with ``local=True``), and print which (:func:`connect_ray`);
2. the Single and Shared baselines run as Tune trials of their own (same trainable, same backend);
   they land in the retrain cache, so a later sweep with the same data, backbone, tasks, retrain
   settings and seeds reuses them at no cost. Every architecture of the sweep is retrained with
   ``base.replicates`` seeds; rows carry mean and standard error, Δm is against Single's mean. The
   Single trial also fits the trivial predictor (``RUN_DIR/trivial.json``);
3. the search trials: ``OptunaSearch(metric=["madds", "delta_m"], mode=["min", "max"])`` over the
   conditional space of :mod:`branchsweep.sweep.space`, ``FailureConfig(max_failures)`` retrying a
   trial from its last checkpoint; ``resume=True`` continues an interrupted sweep with
   ``Tuner.restore`` (finished trials keep their results and are not rerun) after checking that it is the
   recorded experiment (:mod:`branchsweep.sweep.record`); the searcher continues the same Optuna study in
   the prefix (:mod:`branchsweep.sweep.searcher`);
3b. the controls (``controls``): for every front point of each searched method, ``permutations``
   distinct permutations of its tree and one ``vanilla`` and one ``random`` tree at its MAdds, as
   trials of the registered ``permuted``/``vanilla``/``random`` methods tagged ``baseline_of``;
4. ``RUN_DIR/results.parquet`` (one row per trial, failed ones with ``status="failed"``; per-seed
   values in ``RUN_DIR/replicates.parquet``, one row per trial and retrain seed), the
   Δm columns and metric directions in ``RUN_DIR/metrics.json``, the economy summary in
   ``PREFIX/sweep.log`` (appended to as the sweep runs), and the analysis report in ``RUN_DIR/report`` (scored against the committed
   exhaustive table of the sweep's recipe when there is one, :mod:`branchsweep.truth`; the report reads
   the recipe from the sweep's ``sweep.json``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.tables import REPLICATES_FILE, TRIVIAL_FILE
from branchsweep.atomic import atomic_write, write_json
from branchsweep.errors import ConfigError
from branchsweep.pipeline import BASELINES, RESULT_FILE, SweepCaches
from branchsweep.sweep import record as sweep_record_file
from branchsweep.sweep import storage as sweep_storage
from branchsweep.sweep.redact import redact, refuse_userinfo
from branchsweep.sweep.space import SearchSpace, SweepBase
from branchsweep.sweep.trainable import (
    TRIAL_CHECKPOINTS_KEPT,
    TrialSettings,
    sweep_trial,
    unreported,
    worker_env,
)

log = logging.getLogger(__name__)


def _new_run_id() -> str:
    return sweep_storage.new_run_id()

SEARCH_EXPERIMENT = "search"
BASELINE_EXPERIMENT = "baselines"
CONTROL_EXPERIMENT = "controls"
#: Baseline trees built for each front point of the searched methods (registered search methods).
CONTROL_KINDS = ("permuted", "vanilla", "random")
OBJECTIVES = {"madds": "min", "delta_m": "max"}


@dataclass
class SweepConfig:
    """One sweep, validated once. ``out`` is the run folder; ``storage_path`` (a folder or a cloud URI
    Ray supports, e.g. ``s3://bucket/sweeps``) holds Tune's experiment state and defaults to ``out/tune``.

    ``points``: parameter dicts evaluated before Optuna samples (e.g. the paper's settings). ``num_cpus``:
    the CPUs of a local Ray started by the sweep (None: all); ignored when joining a cluster. ``local``:
    start a private Ray instance even where a ``ray start`` cluster runs (``--local``; see :func:`connect_ray`).
    """

    name: str
    out: Path
    base: SweepBase = field(default_factory=SweepBase)
    space: SearchSpace = field(default_factory=SearchSpace)
    num_trials: int = 8
    concurrency: int = 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    backend: str = "auto"
    storage_path: str | None = None
    cache_dir: Path | None = None
    resume: bool = False
    max_failures: int = 1
    baselines: tuple[str, ...] = ("single", "shared")
    points: list[dict[str, Any]] = field(default_factory=list)
    sampler_seed: int = 0
    #: For every front point of the searched methods: ``permutations`` permuted trees and one tree of each
    #: other kind in ``controls`` at its MAdds (BMTAS Table 3, Figure 2), e.g. :data:`CONTROL_KINDS`;
    #: () (the default) leaves the stage out.
    controls: tuple[str, ...] = ()
    permutations: int = 2
    num_cpus: int | None = None
    local: bool = False
    report: bool = True
    verbose: bool = True
    #: Modules or ``.py`` files imported in the driver and in every trial before anything is looked up
    #: (e.g. a search method registered outside branchsweep; see :func:`branchsweep.registry.import_plugins`).
    plugins: tuple[str, ...] = ()
    # --- storage, study, live view (branchsweep.sweep.storage / .study / .progress)
    #: ``--resume PREFIX``: the sweep prefix (URI) or run folder to continue (``resume`` is then True).
    resume_from: str | None = None
    #: Unique part of a new sweep's prefix ``<storage_path>/<name>-<run_id>``.
    run_id: str = field(default_factory=lambda: _new_run_id())
    #: Optuna storage URL or journal file (None: ``optuna.journal`` in the sweep's folder).
    optuna_storage: str | None = None
    #: ``--warm-start [SOURCE]``: "" for this sweep's own Optuna storage, else an earlier sweep or storage.
    warm_start: str | None = None
    #: No new trial starts this many seconds after the driver started (None: no limit); running trials
    #: finish (:class:`branchsweep.sweep.searcher.SweepSearch`), the controls stage is skipped.
    time_budget_s: float | None = None
    #: MLflow tracking URI for Ray's ``MLflowLoggerCallback`` (None: no MLflow).
    mlflow_uri: str | None = None
    #: Root of the trials' node-local working folders (None: ``$BRANCHSWEEP_SCRATCH`` or the temp folder).
    scratch: str | None = None
    progress_every_s: float = 10.0
    #: ``--allow-changes``: a resume may change the run settings of :data:`branchsweep.sweep.record.RUN_SETTINGS`.
    allow_changes: bool = False

    def validate(self) -> None:
        from branchsweep.registry import import_plugins

        import_plugins(self.plugins)
        if self.num_trials < 1 or self.concurrency < 1:
            raise ConfigError("--num-trials and --concurrency must be >= 1")
        if self.max_failures < 0:
            raise ConfigError("--max-failures must be >= 0")
        if "single" not in self.baselines:
            raise ConfigError("the Single baseline is required: Δm is measured against it")
        for b in self.baselines:
            BASELINES.get(b)
        from branchsweep.search import SEARCH_METHODS

        for kind in self.controls:
            if kind not in CONTROL_KINDS:
                raise ConfigError(f"unknown control {kind!r} (known: {', '.join(CONTROL_KINDS)})")
            SEARCH_METHODS.get(kind)
        if self.permutations < 0:
            raise ConfigError(f"--permutations must be >= 0, got {self.permutations}")
        if self.base.replicates < 1:
            raise ConfigError(f"--replicates must be >= 1, got {self.base.replicates}")
        self.space.validate()
        self.trial_settings(baseline=False).validate()
        if self.base.cost not in ("madds", "latency", "both"):
            raise ConfigError(f"--cost must be madds, latency or both, got {self.base.cost!r}")
        if self.base.cost != "madds":
            from branchsweep.config import from_mapping
            from branchsweep.latency import LatencySettings

            from_mapping(LatencySettings, dict(self.base.latency), what="latency settings")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError("--time-budget must be > 0 seconds")
        refuse_userinfo(self.storage_path, "--storage-path")
        refuse_userinfo(self.resume_from, "--resume")
        if self.resume_from:
            self.resume = True
        if self.resume:
            sweep_storage.resolve_resume(self.prefix)
            sweep_record_file.check_resume(self)

    @property
    def prefix(self) -> str:
        """The sweep's folder or URI in storage: ``--resume``'s target, ``<storage_path>/<name>-<run_id>``,
        or the run folder ``out`` when no ``--storage-path`` is given."""
        if self.resume_from:
            target = self.resume_from
            return target.rstrip("/") if sweep_storage.is_uri(target) else str(Path(target).resolve())
        if self.storage_path:
            return sweep_storage.sweep_prefix(self.storage_path, self.name, self.run_id)
        return str(Path(self.out).resolve())

    @property
    def storage(self) -> str:
        """Tune's storage: ``<prefix>/tune`` (experiments ``search`` and ``baselines`` under it)."""
        return sweep_storage.join(self.prefix, "tune")

    @property
    def caches_root(self) -> Path | None:
        """The shared caches: ``--cache-dir``, else ``<prefix>/cache`` for a local prefix; None for a cloud
        prefix without ``--cache-dir`` (each node then caches in its scratch; Δm does not depend on it)."""
        if self.cache_dir:
            return Path(self.cache_dir)
        return None if sweep_storage.is_uri(self.prefix) else Path(self.prefix) / "cache"

    def trial_settings(self, baseline: bool, baseline_metrics: dict[str, float] | None = None) -> TrialSettings:
        caches = self.caches_root
        return TrialSettings(
            base=self.base, run_dir=str(Path(self.out).resolve()),
            cache_dir=str(caches.resolve()) if caches is not None else "",
            backend=self.backend, cpus_per_trial=self.cpus_per_trial, gpus_per_trial=self.gpus_per_trial,
            baseline=baseline, train_storage=sweep_storage.join(self.storage, "ray_train"),
            plugins=tuple(str(Path(p).resolve()) if p.endswith(".py") else p for p in self.plugins),
            sweep_uri=self.prefix, scratch=self.scratch, baseline_metrics=baseline_metrics,
            progress_every_s=self.progress_every_s,
        )


@dataclass
class SweepOutcome:
    run_dir: Path
    results_path: Path
    report_dir: Path | None
    rows: list[dict[str, Any]]
    wall_time_s: float


# --------------------------------------------------------------------------------------------- Ray
def connect_ray(num_cpus: int | None = None, local: bool = False) -> bool:
    """Join a Ray cluster or start a private one, and print which (address, nodes, resources).

    Default (Ray's convention): join ``RAY_ADDRESS`` when set (``ray job submit`` sets it), else the
    cluster that ``ray start`` runs on this machine (the address file it leaves in Ray's temp folder),
    else start a private instance with ``num_cpus`` CPUs and node address 127.0.0.1 (Ray 2.60 honours
    that only with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` set before ray is imported, as the tests
    do; otherwise it uses the machine's address). A Ray that another program started
    in-process (a notebook, a test session) leaves no address file and is never joined, unlike
    ``ray.init(address="auto")``, which joins any Ray process it finds. ``local=True`` (``--local``)
    always starts a private instance; combined with ``RAY_ADDRESS`` it is a user error.

    Returns True when this call started Ray (the caller then shuts it down).
    """
    import ray

    for key, value in worker_env().items():
        os.environ.setdefault(key, value)
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if local and address not in ("", "local"):
        raise ConfigError(f"--local starts a private Ray instance, but RAY_ADDRESS={address} names a cluster "
                          "to join; unset one of them")
    if ray.is_initialized():
        _print_cluster("using the Ray instance this process already runs")
        return False
    env = {"env_vars": worker_env()}
    if not local and address != "local":
        target = address or _ray_start_address()
        if target:
            try:
                ray.init(address=target, runtime_env=env, log_to_driver=False)
            except ConnectionError as err:
                if address:
                    raise ConfigError(f"cannot join the Ray cluster at RAY_ADDRESS={address}: {err}") from None
                print(f"[sweep] Ray: the cluster recorded by `ray start` ({target}) is gone; starting a private "
                      "instance", flush=True)
            else:
                how = "RAY_ADDRESS" if address else "`ray start`"
                _print_cluster(f"joined the cluster from {how} (--local for a private instance)")
                return False
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, runtime_env=env, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    _print_cluster("started a private instance")
    return True


def _ray_start_address() -> str | None:
    """The address of the cluster ``ray start`` runs on this machine, from the file it writes (None: none).

    Ray's own lookup when available (``ray.init()`` without an address uses it), else the same file:
    ``$RAY_TMPDIR/ray/ray_current_cluster`` (``/tmp/ray/...`` by default).
    """
    try:
        from ray._private.services import find_bootstrap_address

        return find_bootstrap_address(None) or None
    except (ImportError, AttributeError, TypeError):
        root = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        path = Path(root) / "ray" / "ray_current_cluster"
        return (path.read_text().strip() or None) if path.is_file() else None


def _print_cluster(how: str) -> None:
    """One line: how the sweep got its Ray, the cluster's address, live nodes and resources."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    resources = ray.cluster_resources()
    shown = [f"{resources.get(k, 0):g} {k}" for k in ("CPU", "GPU")]
    shown += [f"{v:g} {k}" for k, v in sorted(resources.items())
              if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")]
    shown.append(f"{resources.get('memory', 0) / 2**30:.1f} GiB memory")
    line = (f"[sweep] Ray: {how}: {ray.get_runtime_context().gcs_address}, {len(nodes)} node(s), "
            f"{', '.join(shown)}")
    log.info(line)
    print(line, flush=True)


# ------------------------------------------------------------------------------------------ progress
def _front(rows: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """Distinct non-dominated (MAdds ↓, Δm ↑) points of finished rows, sorted by MAdds."""
    import pandas as pd

    from analysis import pareto_front

    df = pd.DataFrame([{"madds": r.get("madds"), "delta_m": r.get("delta_m")} for r in rows], columns=["madds", "delta_m"])
    df = df.apply(pd.to_numeric, errors="coerce").astype(float)
    front = df[pareto_front(df, OBJECTIVES)].drop_duplicates().sort_values(["madds", "delta_m"])
    return [(int(m), float(d)) for m, d in front.itertuples(index=False)]


def _progress_callback(logfile: Path | Any, total: int, verbose: bool = True, stage: str = ""):
    """The progress callback of one stage (:class:`~branchsweep.sweep.searcher.SweepProgress`), writing to
    ``logfile`` (a path or a :class:`~branchsweep.sweep.searcher.SweepLog`)."""
    from branchsweep.sweep.searcher import Mirror, SweepLog, SweepProgress

    say = logfile if isinstance(logfile, SweepLog) else SweepLog(Mirror(Path(logfile), None), verbose)
    return SweepProgress(say, total, stage)


# ---------------------------------------------------------------------------------------------- tune
def _tuner(cfg: SweepConfig, experiment: str, baseline: bool, progress, baseline_metrics=None,
           controls: list[dict[str, Any]] | None = None) -> Any:
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
        name=experiment, storage_path=cfg.storage, verbose=0, callbacks=[progress, *_logger_callbacks(cfg)],
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


def _logger_callbacks(cfg: SweepConfig) -> list[Any]:
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


def _rows(grid: Any) -> list[dict[str, Any]]:
    """One row per trial of a ResultGrid (its last result, from ``get_dataframe``); a failed trial keeps
    its sampled config and its error as a ``failed`` row."""
    import pandas as pd

    df = grid.get_dataframe()
    failed = {str((r.metrics or {}).get("trial_id") or _trial_id_from_path(r.path)): r
              for r in grid if r.error is not None}
    rows = []
    for raw in df.to_dict("records"):
        raw = unreported(raw)
        raw = {k: v for k, v in raw.items() if not (isinstance(v, float) and pd.isna(v) and k.startswith("config/"))}
        trial_id = str(raw.get("trial_id", ""))
        result = failed.pop(trial_id, None)
        error = result.error if result is not None else None
        if error is None and raw.get("phase") == "done":
            row = {k: v for k, v in raw.items() if not k.startswith(_TUNE_COLUMNS)}
            row["status"] = "ok"
        else:
            params = {k.removeprefix("config/").removeprefix("point/"): v for k, v in raw.items()
                      if k.startswith("config/")}
            row = {"label": raw.get("label") or params.get("method"), "method": params.get("method"),
                   "status": "failed", "error": _error_line(error, raw.get("phase")),
                   **{k: raw[k] for k in ("madds", "arch_hash", "arch_json") if k in raw}}
        row["trial_id"] = trial_id
        rows.append(row)
    for trial_id, result in failed.items():  # failed before reporting anything: no row in the data frame
        params = dict(result.config or {})
        params = dict(params.get("point", params))
        rows.append({"label": params.get("label") or params.get("method"), "method": params.get("method"),
                     "status": "failed", "error": _error_line(result.error, None), "trial_id": trial_id})
    return rows


#: Columns Tune adds to every result (not trial results of ours).
_TUNE_COLUMNS = ("config/", "time_", "timestamp", "date", "hostname", "node_ip", "pid", "done", "training_iteration",
                 "iterations_since_restore", "checkpoint_dir_name", "logdir", "should_checkpoint")


def _trial_id_from_path(path: str | None) -> str:
    """Tune names a trial's folder ``<trainable>_<trial id>_<index>_<params>``; trial ids look like
    ``a1b2c_00003`` (grid search) or ``f5bec826`` (a searcher's)."""
    tokens = Path(path or "").name.removeprefix(f"{sweep_trial.__name__}_").split("_")
    if len(tokens) > 1 and len(tokens[1]) == 5 and tokens[1].isdigit():
        return f"{tokens[0]}_{tokens[1]}"
    return tokens[0]


def _error_line(error: Any, phase: Any) -> str:
    if error is not None:
        lines = str(error).strip().splitlines()
        return lines[-1] if lines else type(error).__name__
    return f"trial ended without a final result (last phase: {phase or 'none'})"


def _economy(rows: list[dict[str, Any]], caches: SweepCaches | None) -> list[str]:
    from branchsweep.search import SEARCH_METHODS

    ok = [r for r in rows if r.get("status") == "ok"]
    reused = [r for r in ok if r.get("retrain_cached")]
    lines = [
        f"trials: {len(ok)} ok, {len(rows) - len(ok)} failed",
        f"retrain dedup: {len(reused)} of {len(ok)} trials reused a cached retrain "
        f"(saved ~{sum(_trained_time(r, ok) for r in reused):.1f} s of retraining)",
    ]
    for name in sorted({r.get("method") for r in ok} & set(SEARCH_METHODS.names()) if caches is not None else ()):
        line = SEARCH_METHODS.get(name).sweep_summary(caches.method_dir(name), sum(r.get("method") == name for r in ok))
        if line:
            lines.append(line)
    return lines + [
        "MAdds: every architecture priced before its retrain (see each trial.log: 'priced before retraining')",
        f"search time {sum(float(r.get('search_time_s', 0)) for r in ok):.1f} s, "
        f"retrain time {sum(float(r.get('retrain_time_s', 0)) for r in ok):.1f} s",
    ]


def _trained_time(row: dict[str, Any], ok: list[dict[str, Any]]) -> float:
    """Retrain seconds a cached row would have cost: those of the trial that trained that key."""
    key = row.get("retrain_key")
    times = [float(r.get("retrain_time_s", 0)) for r in ok if r.get("retrain_key") == key and not r.get("retrain_cached")]
    return max(times, default=0.0)


def _metric_spec(rows: list[dict[str, Any]], known: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Pop every row's ``metric_spec`` (the trials know their tasks; the driver holds no data set) and
    return ``known`` or else the first: ``{"primary": [...], "directions": {metric: "max"|"min"}}``."""
    specs = [r.pop("metric_spec", None) for r in rows]
    specs = [json.loads(v) if isinstance(v, str) else v for v in specs if v]
    return known or (specs[0] if specs else None)


def _single_metrics(rows: list[dict[str, Any]], spec: dict[str, Any] | None) -> dict[str, float] | None:
    """The Single baseline's metric values (handed to every search trial: Δm needs no shared cache)."""
    single = next((r for r in rows if r.get("is_baseline") and r.get("method") == "single" and r.get("status") == "ok"), None)
    if single is None or spec is None:
        return None
    return {k: float(single[k]) for k in spec["directions"] if k in single}


def _fill_delta_m(rows: list[dict[str, Any]], spec: dict[str, Any] | None) -> None:
    """Δm of rows that finished before the Single baseline did (concurrent baselines), from its row."""
    single = _single_metrics(rows, spec)
    missing = [r for r in rows if r.get("status") == "ok" and math.isnan(float(r.get("delta_m", math.nan)))]
    if single is None or not missing:
        return
    from branchsweep.pipeline import compute_delta_m, mean_and_se

    directions = {k: spec["directions"][k] for k in spec["primary"]}
    reference = {k: single[k] for k in directions}  # the Single row holds its replicates' means
    for row in missing:
        reps = json.loads(row["replicates_json"]) if isinstance(row.get("replicates_json"), str) else []
        for rep in reps:
            rep["delta_m"] = compute_delta_m(rep, reference, directions)
        if reps:
            row["replicates_json"] = json.dumps(reps)
            row["delta_m"], row["delta_m/se"] = mean_and_se([r["delta_m"] for r in reps])
        else:
            row["delta_m"] = compute_delta_m(row, reference, directions)


def searched_fronts(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per searched method (one with an Optuna space), its finished rows on its own front (MAdds ↓,
    mean Δm ↑), sorted by MAdds; rows with the same architecture appear once."""
    import pandas as pd

    from analysis import pareto_front
    from branchsweep.search import SEARCH_METHODS

    out: dict[str, list[dict[str, Any]]] = {}
    ok = [r for r in rows if r.get("status") == "ok" and not r.get("is_baseline") and not r.get("baseline_kind")
          and r.get("method") in SEARCH_METHODS and SEARCH_METHODS.get(r["method"]).space_type is not None
          and not math.isnan(float(r.get("delta_m", math.nan)))]
    for method in sorted({r["method"] for r in ok}):
        mine = list({r["arch_hash"]: r for r in ok if r["method"] == method}.values())
        df = pd.DataFrame({"madds": [float(r["madds"]) for r in mine], "delta_m": [float(r["delta_m"]) for r in mine]})
        on = pareto_front(df, OBJECTIVES).tolist()
        out[method] = sorted((r for r, keep in zip(mine, on) if keep), key=lambda r: float(r["madds"]))
    return out


def control_points(rows: list[dict[str, Any]], kinds: tuple[str, ...], permutations: int,
                   seed: int = 0) -> list[dict[str, Any]]:
    """The control trials for the front points of the searched methods (BMTAS Table 3 / Figure 2):
    ``permutations`` distinct permutations of each front tree, and one ``vanilla`` / ``random`` tree at
    its MAdds. Each is a Tune param dict ``{"method", "control": {"search", "label", "tags"}}``; a tree
    on several fronts gets one set of controls. ``seed``: the search seed the control trials run with
    (it draws the permutations and random trees)."""
    from branchsweep.arch import BranchConfig
    from branchsweep.search.baselines import distinct_permutations

    points, seen = [], set()
    for method, front in searched_fronts(rows).items():
        for rank, row in enumerate(front, 1):
            if row["arch_hash"] in seen:
                continue
            seen.add(row["arch_hash"])
            tags = {"baseline_of": str(row["trial_id"]), "baseline_of_label": str(row["label"])}
            short = f"{method}#{rank}"
            if "permuted" in kinds and permutations > 0:
                tree = BranchConfig.from_json(str(row["arch_json"]))
                count = len(distinct_permutations(tree, permutations, seed=seed))
                for i in range(count):
                    points.append({"method": "permuted", "control": {
                        "search": {"like": str(row["arch_json"]), "permutations": permutations, "index": i},
                        "label": f"{short} permuted {i + 1}", "tags": {**tags, "baseline_kind": "permuted"}}})
            for kind in ("vanilla", "random"):
                if kind in kinds:
                    points.append({"method": kind, "control": {
                        "search": {"target_madds": float(row["madds"])},
                        "label": f"{short} {kind}", "tags": {**tags, "baseline_kind": kind}}})
    return points


def replicate_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long form: one row per (trial, retrain seed) from each row's ``replicates_json``."""
    out = []
    keep = ("trial_id", "label", "method", "is_baseline", "arch_hash", "madds", "baseline_of", "baseline_kind")
    for row in rows:
        if row.get("status") != "ok" or not isinstance(row.get("replicates_json"), str):
            continue
        for rep in json.loads(row["replicates_json"]):
            out.append({**{k: row.get(k) for k in keep}, **rep})
    return out


def trivial_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trivial predictor's metrics (fitted on the training labels by the Single trial), or None."""
    single = next((r for r in rows if r.get("is_baseline") and r.get("method") == "single"
                   and r.get("status") == "ok" and isinstance(r.get("trivial_json"), str)), None)
    return json.loads(single["trivial_json"]) if single else None


def write_metric_spec(spec: dict[str, Any], run_dir: Path) -> Path:
    """``RUN_DIR/metrics.json``: the Δm columns (each task's primary metric) and every metric's direction,
    as the trials reported them; the report reads this file so that tasks created per run (``bent_0``,
    the 40 CelebA attributes) need no ``--direction`` flags."""
    from analysis.tables import METRICS_FILE

    return write_json(run_dir / METRICS_FILE, spec)


def write_results(rows: list[dict[str, Any]], path: Path) -> Path:
    """``results.parquet`` with the columns the analysis package reads (madds int, status, is_baseline)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    for column, default in (("status", "failed"), ("is_baseline", False), ("method", "")):
        if column not in df.columns:
            df[column] = default
    df["is_baseline"] = df["is_baseline"].fillna(False).astype(bool)
    df["madds"] = pd.to_numeric(df.get("madds"), errors="coerce").astype("Int64")
    for column in df.columns:
        if df[column].dtype == object:
            df[column] = df[column].map(lambda v: json.dumps(v, default=str) if isinstance(v, (list, dict, tuple)) else v)
    front = df.columns[:0].tolist() + [c for c in ("trial_id", "label", "method", "status", "is_baseline", "madds",
                                                   "params", "delta_m") if c in df.columns]
    df = df[front + [c for c in df.columns if c not in front]]
    # A uniquely named temporary file beside it, then os.replace: a reader (or a killed driver) never
    # sees half a parquet file, and the previous one stays whole until the new one is complete.
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


SWEEP_FILE = sweep_record_file.SWEEP_FILE


def sweep_record(cfg: SweepConfig) -> bytes:
    """``sweep.json``: the sweep's config as JSON, secrets redacted (``--resume`` compares the new command line
    with it, :mod:`branchsweep.sweep.record`; ``branchsweep report`` reads the recipe of the Single trial from
    it to find the exhaustive table of the sweep's recipe)."""
    return sweep_record_file.encode(sweep_record_file.record(cfg))


def _driver_files(cfg: SweepConfig, run_dir: Path):
    """``(sweep.log, Optuna journal or None)`` as :class:`~branchsweep.sweep.searcher.Mirror`: the files in the
    prefix itself when it is a folder (appended to as the sweep runs, by whichever driver runs it), else
    driver copies in ``run_dir`` pushed to the prefix after every change. No journal with ``--optuna-storage``."""
    from branchsweep.sweep.searcher import Mirror
    from branchsweep.sweep.study import JOURNAL

    prefix = cfg.prefix
    if sweep_storage.is_uri(prefix):
        log_file = Mirror(run_dir / "sweep.log", sweep_storage.join(prefix, "sweep.log"))
        journal = Mirror(run_dir / "optuna" / JOURNAL, sweep_storage.join(prefix, "optuna", JOURNAL))
    else:
        log_file = Mirror(Path(prefix) / "sweep.log", None)
        journal = Mirror(Path(prefix) / "optuna" / JOURNAL, None)
    return log_file, (None if cfg.optuna_storage else journal)


def run_sweep(cfg: SweepConfig) -> SweepOutcome:
    """Run (or resume) the sweep described by ``cfg``; see the module docstring."""
    from branchsweep.sweep.searcher import Binding, SweepLog, bind, clock

    cfg.validate()
    t0 = time.perf_counter()
    deadline = clock() + cfg.time_budget_s if cfg.time_budget_s else None
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    prefix = cfg.prefix
    log_file, journal = _driver_files(cfg, run_dir)
    if not cfg.resume:
        sweep_storage.write_bytes(sweep_storage.join(prefix, SWEEP_FILE), sweep_record(cfg))
        pulled = ""
    else:
        changed = sweep_record_file.check_resume(cfg)
        if changed:
            sweep_storage.write_bytes(sweep_storage.join(prefix, SWEEP_FILE), sweep_record_file.updated(cfg))
        # Before any searcher is restored: this driver's journal and log continue the stored ones.
        pulled = f"sweep.log {log_file.pull()}" + (f", journal {journal.pull()}" if journal else "") + "".join(
            f"; {k} changed {a!r} → {b!r} (--allow-changes)" for k, (a, b) in changed.items())
    say = SweepLog(log_file, cfg.verbose)
    print(f"[sweep] storage: {redact(prefix)}{' (resumed)' if cfg.resume else ''}  (resume with --resume "
          f"{redact(prefix)})", flush=True)
    if cfg.resume:
        say(f"resumed by a new driver (run folder {run_dir.resolve()}): {pulled}")
    storage, name = _open_study(cfg, journal.local.parent if journal else run_dir / "optuna", say)
    binding = Binding(open_storage=lambda: storage, study_name=name, num_trials=cfg.num_trials,
                      concurrency=cfg.concurrency, deadline=deadline, say=say,
                      sync=journal.push if journal else (lambda: None), resume=cfg.resume)
    with bind(binding):
        started = connect_ray(cfg.num_cpus, local=cfg.local)
        try:
            sweep_storage.check_shared(prefix)
            progress = _progress_callback(say, len(cfg.baselines), stage=BASELINE_EXPERIMENT)
            say(f"sweep {cfg.name} in {prefix} ({'resumed' if cfg.resume else 'new'}): "
                f"{cfg.num_trials} trials, concurrency {cfg.concurrency}, backend "
                f"{cfg.trial_settings(False).resolved_backend}")
            base_grid = _tuner(cfg, BASELINE_EXPERIMENT, True, progress).fit()
            rows = _rows(base_grid)
            for row in rows:
                row["is_baseline"] = True
            bad = [r for r in rows if r["status"] != "ok"]
            if bad:
                raise ConfigError(f"baseline {bad[0]['label']} failed ({bad[0].get('error', '')}); see {prefix}/trials")
            spec = _metric_spec(rows)
            progress = _progress_callback(say, cfg.num_trials, stage=SEARCH_EXPERIMENT)
            grid = _tuner(cfg, SEARCH_EXPERIMENT, False, progress, _single_metrics(rows, spec)).fit()
            search_rows = _rows(grid)
            spec = _metric_spec(search_rows, spec)
            rows += search_rows
            _fill_delta_m(rows, spec)
            controls = control_points(rows, cfg.controls, cfg.permutations, cfg.base.search_seed) if cfg.controls else []
            if controls and binding.out_of_time():
                say(f"time budget reached: the controls stage ({len(controls)} trials) is not started")
                controls = []
            if controls:
                progress = _progress_callback(say, len(controls), stage=CONTROL_EXPERIMENT)
                say(f"controls: {len(controls)} trials ({', '.join(cfg.controls)}) at the MAdds of "
                    f"{len({c['control']['tags']['baseline_of'] for c in controls})} front point(s)")
                control_rows = _rows(_tuner(cfg, CONTROL_EXPERIMENT, False, progress, _single_metrics(rows, spec),
                                            controls=controls).fit())
                spec = _metric_spec(control_rows, spec)
                rows += control_rows
        finally:
            if started:
                import ray

                ray.shutdown()
    _fill_delta_m(rows, spec)
    results = write_results(rows, run_dir / "results.parquet")
    long = replicate_rows(rows)
    if long:
        write_results(long, run_dir / REPLICATES_FILE)
    trivial = trivial_row(rows)
    if trivial is not None:
        write_json(run_dir / TRIVIAL_FILE, trivial)
    if spec is not None:
        write_metric_spec(spec, run_dir)
    caches = cfg.caches_root
    lines = _economy(rows, SweepCaches(caches) if caches is not None else None) + [
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
    for name in ("results.parquet", REPLICATES_FILE, TRIVIAL_FILE, "metrics.json", "report"):
        if (run_dir / name).exists():
            sweep_storage.upload(run_dir / name, sweep_storage.join(prefix, name))
    return SweepOutcome(run_dir, results, report_dir, rows, time.perf_counter() - t0)


def _open_study(cfg: SweepConfig, journal_dir: Path, say) -> tuple[Any, str]:
    """The search's Optuna storage (``--optuna-storage``, else ``journal_dir/optuna.journal``) and study name
    (:mod:`branchsweep.sweep.study`), warm-started on request; ``say`` logs where it is (redacted)."""
    import optuna

    from branchsweep.sweep import study

    key = study.study_key(cfg.base, cfg.space.methods)
    storage = study.open_storage(cfg.optuna_storage, journal_dir)
    name = f"{key}-{cfg.prefix.rstrip('/').split('/')[-1]}"
    if cfg.warm_start is not None and not cfg.resume:
        source = study._source_storage(cfg.warm_start, Path(cfg.out) / "optuna-warm") if cfg.warm_start else storage
        target = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                     directions=["minimize" if m == "min" else "maximize"
                                                 for m in cfg.base.objectives.values()])
        count = study.warm_start(target, source, key)
        say(f"warm start: {count} finished trial(s) of earlier sweeps with study key {key} added to study {name}")
    where = redact(cfg.optuna_storage or str(Path(journal_dir) / study.JOURNAL))
    say(f"Optuna study {name} in {where} (optuna-dashboard {where})")
    return storage, name


def finished_trial_results(run_dir: Path) -> list[dict[str, Any]]:
    """The ``result.json`` of every finished trial folder (used to count reruns after a resume)."""
    return [json.loads(p.read_text()) for p in sorted((Path(run_dir) / "trials").glob(f"*/{RESULT_FILE}"))]
