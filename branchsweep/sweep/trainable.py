"""The Ray Tune function trainable: one sweep trial, run directly or inside a Ray Train ``TorchTrainer``.

Two backends, one trial body (:func:`branchsweep.pipeline.run_trial`):

* ``train``: the Tune function builds a ``TorchTrainer`` (``ScalingConfig(num_workers=1,
  use_gpu=...)``) whose worker loop runs the trial and calls ``ray.train.report`` from rank 0;
  ``TuneReportCallback`` forwards the reports to Tune. This is the Ray 2.60 (Train V2) pattern for
  Train inside Tune, and what GPU trials use: the worker is placed on a GPU node and gets its device.
* ``direct``: the Tune function runs the trial in its own (reused) worker process and reports with
  ``ray.tune.report``. A TorchTrainer costs a worker-group start-up of tens of seconds per trial on a
  2-core machine; a CPU-only sweep gains nothing from it, so ``auto`` picks ``direct`` there.

A trial works in node-local scratch and reports: when the architecture is exported and priced, after
every search or retrain checkpoint (each with a Ray checkpoint of its working folder, so a retry on any
node resumes from there: :mod:`branchsweep.sweep.progress`), progress every few seconds, and at the end
with the full result row. Its small files are copied to ``<sweep prefix>/trials/<trial id>/``.

A ``train`` trial whose retrain another live trial is already running (same retrain key, see
:meth:`~branchsweep.pipeline.caches.RetrainCache.get_or_claim`) does not wait in its Train worker, which
holds the trial's GPU: the worker reports ``phase="waiting"`` with a checkpoint and ends, the Tune
function (a sliver of CPU) waits for the cache entry, then starts a new ``TorchTrainer`` under the same
``RunConfig(name, storage_path)``, which Train V2 restores: its worker gets the waiting checkpoint from
``ray.train.get_checkpoint()``, resumes the trial and reuses the entry. ``direct`` trials hold no GPU
and wait in place.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from branchsweep.errors import ConfigError
from branchsweep.pipeline import RESULT_FILE, RetrainClaimed, SweepCaches, run_trial
from branchsweep.sweep.space import SweepBase, to_trial_config

BACKENDS = ("auto", "train", "direct")
#: Ray checkpoints (full copies of a trial's working folder) each trial keeps, in Tune (direct) or Train.
TRIAL_CHECKPOINTS_KEPT = 2
#: How a standard-error column ``<metric>/se`` travels through Tune: as ``<metric>.se``. Loggers that
#: store a metric per file (MLflow's file store) cannot hold ``x/mse`` and ``x/mse/se`` side by side.
SE_SUFFIX, REPORTED_SE_SUFFIX = "/se", ".se"


def reported(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``<metric>/se`` keys renamed ``<metric>.se`` (undone by :func:`unreported`).

    >>> reported({"a/mse": 1.0, "a/mse/se": 0.1, "delta_m/se": 0.2})
    {'a/mse': 1.0, 'a/mse.se': 0.1, 'delta_m.se': 0.2}
    """
    return {(k[: -len(SE_SUFFIX)] + REPORTED_SE_SUFFIX if k.endswith(SE_SUFFIX) else k): v for k, v in row.items()}


