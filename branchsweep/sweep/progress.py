"""A trial's side of storage and live progress: restore from the Ray checkpoint, report, persist.

* :func:`restore` fills the trial's node-local working folder from its last Ray checkpoint (which may
  have been written on another node): the Ray checkpoint is the source of truth, so whatever an earlier
  attempt left in the scratch folder of *this* node is discarded first;
* :func:`report_snapshot` reports metrics with a Ray checkpoint of the whole working folder (search or
  retrain checkpoints included) and copies the small files a reader wants (:data:`storage.TRIAL_FILES`)
  to ``<sweep prefix>/trials/<trial id>/``;
* :class:`StepReporter` is the ``on_step`` hook of :func:`branchsweep.pipeline.run_trial`: a checkpoint
  written by the search or the retrain is reported at once (with the folder), plain progress
  (iteration, loss, τ, the search's current exported MAdds) at most every ``every_s`` seconds, so
  ``ray job logs -f``, the Ray dashboard and logger callbacks show movement during hour-long trials.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from branchsweep.sweep import storage

Report = Callable[..., None]


def restore(checkpoint: Any, work: Path) -> bool:
    """Replace ``work`` by the content of ``checkpoint`` (True), or empty it when there is none (False)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as folder:
        shutil.copytree(folder, work, dirs_exist_ok=True)
    return True


def persist(work: Path, trial_uri: str | None) -> None:
    """Copy the trial's small files to ``trial_uri`` (``<prefix>/trials/<trial id>``) in storage."""
    if not trial_uri:
        return
    for name in storage.TRIAL_FILES:
        if (work / name).is_file():
            storage.write_bytes(storage.join(trial_uri, name), (work / name).read_bytes())


def report_snapshot(report: Report, metrics: dict[str, Any], work: Path, trial_uri: str | None) -> None:
    """``report(metrics, checkpoint=...)`` with a Ray checkpoint holding a copy of the working folder.

    The folder is copied first (the trial keeps writing to it); Ray persists the checkpoint to the
    sweep's storage before ``report`` returns, so the copy is removed right after.
    """
    import ray.train

    persist(work, trial_uri)
    with tempfile.TemporaryDirectory(prefix="branchsweep-ckpt-") as tmp:
        shutil.copytree(work, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*.tmp"))
        report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


class StepReporter:
    """``on_step(stage, iteration, info)`` for :func:`~branchsweep.pipeline.run_trial` (see module doc)."""

    def __init__(self, report: Report, work: Path, trial_uri: str | None, every_s: float = 10.0,
                 say: Callable[[str], None] | None = None, where: str = "",
                 pending: dict[str, float] | None = None) -> None:
        self.report, self.work, self.trial_uri, self.every_s, self.say = report, work, trial_uri, every_s, say
        self.where = where
        #: NaN for the searcher's metrics not known before the retrain (Tune checks every result for them).
        self.pending: dict[str, float] = dict(pending) if pending is not None else {"delta_m": math.nan}
        self.base: dict[str, Any] = {"madds": math.nan, **self.pending}
        self.last = time.monotonic()
        self.first: dict[str, int] = {}

    def priced(self, row: dict[str, Any]) -> None:
        """The exported architecture's row: later progress reports carry its MAdds."""
        self.base = {**self.pending, **row}

    def __call__(self, stage: str, iteration: int, info: dict[str, Any]) -> None:
        if stage not in self.first:
            self.first[stage] = iteration
            if self.say is not None:
                self.say(f"{stage}: first step this attempt is iteration {iteration}{self.where}")
        # "loss/<task>" becomes "<stage>/loss.<task>": a metric name must not be a path prefix of another
        # (MLflow's file store keeps "retrain/loss" as a file).
        values = {f"{stage}/{k.replace('/', '.')}": float(v) for k, v in info.items()
                  if k != "checkpoint" and _number(v)}
        metrics = {**self.base, **values, "phase": stage, "stage_iteration": int(iteration)}
        if info.get("checkpoint"):
            report_snapshot(self.report, metrics, self.work, self.trial_uri)
            self.last = time.monotonic()
        elif time.monotonic() - self.last >= self.every_s:
            self.report(metrics)
            self.last = time.monotonic()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
