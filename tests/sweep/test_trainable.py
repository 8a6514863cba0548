"""Trials end to end through a Ray Train TorchTrainer inside a Tune function trainable: one alone, and
two with the same retrain, the second of which gives its Train worker back while it waits."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from pathlib import Path

import pytest
from conftest import tiny_base

from branchsweep.arch import BranchConfig
from branchsweep.pipeline import SweepCaches, compute_delta_m, run_trial
from branchsweep.sweep import TrialSettings, sweep_trial, to_trial_config
from branchsweep.sweep.trainable import TRIAL_CHECKPOINTS_KEPT

pytestmark = pytest.mark.ray


def test_trial_through_torch_trainer(ray_local, tmp_path):
    from ray import tune
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

    base = tiny_base()
    # A retrain checkpoint every 3 of 10 iterations: with the priced and final reports, 5 Ray checkpoints
    # (each a copy of the trial folder), of which the TorchTrainer keeps the latest 2.
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, checkpoint_every=3))
    # The Single baseline in the trial's cache (run here, without Ray): the Shared trial's Δm is then
    # measured against it, so Δm is a real comparison and not 0 by definition.
    single = run_trial(to_trial_config({"method": "single"}, base, baseline=True), tmp_path / "single",
                       SweepCaches(tmp_path / "cache"))
    settings = TrialSettings(base=base, run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                             backend="train", cpus_per_trial=1.0, baseline=True)
    assert settings.resolved_backend == "train"
    trainable = tune.with_resources(tune.with_parameters(sweep_trial, settings=settings), settings.tune_resources())
    grid = tune.Tuner(trainable, param_space={"method": "shared"},
                      run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="one", verbose=0)).fit()
    result = grid[0]
    assert result.error is None
    m = result.metrics
    assert m["phase"] == "done" and m["method"] == "shared" and m["label"] == "Shared"
    assert 0 < m["madds"] < single["madds"] and 0 < m["params"] < single["params"]
    assert {"bent_0/mse", "square_0/mse", "sinc_0/mse"} <= set(m)
    assert not math.isnan(m["bent_0/mse"]) and not m["retrain_cached"]
    directions = {f"{t}/mse": "min" for t in ("bent_0", "square_0", "sinc_0")}
    assert m["delta_m"] == compute_delta_m(m, single, directions) and m["delta_m"] != 0.0
    arch = json.loads(m["arch_json"])
    assert arch["tasks"] == ["bent_0", "square_0", "sinc_0"] and len(arch["layers"]) == 4
    assert BranchConfig.from_dict(arch) == BranchConfig.shared(arch["tasks"], 4)
    # The Train worker's last report carried a checkpoint (TuneReportCallback forwards its path): it
    # holds the exported architecture and the final row of this trial.
    checkpoint = Path(m[CHECKPOINT_PATH_KEY])
    assert checkpoint.is_dir() and checkpoint.is_relative_to(tmp_path / "run" / "ray_train")
    assert BranchConfig.load(checkpoint / "branch_config.json").arch_hash() == m["arch_hash"]
    saved = json.loads((checkpoint / "result.json").read_text())
    assert saved["arch_hash"] == m["arch_hash"] and saved["delta_m"] == m["delta_m"]
    kept = sorted(p for p in checkpoint.parent.glob("checkpoint_*") if p.is_dir())
    assert len(kept) == TRIAL_CHECKPOINTS_KEPT and checkpoint in kept, kept
    assert (tmp_path / "run" / "trials").is_dir()


def _wait_until(condition, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


@pytest.mark.slow
def test_trial_waiting_for_another_trials_retrain_gives_its_train_worker_back(ray_local, tmp_path):
    """Two Single trials at once (same architecture and retrain settings: one retrain key), each in its
    TorchTrainer with a 0.9-CPU worker. Whichever claims the key first is held in its retrain
    (sweep_hooks ``hold-retrain``); the other finds the claim, reports ``phase="waiting"`` and its Train
    worker ends: its 0.9 CPU goes back to Ray (only the claimant's worker and the two 0.1-CPU Tune
    functions hold CPUs) and its Tune function prints that it waits. Only then does the retrain go on;
    the waiting trial's second TorchTrainer resumes it from the waiting checkpoint and reuses the entry.
    One retrain in all, and both rows hold the same content but for who trained."""
    import ray
    from ray import tune

    hooks = ray_local / "hooks"
    (hooks / "hold-retrain").touch()
    prefix = tmp_path / "prefix"
    settings = TrialSettings(base=tiny_base(), run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                             backend="train", cpus_per_trial=0.9, baseline=True, sweep_uri=str(prefix),
                             scratch=str(tmp_path / "scratch"), progress_every_s=60.0)
    logs = lambda: {p.parent.name: p.read_text() for p in (prefix / "trials").glob("*/trial.log")}  # noqa: E731
    # What Ray's worker processes print (the Tune functions' lines among them), in the fixture's RAY_TMPDIR.
    printed = lambda: "".join(p.read_text(errors="replace") for p in (ray_local / "r").rglob("worker-*.out"))  # noqa: E731
    seen: dict[str, object] = {}

    def watch() -> None:
        """Let the held retrain go on once the other trial's worker has deferred and ended (its CPU is free
        again) and its Tune function waits."""
        try:
            seen["deferred"] = _wait_until(lambda: any("without holding the worker" in t for t in logs().values()),
                                           240)
            seen["held"] = bool(list(hooks.glob("retrain-held-*")))
            seen["freed"] = seen["deferred"] and _wait_until(
                lambda: ray.available_resources().get("CPU", 0.0) >= 0.9 - 1e-6, 60)
            seen["cpu"] = ray.available_resources().get("CPU", 0.0)
            seen["tune_waits"] = seen["freed"] and _wait_until(
                lambda: "Train worker ended, waiting for its result here" in printed(), 60)
        finally:
            (hooks / "retrain-open").touch()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        trainable = tune.with_resources(tune.with_parameters(sweep_trial, settings=settings),
                                        settings.tune_resources())
        grid = tune.Tuner(trainable, param_space={"method": tune.grid_search(["single", "single"])},
                          tune_config=tune.TuneConfig(max_concurrent_trials=2),
                          run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="two", verbose=0)).fit()
    finally:
        (hooks / "retrain-open").touch()
        watcher.join(timeout=60)
        for name in ("hold-retrain", "retrain-open"):
            (hooks / name).unlink(missing_ok=True)
        for marker in hooks.glob("retrain-held-*"):
            marker.unlink()
    assert seen.get("deferred") and seen.get("held"), seen
    assert seen.get("freed"), f"the waiting trial's Train worker still held its CPU: {seen}"
    assert seen.get("tune_waits"), seen
    assert [r.error for r in grid] == [None, None]
    assert all(r.metrics["phase"] == "done" for r in grid)

    texts = logs()
    assert len(texts) == 2
    waiter = [t for t, text in texts.items() if "without holding the worker" in text]
    assert len(waiter) == 1, texts
    claimant = next(t for t in texts if t not in waiter)
    text = texts[waiter[0]]
    # The first Train worker deferred and ended; a second TorchTrainer restored the trial from the
    # waiting checkpoint (the export with it) and reused the claimant's retrain.
    order = ["exported ", "without holding the worker", "resumed in a new Train worker",
             "architecture already exported by an earlier attempt", "retrain seed 0 skipped", " done: "]
    at = [text.find(line) for line in order]
    assert -1 not in at and at == sorted(at), text
    assert text.count("resumed in a new Train worker") == 1 and text.count(" done: ") == 1
    assert f"by trial {claimant}" in text
    assert sum(t.count("] retraining ") for t in texts.values()) == 1 and "] retraining " in texts[claimant]

    rows = {t: json.loads((prefix / "trials" / t / "result.json").read_text()) for t in texts}
    mine, theirs = rows[waiter[0]], rows[claimant]
    assert mine["retrain_cached"] and not theirs["retrain_cached"]
    assert mine["retrain_time_s"] == 0.0 < theirs["retrain_time_s"]
    assert mine["delta_m"] == 0.0 and all(math.isfinite(mine[k]) for k in mine if k.endswith("/mse"))
    who = ("trial_time_s", "retrain_time_s", "retrain_cached", "replicates_json")
    assert set(mine) == set(theirs)
    same = lambda row: json.dumps({k: v for k, v in row.items() if k not in who}, sort_keys=True)  # noqa: E731
    assert same(mine) == same(theirs)  # JSON text: the NaN standard errors (one seed) compare equal
    by_tune = {r.metrics["trial_id"]: r for r in grid}
    assert by_tune[waiter[0]].metrics["retrain_cached"] and by_tune[waiter[0]].metrics["bent_0/mse"] == theirs["bent_0/mse"]
    assert "waiting" in set(by_tune[waiter[0]].metrics_dataframe["phase"])
    assert "waiting" not in set(by_tune[claimant].metrics_dataframe["phase"])