def unreported(row: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`reported`.

    >>> unreported({"a/mse.se": 0.1, "delta_m.se": 0.2, "label": "x"})
    {'a/mse/se': 0.1, 'delta_m/se': 0.2, 'label': 'x'}
    """
    return {(k[: -len(REPORTED_SE_SUFFIX)] + SE_SUFFIX if k.endswith(REPORTED_SE_SUFFIX) else k): v
            for k, v in row.items()}


@dataclass
class TrialSettings:
    """How trials run: shared base config, folders, backend and per-trial resources."""

    base: SweepBase
    run_dir: str
    cache_dir: str
    backend: str = "auto"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    baseline: bool = False
    #: Where Ray Train persists a trial's checkpoints: the sweep's storage (a shared folder or cloud URI
    #: on a multi-node cluster, where the GPU worker is not on the driver's node).
    train_storage: str | None = None
    #: Imported by every trial before its method is looked up (:func:`branchsweep.registry.import_plugins`).
    plugins: tuple[str, ...] = ()
    # --- storage (branchsweep.sweep.storage): the sweep's prefix, node-local scratch, driver-given Δm reference
    #: The sweep's prefix (folder or URI): trials copy their small files to ``<sweep_uri>/trials/<id>/``.
    sweep_uri: str | None = None
    #: Root of the trials' working folders on each node (None: ``$BRANCHSWEEP_SCRATCH`` or the temp folder).
    scratch: str | None = None
    #: The Single baseline's metrics, measured by the baseline stage and handed to every search trial.
    baseline_metrics: dict[str, float] | None = None
    #: Seconds between plain progress reports (checkpoints are reported at once).
    progress_every_s: float = 10.0

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        if self.backend == "direct" and self.gpus_per_trial > 0:
            raise ConfigError("--backend direct runs no Ray Train worker; GPU trials need --backend train or auto")

    @property
    def resolved_backend(self) -> str:
        """``auto``: Ray Train when GPUs are requested, the plain Tune function otherwise."""
        if self.backend != "auto":
            return self.backend
        return "train" if self.gpus_per_trial > 0 else "direct"

    def tune_resources(self) -> dict[str, float]:
        """Resources of the Tune trial itself: all of the trial's CPUs (direct) or a sliver (train).

        With ``train`` the work happens in the Train worker, which reserves its own CPUs/GPUs; the Tune
        function only waits, so it holds 0.1 CPU (Ray rejects 0) and cannot starve the worker.
        """
        if self.resolved_backend == "direct":
            return {"cpu": self.cpus_per_trial, "gpu": 0}
        return {"cpu": 0.1, "gpu": 0}


def _execute(payload: dict[str, Any], report, get_checkpoint, device: str | None) -> dict[str, Any] | None:
    """Run (or resume from the Ray checkpoint) one trial and report through ``report(metrics, checkpoint=...)``.

    With ``payload["defer_claimed"]`` a retrain claimed by another live trial ends this attempt instead
    of waiting in it: the trial reports ``phase="waiting"`` (with a checkpoint of its folder) and this
    returns ``{"waiting": {"retrain_key": ..., "claimed_by": ...}}`` for the caller to wait and resume
    it; otherwise None."""
    import torch

    from branchsweep.pipeline import TrialConfig, TrialLog
    from branchsweep.registry import import_plugins
    from branchsweep.sweep.progress import StepReporter, report_snapshot, restore

    import_plugins(payload.get("plugins", ()))
    _resolve_scratch(payload)
    work, trial_uri = Path(payload["work"]), payload.get("trial_uri")
    threads = max(1, int(payload["cpus"]))
    torch.set_num_threads(threads)
    resumed = restore(get_checkpoint(), work)
    if not (work / RESULT_FILE).is_file() and _fetch_result(trial_uri, work):
        resumed = True  # finished, but the restored experiment state predates its last checkpoint
    if resumed and (work / RESULT_FILE).is_file():
        row = json.loads((work / RESULT_FILE).read_text())
        report_snapshot(report, reported({**row, "phase": "done", "resumed": True}), work, trial_uri)
        return
    cfg = TrialConfig.from_dict(payload["trial"])
    say = TrialLog(work / "trial.log", cfg.display_label)
    # Tune checks every result for the searcher's metrics: those known only after the retrain are NaN until then.
    pending = {"delta_m": math.nan, **({"latency_ms": math.nan} if cfg.latency is not None else {})}
    steps = StepReporter(report, work, trial_uri, payload.get("progress_every_s", 10.0), say=say, where=_node(),
                         pending=pending)
    waited = payload.get("waited")
    if resumed and waited:
        say(f"resumed in a new Train worker{_node()} after waiting {waited['waited_s']:.1f} s, holding no "
            f"worker, for the retrain of {waited['retrain_key']} by trial {waited['claimed_by']}")

    def on_phase(phase: str, row: dict[str, Any]) -> None:
        steps.priced(row)
        report_snapshot(report, {**pending, **row, "phase": phase}, work, trial_uri)

    try:
        row = run_trial(cfg, work, SweepCaches(Path(payload["cache_dir"])), resume=resumed, device=device,
                        on_phase=on_phase, baseline_metrics=payload.get("baseline_metrics"), on_step=steps,
                        defer_claimed=bool(payload.get("defer_claimed")))
    except RetrainClaimed as claimed:
        waiting = {"retrain_key": claimed.key, "claimed_by": claimed.holder}
        report_snapshot(report, {**steps.base, "phase": "waiting", **waiting}, work, trial_uri)
        return {"waiting": waiting}
    report_snapshot(report, reported({**row, "phase": "done", "resumed": resumed}), work, trial_uri)
    if trial_uri:  # scratch: everything is in the Ray checkpoint and in storage now
        shutil.rmtree(work, ignore_errors=True)
    return None


def _node() -> str:
    """`` (node <Ray node id>)`` for log lines ("" outside Ray): which node an attempt ran on."""
    try:
        import ray

        return f" (node {ray.get_runtime_context().get_node_id()})" if ray.is_initialized() else ""
    except Exception:  # a Ray without a runtime context here: the line goes without it
        return ""


def _resolve_scratch(payload: dict[str, Any]) -> None:
    """Set ``work`` (and a node-local ``cache_dir`` when the sweep has no shared one) on the node that runs
    the trial: a Train worker may be on another node than the Tune function, with its own scratch."""
    if "work_rel" not in payload:
        return
    from branchsweep.sweep import storage

    root = Path(payload["scratch"]) if payload.get("scratch") else storage.scratch_root()
    payload["work"] = str(root / payload["work_rel"])
    if not payload.get("cache_dir"):  # a cloud prefix without --cache-dir: each node caches in its scratch
        payload["cache_dir"] = str(root / Path(payload["work_rel"]).parent / "cache")


def _fetch_result(trial_uri: str | None, work: Path) -> bool:
    """Copy this trial's persisted files from storage when it already finished there (True)."""
    from branchsweep.sweep import storage

    if not trial_uri or not storage.exists(storage.join(trial_uri, RESULT_FILE)):
        return False
    for name in storage.TRIAL_FILES:
        if storage.exists(storage.join(trial_uri, name)):
            (work / name).write_bytes(storage.read_bytes(storage.join(trial_uri, name)))
    return True


def _train_worker_loop(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train worker loop: the trial on this worker's device; only rank 0 reports a checkpoint. Returns
    what :func:`_execute` returns (``Result.return_value`` of the trainer: rank 0's)."""
    import ray.train
    import ray.train.torch

    rank = ray.train.get_context().get_world_rank()
    device = str(ray.train.torch.get_device()) if payload["use_gpu"] else "cpu"

    def report(metrics: dict[str, Any], checkpoint: Any = None) -> None:
        ray.train.report(metrics, checkpoint=checkpoint if rank == 0 else None)

    return _execute(payload, report, ray.train.get_checkpoint, device)


def sweep_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """The Tune function trainable (wrap with ``tune.with_parameters(sweep_trial, settings=...)``)."""
    from ray import tune

    from branchsweep.registry import import_plugins

    import_plugins(settings.plugins)
    trial_id = tune.get_context().get_trial_id()
    cfg = to_trial_config(config, settings.base, baseline=settings.baseline)
    payload = {
        "trial": cfg.to_dict(), "work": str(Path(settings.run_dir) / "trials" / str(trial_id)),
        "cache_dir": settings.cache_dir, "cpus": settings.cpus_per_trial, "use_gpu": settings.gpus_per_trial > 0,
    }
    payload["plugins"] = list(settings.plugins)
    payload.update(_storage_payload(settings, str(trial_id)))
    if settings.resolved_backend == "direct":
        _execute(payload, tune.report, tune.get_checkpoint, None)
        return
    # A retrain claimed by another trial is waited for here, not in the Train worker (which holds the GPU);
    # only where this process sees the claims: a shared cache folder (not each node's scratch).
    payload["defer_claimed"] = bool(settings.cache_dir)
    while True:
        result = _trainer(settings, trial_id, payload).fit()
        waiting = (result.return_value or {}).get("waiting")
        if not waiting:
            return
        waited = _wait_for_retrain(payload, str(trial_id), waiting)
        if waited is None:  # this node does not see the claim: the next attempt waits in its worker
            payload["defer_claimed"] = False
            payload.pop("waited", None)
        else:
            payload["waited"] = waited


def _trainer(settings: TrialSettings, trial_id: str, payload: dict[str, Any]):
    """The trial's ``TorchTrainer``. The same ``RunConfig(name, storage_path)`` every time: a later one
    (a Tune retry, or the attempt after a wait) restores the run, and its worker the latest checkpoint."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    resources = {"CPU": settings.cpus_per_trial}
    if settings.gpus_per_trial > 0:
        resources["GPU"] = settings.gpus_per_trial
    return TorchTrainer(
        _train_worker_loop,
        train_loop_config=payload,
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=settings.gpus_per_trial > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=f"train-{trial_id}",
            storage_path=settings.train_storage or str(Path(settings.run_dir) / "ray_train"),
            callbacks=[TuneReportCallback()],
            # Every checkpoint is a full copy of the trial folder (its latest search and retrain checkpoints):
            # the two latest are kept, as for the direct backend's Tune checkpoints.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=TRIAL_CHECKPOINTS_KEPT),
        ),
    )


def _wait_for_retrain(payload: dict[str, Any], trial_id: str, waiting: dict[str, str]) -> dict[str, Any] | None:
    """In the Tune function, after the trial's Train worker ended: wait until the retrain it found claimed
    is cached (or its claim is gone or stale), holding no worker; ``{**waiting, "waited_s": ...}``, or
    None when this process sees neither the entry nor the claim (a cache folder it cannot see)."""
    cache = SweepCaches(Path(payload["cache_dir"])).retrain
    key, holder = waiting["retrain_key"], waiting["claimed_by"]
    try:
        if cache.get(key) is None and cache.claimant(key) is None:
            return None
    except OSError:  # e.g. a cache folder mounted on the GPU nodes only
        return None
    print(f"[trial {trial_id}] retrain {key} is claimed by trial {holder}: Train worker ended, waiting for "
          "its result here without holding a worker (or its GPU)", flush=True)
    t0 = time.monotonic()
    cache.wait_for(key, owner=trial_id)
    return {**waiting, "waited_s": time.monotonic() - t0}


def _storage_payload(settings: TrialSettings, trial_id: str) -> dict[str, Any]:
    """Where this trial works (node-local scratch, resolved by :func:`_resolve_scratch` on the node that
    runs it), where it persists, and the Δm reference."""
    if settings.sweep_uri is None:  # a bare TrialSettings (no storage prefix): the run folder, as before
        return {}
    from branchsweep.sweep import storage

    sweep_id = str(settings.sweep_uri).rstrip("/").split("/")[-1]
    return {"work_rel": f"{sweep_id}/{trial_id}", "scratch": settings.scratch,
            "trial_uri": storage.join(settings.sweep_uri, "trials", trial_id),
            "baseline_metrics": settings.baseline_metrics, "progress_every_s": settings.progress_every_s}


def worker_env() -> dict[str, str]:
    """Environment for Ray workers: fast Train health checks (each report waits for one), one OpenMP
    thread per process. Authentication is left as the cluster has it (token auth is Ray's default)."""
    env = {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    # Passed on when set: a cold GPU node boots for longer than Train's 60 s default (sweeps/cluster.yaml).
    if os.environ.get("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"):
        env["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"]
    return env
