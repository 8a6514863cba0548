"""Measured latency as a cost: a trial with ``latency`` settings records ``latency_ms`` (also when its
retrain is reused from the cache), and the sweep's ``--cost`` picks Optuna's objectives (the sweep
scripts' latency-flag mistakes are in tests/sweep/test_sweep_scripts.py)."""

from __future__ import annotations

import math

import pytest

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.errors import ConfigError
from branchsweep.pipeline import SweepCaches, TrialConfig, run_trial
from branchsweep.sweep import SweepBase
from branchsweep.sweep.space import to_trial_config

DATA = DataConfig(dataset="ltb-synthetic", train_samples=64, val_samples=16, tasks=["bent_0", "square_0", "sinc_0"])
MODEL = ModelConfig(backbone="mlp", width=0.16)
TRAIN = TrainConfig(iterations=4, batch_size=16, eval_batch_size=16, progress=False)
LATENCY = {"batch": 2, "threads": 1, "warmup": 1, "repeats": 5}


def test_trial_records_latency_also_for_a_cached_retrain(tmp_path):
    caches = SweepCaches(tmp_path / "cache")
    cfg = TrialConfig(method="shared", data=DATA, model=MODEL, train=TRAIN, latency=LATENCY)
    first = run_trial(cfg, tmp_path / "a", caches)
    again = run_trial(cfg, tmp_path / "b", caches)
    assert again["retrain_cached"]
    for row in (first, again):
        assert math.isfinite(row["latency_ms"]) and 0 < row["latency_ms"] <= row["latency_ms/p90"]
        assert row["latency_settings"] == "cpu, batch 2, 1 thread, torch"
    assert "latency (cpu, batch 2, 1 thread, torch): median" in (tmp_path / "b" / "trial.log").read_text()
    plain = run_trial(TrialConfig(method="shared", data=DATA, model=MODEL, train=TRAIN), tmp_path / "c", caches)
    assert "latency_ms" not in plain and plain["retrain_cached"]  # latency settings are not in the retrain key


def test_bad_latency_settings_fail_before_any_work():
    with pytest.raises(ConfigError, match="latency batch"):
        TrialConfig(method="shared", data=DATA, model=MODEL, train=TRAIN, latency={"batch": 0}).validate()
    with pytest.raises(ConfigError, match="latency settings"):
        TrialConfig(method="shared", data=DATA, model=MODEL, train=TRAIN, latency={"batches": 2}).validate()


@pytest.mark.parametrize("cost,objectives", [
    ("madds", {"madds": "min", "delta_m": "max"}),
    ("latency", {"latency_ms": "min", "delta_m": "max"}),
    ("both", {"madds": "min", "latency_ms": "min", "delta_m": "max"}),
])
def test_sweep_cost_sets_objectives_and_trial_latency(cost, objectives):
    base = SweepBase(data=DATA, model=MODEL, train=TRAIN, cost=cost, latency={"threads": 2})
    assert base.objectives == objectives
    trial = to_trial_config({"method": "single"}, base, baseline=True)
    assert trial.latency == (None if cost == "madds" else {"threads": 2})


def test_study_key_keeps_madds_sweeps_and_separates_latency_ones():
    from branchsweep.sweep.study import study_key

    madds = SweepBase(data=DATA, model=MODEL, train=TRAIN)
    assert study_key(madds, ("bmtas",)) == study_key(SweepBase(data=DATA, model=MODEL, train=TRAIN, cost="madds",
                                                               latency={"threads": 4}), ("bmtas",))
    assert study_key(SweepBase(data=DATA, model=MODEL, train=TRAIN, cost="latency"), ("bmtas",)) != study_key(
        madds, ("bmtas",))

