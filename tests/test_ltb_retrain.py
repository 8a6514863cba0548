"""Retraining conventions per method: Learning to Branch retrains with one global learning rate; the
BMTAS rule (a shared block's lr divided by the number of tasks sharing it) stays the default of BMTAS,
the baselines and fixed architectures; an explicit setting wins. Plus the lr decays of a retrain."""

from __future__ import annotations

import dataclasses

import pytest

from branchsweep import train as train_module
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.pipeline import SweepCaches, TrialConfig, run_trial
from branchsweep.pipeline.config import with_method_conventions

DATA = DataConfig(dataset="ltb-synthetic", train_samples=64, val_samples=16, tasks=["bent_0", "square_0", "sinc_0"])
MODEL = ModelConfig(backbone="mlp", width=0.16)
TRAIN = TrainConfig(iterations=2, batch_size=16, eval_batch_size=16, lr=0.01, progress=False)


@pytest.fixture
def optimizers(monkeypatch):
    """Every retrain optimiser's ``(config, [(group lr, parameter count)])``."""
    seen = []
    real = train_module.make_optimizer

    def spy(model, cfg):
        opt = real(model, cfg)
        seen.append((cfg, [(g["lr"], sum(p.numel() for p in g["params"])) for g in opt.param_groups]))
        return opt

    monkeypatch.setattr(train_module, "make_optimizer", spy)
    return seen


def test_ltb_retrain_keeps_one_lr_and_shared_baseline_divides(tmp_path, optimizers):
    caches = SweepCaches(tmp_path / "cache")
    ltb = TrialConfig(method="ltb", data=DATA, model=MODEL, train=TRAIN,
                      search={"iterations": 3, "batch_size": 16, "child_nodes": [1, 1, 1, "T"]})
    row = run_trial(ltb, tmp_path / "ltb", caches)
    assert row["arch_json"]  # the tree shares its first three layers by all three tasks
    (cfg, groups), = optimizers
    assert cfg.divide_lr_by_sharing is False
    assert [lr for lr, _ in groups] == [0.01]  # one global lr, although layers 1-3 are shared by 3 tasks
    run_trial(TrialConfig(method="shared", data=DATA, model=MODEL, train=TRAIN), tmp_path / "shared", caches)
    cfg, groups = optimizers[1]
    assert cfg.divide_lr_by_sharing is True
    assert sorted(lr for lr, _ in groups) == pytest.approx([0.01 / 3, 0.01])  # shared trunk / own heads


def test_method_conventions_and_explicit_setting():
    ltb = TrialConfig(method="ltb", data=DATA, model=MODEL, train=TRAIN)
    assert with_method_conventions(ltb).train.divide_lr_by_sharing is False
    assert with_method_conventions(dataclasses.replace(ltb, method="bmtas")).train.divide_lr_by_sharing is True
    assert with_method_conventions(ltb, "single").train.divide_lr_by_sharing is True
    forced = dataclasses.replace(ltb, train=dataclasses.replace(TRAIN, divide_lr_by_sharing=True))
    assert with_method_conventions(forced).train.divide_lr_by_sharing is True


@pytest.mark.parametrize(("schedule", "gamma", "every", "expected"), [
    ("step", 0.5, 2, [0.01] * 8 + [0.005] * 8 + [0.0025] * 4),   # halved every 2 epochs of 4 iterations
    ("exponential", 0.9, 1.5, [0.01] * 6 + [0.009] * 6 + [0.0081] * 6 + [0.00729] * 2),  # every 6 iterations
    ("constant", 0.5, 1, [0.01] * 20),
])
def test_retrain_lr_decays_in_epochs(tmp_path, monkeypatch, schedule, gamma, every, expected):
    import torch

    from branchsweep.data import create_data
    from branchsweep.factory import build_model, build_spec
    from branchsweep.pipeline.config import BASELINES

    data = create_data(DATA)
    tasks = data.select_tasks(DATA.tasks)
    spec = build_spec(MODEL, data)
    model = build_model(spec, tasks, BASELINES.get("shared")(DATA.tasks, spec.num_layers), 0)
    cfg = dataclasses.replace(TRAIN, epochs=5, lr_schedule=schedule, lr_gamma=gamma, lr_every_epochs=every,
                              divide_lr_by_sharing=False, optimizer="sgd")
    used, real = [], torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        used.append(self.param_groups[0]["lr"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    result = train_module.train_network(model, data, tasks, cfg)
    assert result.iterations == 20  # 5 epochs of 64 samples in batches of 16
    assert used == pytest.approx(expected)
