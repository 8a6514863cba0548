"""One trial end to end through a Ray Train TorchTrainer inside a Tune function trainable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import tiny_base

from branchsweep.arch import BranchConfig
from branchsweep.pipeline import SweepCaches, compute_delta_m, run_trial
from branchsweep.sweep import TrialSettings, sweep_trial, to_trial_config

pytestmark = pytest.mark.ray


def test_trial_through_torch_trainer(ray_local, tmp_path):
    from ray import tune
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

    base = tiny_base()
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
    assert (tmp_path / "run" / "trials").is_dir()
