"""Sweep and trial settings that are checked before Ray starts (no Ray instance in this module)."""

from __future__ import annotations

import pytest
from conftest import tiny_base

from branchsweep.errors import ConfigError
from branchsweep.sweep import SearchSpace, SweepConfig, TrialSettings, connect_ray


def test_resume_without_unfinished_sweep_is_a_config_error(tmp_path):
    cfg = SweepConfig(name="t", out=tmp_path / "nothing", base=tiny_base(), space=SearchSpace(), resume=True)
    with pytest.raises(ConfigError, match="holds no sweep to resume"):
        cfg.validate()


def test_auto_backend_and_resources():
    s = TrialSettings(base=tiny_base(), run_dir="r", cache_dir="c", gpus_per_trial=1)
    assert s.resolved_backend == "train" and s.tune_resources() == {"cpu": 0.1, "gpu": 0}
    s = TrialSettings(base=tiny_base(), run_dir="r", cache_dir="c", cpus_per_trial=0.5)
    assert s.resolved_backend == "direct" and s.tune_resources() == {"cpu": 0.5, "gpu": 0}
    with pytest.raises(ConfigError, match="GPU trials need --backend train or auto"):
        TrialSettings(base=tiny_base(), run_dir="r", cache_dir="c", backend="direct", gpus_per_trial=1).validate()


def test_local_with_a_cluster_address_is_a_user_error(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    with pytest.raises(ConfigError, match=r"--local starts a private Ray instance, but RAY_ADDRESS=127\.0\.0\.1:6379"):
        connect_ray(local=True)
    assert not ray.is_initialized()
