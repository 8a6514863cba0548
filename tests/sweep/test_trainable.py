"""One trial end to end through a Ray Train TorchTrainer inside a Tune function trainable."""

from __future__ import annotations

import json
import math

import pytest
from conftest import tiny_base

from branchsweep.sweep import TrialSettings, sweep_trial

pytestmark = pytest.mark.ray


def test_trial_through_torch_trainer(ray_local, tmp_path):
    from ray import tune

    settings = TrialSettings(base=tiny_base(), run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                             backend="train", cpus_per_trial=1.0, baseline=True)
    assert settings.resolved_backend == "train"
    trainable = tune.with_resources(tune.with_parameters(sweep_trial, settings=settings), settings.tune_resources())
    grid = tune.Tuner(trainable, param_space={"method": "single", "seed": 0},
                      run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="one", verbose=0)).fit()
    result = grid[0]
    assert result.error is None
    m = result.metrics
    assert m["phase"] == "done" and m["method"] == "single" and m["label"] == "Single"
    assert m["madds"] > 0 and m["params"] > 0 and m["delta_m"] == 0.0
    assert {"bent_0/mse", "square_0/mse", "sinc_0/mse"} <= set(m)
    assert not math.isnan(m["bent_0/mse"])
    arch = json.loads(m["arch_json"])
    assert arch["tasks"] == ["bent_0", "square_0", "sinc_0"] and len(arch["layers"]) == 4
    # The worker's report carried a checkpoint (forwarded by TuneReportCallback as its path).
    assert any(k.endswith("checkpoint_dir_name") or "checkpoint" in k for k in m)
    # Ray Train ran the worker loop: its own experiment folder exists next to the trial folders.
    assert (tmp_path / "run" / "ray_train").is_dir()
    assert (tmp_path / "run" / "trials").is_dir()


def test_auto_backend_and_resources():
    s = TrialSettings(base=tiny_base(), run_dir="r", cache_dir="c", gpus_per_trial=1)
    assert s.resolved_backend == "train" and s.tune_resources()["cpu"] < 1
    s = TrialSettings(base=tiny_base(), run_dir="r", cache_dir="c", cpus_per_trial=0.5)
    assert s.resolved_backend == "direct" and s.tune_resources() == {"cpu": 0.5, "gpu": 0}
