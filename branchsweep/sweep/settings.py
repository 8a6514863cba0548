"""One sweep's settings (:class:`SweepConfig`), validated once, and where its files go.

The sweep's prefix (``--resume``'s target, ``<storage_path>/<name>-<run id>``, or the run folder) holds
Tune's experiments (``<prefix>/tune``), ``sweep.json``, ``sweep.log``, the Optuna journal and, for a local
prefix, the shared caches; :meth:`SweepConfig.trial_settings` is what every trial of one stage receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchsweep.errors import ConfigError
from branchsweep.pipeline import BASELINES
from branchsweep.sweep import record as sweep_record_file
from branchsweep.sweep import storage as sweep_storage
from branchsweep.sweep.redact import refuse_userinfo
from branchsweep.sweep.space import SearchSpace, SweepBase
from branchsweep.sweep.trainable import TrialSettings


def _new_run_id() -> str:
    return sweep_storage.new_run_id()


@dataclass
class SweepConfig:
    """One sweep, validated once. ``out`` is the run folder; ``storage_path`` (a folder or a cloud URI
    Ray supports, e.g. ``s3://bucket/sweeps``) holds Tune's experiment state and defaults to ``out/tune``.

    ``points``: parameter dicts evaluated before Optuna samples (e.g. the paper's settings). ``num_cpus``:
    the CPUs of a local Ray started by the sweep (None: all); ignored when joining a cluster. ``local``:
    start a private Ray instance even where a ``ray start`` cluster runs (``--local``; see
    :func:`branchsweep.sweep.cluster.connect_ray`).
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
    #: other kind in ``controls`` at its MAdds (BMTAS Table 3, Figure 2): registered search methods that
    #: are controls (:func:`branchsweep.search.base.control_methods`: ``permuted``, ``vanilla``, ``random``);
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
        import branchsweep.search  # noqa: F401  (registers every search method)
        from branchsweep.search.base import control_methods

        known = control_methods()
        for kind in self.controls:
            if kind not in known:
                raise ConfigError(f"unknown control {kind!r} (known: {', '.join(known)})")
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
