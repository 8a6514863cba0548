"""The trial pipeline without Ray: baselines, Δm, MAdds before retraining, retrain dedup, NaN failures."""

from __future__ import annotations

import math

import pytest

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.errors import ConfigError
from branchsweep.pipeline import SweepCaches, TrialConfig, compute_delta_m, run_trial
from branchsweep.train import NonFiniteLossError

DATA = DataConfig(dataset="ltb-synthetic", train_samples=64, val_samples=16, tasks=["bent_0", "square_0", "sinc_0"])
MODEL = ModelConfig(width=0.16)
TRAIN = TrainConfig(iterations=8, batch_size=16, eval_batch_size=16, progress=False)


def trial(method: str, **kw) -> TrialConfig:
    return TrialConfig(method=method, data=DATA, model=MODEL, train=TRAIN, **kw)


def test_baselines_delta_m_and_retrain_dedup(tmp_path):
    caches = SweepCaches(tmp_path / "cache")
    phases = []
    single = run_trial(trial("single", label="Single", is_baseline=True), tmp_path / "a", caches,
                       on_phase=lambda phase, row: phases.append((phase, row["madds"], "delta_m" in row)))
    assert phases == [("priced", single["madds"], False)]  # MAdds known before the retrain
    assert single["delta_m"] == 0.0 and not single["retrain_cached"] and single["retrain_time_s"] > 0
    shared = run_trial(trial("shared"), tmp_path / "b", caches)
    assert shared["madds"] < single["madds"] and shared["params"] < single["params"]
    assert math.isfinite(shared["delta_m"])
    # Same architecture and retrain settings under another label: metrics reused, and the log says so.
    again = run_trial(trial("shared", label="shared again", hp={"note": 1}), tmp_path / "c", caches)
    assert again["retrain_cached"] and again["retrain_time_s"] == 0.0
    assert again["bent_0/mse"] == shared["bent_0/mse"] and again["hp/note"] == 1
    assert "retrain skipped" in (tmp_path / "c" / "trial.log").read_text()
    assert "trained by 'shared'" in (tmp_path / "c" / "trial.log").read_text()
    # Other retrain settings are another cache entry.
    longer = TrialConfig(method="shared", data=DATA, model=MODEL, train=TrainConfig(iterations=9, batch_size=16,
                                                                                  progress=False))
    assert not run_trial(longer, tmp_path / "d", caches)["retrain_cached"]


def test_search_trial_resumes_from_exported_architecture(tmp_path):
    caches = SweepCaches(tmp_path / "cache")
    cfg = trial("ltb", search={"iterations": 6, "batch_size": 16})
    first = run_trial(cfg, tmp_path / "t", caches)
    assert first["search_time_s"] > 0 and first["method"] == "ltb"
    second = run_trial(cfg, tmp_path / "t", caches, resume=True)
    assert "already exported" in (tmp_path / "t" / "trial.log").read_text()
    assert second["arch_hash"] == first["arch_hash"] and second["retrain_cached"]


def test_nan_loss_raises(tmp_path):
    bad = TrialConfig(method="shared", data=DATA, model=MODEL,
                      train=TrainConfig(iterations=8, batch_size=16, lr=1e30, momentum=0.0, progress=False))
    with pytest.raises(NonFiniteLossError):
        run_trial(bad, tmp_path / "x", SweepCaches(tmp_path / "cache"))


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown trial method 'nope'"):
        trial("nope").validate()
    with pytest.raises(ConfigError, match="unknown option 'bogus'"):
        trial("ltb", search={"bogus": 1}).validate()
    with pytest.raises(ConfigError, match="needs arch="):
        trial("fixed").validate()
    assert TrialConfig.from_dict(trial("single").to_dict()) == trial("single")


def test_compute_delta_m_formula():
    # (+10 % on a max metric, −20 % on a min metric) / 2
    assert compute_delta_m({"a/acc": 55.0, "b/err": 12.0}, {"a/acc": 50.0, "b/err": 10.0},
                           {"a/acc": "max", "b/err": "min"}) == pytest.approx(-5.0)
