"""The Ray Tune function trainable: one sweep trial, run directly or inside a Ray Train ``TorchTrainer``.

Two backends, one trial body (:func:`branchsweep.pipeline.run_trial`):

* ``train``: the Tune function builds a ``TorchTrainer`` (``ScalingConfig(num_workers=1,
  use_gpu=...)``) whose worker loop runs the trial and calls ``ray.train.report`` from rank 0;
  ``TuneReportCallback`` forwards the reports to Tune. This is the Ray 2.60 (Train V2) pattern for
  Train inside Tune, and what GPU trials use: the worker is placed on a GPU node and gets its device.
* ``direct``: the Tune function runs the trial in its own (reused) worker process and reports with
  ``ray.tune.report``. A TorchTrainer costs a worker-group start-up of tens of seconds per trial on a
  2-core machine; a CPU-only sweep gains nothing from it, so ``auto`` picks ``direct`` there.

A trial reports twice: once when the architecture is exported and priced (with a checkpoint holding
it, so a retried trial skips the search) and once at the end with the full result row.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from branchsweep.errors import ConfigError
from branchsweep.pipeline import ARCH_FILE, RESULT_FILE, SweepCaches, run_trial
from branchsweep.sweep.space import SweepBase, to_trial_config

BACKENDS = ("auto", "train", "direct")
#: Files of a trial's folder copied into its Ray checkpoint (small: the exported tree and the result).
CHECKPOINT_FILES = (ARCH_FILE, "search_info.json", RESULT_FILE)


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


def _report_with_snapshot(report, metrics: dict[str, Any], work: Path) -> None:
    """``report(metrics, checkpoint=...)`` with a Ray checkpoint of the trial folder's small files.

    The files are copied to a temporary folder (the trial folder keeps changing); Ray persists the
    checkpoint to the run's storage before ``report`` returns, so the copy is removed right after.
    """
    import ray.train

    with tempfile.TemporaryDirectory(prefix="branchsweep-ckpt-") as tmp:
        for name in CHECKPOINT_FILES:
            if (work / name).is_file():
                shutil.copy2(work / name, Path(tmp) / name)
        report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _restore(checkpoint: Any, work: Path) -> bool:
    """Copy a Ray checkpoint's files back into the trial folder (it may be on another node)."""
    if checkpoint is None:
        return False
    work.mkdir(parents=True, exist_ok=True)
    with checkpoint.as_directory() as folder:
        for name in CHECKPOINT_FILES:
            src = Path(folder) / name
            if src.is_file() and not (work / name).is_file():
                shutil.copy2(src, work / name)
    return True


def _execute(payload: dict[str, Any], report, get_checkpoint, device: str | None) -> None:
    """Run (or resume) one trial and report through ``report(metrics, checkpoint=...)``."""
    import torch

    from branchsweep.registry import import_plugins

    import_plugins(payload.get("plugins", ()))
    work = Path(payload["work"])
    threads = max(1, int(payload["cpus"]))
    torch.set_num_threads(threads)
    resumed = _restore(get_checkpoint(), work) or (work / ARCH_FILE).is_file()
    if resumed and (work / RESULT_FILE).is_file():
        row = json.loads((work / RESULT_FILE).read_text())
        _report_with_snapshot(report, {**row, "phase": "done", "resumed": True}, work)
        return
    from branchsweep.pipeline import TrialConfig

    cfg = TrialConfig.from_dict(payload["trial"])

    def on_phase(phase: str, row: dict[str, Any]) -> None:
        # Tune checks every result for the searcher's metrics; Δm is unknown until the retrain.
        _report_with_snapshot(report, {"delta_m": math.nan, **row, "phase": phase}, work)

    row = run_trial(cfg, work, SweepCaches(Path(payload["cache_dir"])), resume=resumed, device=device,
                    on_phase=on_phase)
    _report_with_snapshot(report, {**row, "phase": "done", "resumed": resumed}, work)


def _train_worker_loop(payload: dict[str, Any]) -> None:
    """Ray Train worker loop: the trial on this worker's device; only rank 0 reports a checkpoint."""
    import ray.train
    import ray.train.torch

    rank = ray.train.get_context().get_world_rank()
    device = str(ray.train.torch.get_device()) if payload["use_gpu"] else "cpu"

    def report(metrics: dict[str, Any], checkpoint: Any = None) -> None:
        ray.train.report(metrics, checkpoint=checkpoint if rank == 0 else None)

    _execute(payload, report, ray.train.get_checkpoint, device)


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
    if settings.resolved_backend == "direct":
        _execute(payload, tune.report, tune.get_checkpoint, None)
        return
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    resources = {"CPU": settings.cpus_per_trial}
    if settings.gpus_per_trial > 0:
        resources["GPU"] = settings.gpus_per_trial
    trainer = TorchTrainer(
        _train_worker_loop,
        train_loop_config=payload,
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=settings.gpus_per_trial > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=f"train-{trial_id}",
            storage_path=settings.train_storage or str(Path(settings.run_dir) / "ray_train"),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def worker_env() -> dict[str, str]:
    """Environment for Ray workers: fast Train health checks (each report waits for one), no auth token."""
    return {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"),
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
