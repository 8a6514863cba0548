"""The CelebA Learning-to-Branch presets (sweeps/celeba_ltb.py) carry Table 1 / Appendix A's numbers, and
the backbones at the presets' input sizes match the published baselines' parameter counts within 5 %."""

from __future__ import annotations

import json

import pytest
from conftest import sweep_scripts
from data.fixtures import write_celeba

from branchsweep.backbones import create_backbone
from branchsweep.search import SEARCH_METHODS
from branchsweep.search.ltb import BranchingNetwork, resolve_child_nodes
from branchsweep.sweep import to_trial_config
from branchsweep.tasks import create_task

#: Published parameter counts of the baselines LearnToBranch-VGG / -Deep-Wide are compared with (Table 1).
PUBLISHED = {"vgg": 2.09e6, "deep-wide": 6.41e6}


@pytest.fixture(scope="module")
def celeba_ltb():
    with sweep_scripts("celeba_ltb") as scripts:
        yield scripts["celeba_ltb"]


@pytest.mark.parametrize("model", ["vgg", "deep-wide"])
def test_full_capacity_matches_published_baseline(celeba_ltb, model):
    """Every child node in use (the capacity the paper matched to its counterparts): within 5 %."""
    preset, _ = celeba_ltb.presets(model)
    spec = create_backbone(preset.model.backbone, input_size=preset.data.size)
    tasks = [create_task("binary", name=f"attr{i}") for i in range(40)]
    tree = celeba_ltb.MODELS[model]["tree"]
    net = BranchingNetwork(spec, tasks, resolve_child_nodes(tree, spec.num_layers, 40))
    params = sum(p.numel() for p in net.weight_parameters())
    assert abs(params / PUBLISHED[model] - 1) < 0.05, params


@pytest.mark.parametrize(("model", "search_lr", "arch_lr", "retrain_lr", "halve_every", "tree"), [
    ("vgg", 1e-5, 1e-4, 0.03, 10, [3, 3, 5, 5, 10, 20, 30, "T"]),
    ("deep-wide", 1e-4, 1e-2, 0.05, 15, [2, 4, 8, 16, "T"]),
])
def test_presets_carry_the_papers_recipe(celeba_ltb, tmp_path, model, search_lr, arch_lr, retrain_lr, halve_every,
                                         tree):
    from _common import build_config, parser

    preset, _ = celeba_ltb.presets(model)
    args = parser(preset, celeba_ltb.__doc__).parse_args(["--out", str(tmp_path / "run"),
                                                          "--root", str(write_celeba(tmp_path / "data"))])
    cfg = build_config(preset, args)
    trial = to_trial_config(cfg.points[0], cfg.base)  # the paper's own setting is the first point
    search = SEARCH_METHODS.get("ltb").make_config(trial.search)
    assert search.child_nodes == tree and search.schedule == "inverse" and search.tau0 == 10.0
    assert search.tau_unit == "epoch" and search.epochs == 30 and search.warmup_epochs == 2
    assert (search.batch_size, search.lr, search.arch_lr, search.weight_decay) == (64, search_lr, arch_lr, 1e-4)
    assert (search.lr_schedule, search.lr_gamma, search.lr_every_epochs) == ("exponential", 0.97, 2.4)
    t = trial.train
    assert (t.optimizer, t.momentum, t.weight_decay, t.epochs, t.lr) == ("sgd", 0.9, 5e-4, 30, retrain_lr)
    assert (t.lr_schedule, t.lr_gamma, t.lr_every_epochs) == ("step", 0.5, halve_every)
    assert t.divide_lr_by_sharing is False and t.eval_split == "test" and t.batch_size == 64


def test_model_flag(celeba_ltb):
    assert celeba_ltb._model_flag(["--model", "deep-wide", "--smoke"]) == ("deep-wide", ["--smoke"])
    assert celeba_ltb._model_flag(["--smoke"]) == ("vgg", ["--smoke"])
    with pytest.raises(SystemExit) as err:
        celeba_ltb._model_flag(["--model=resnet"])
    assert err.value.code == 2


def test_deep_wide_recipe_runs_a_trial_evaluated_on_test(celeba_ltb, tmp_path, monkeypatch):
    """The Deep-Wide preset's search and retrain (shrunk to the 6-image fixture: 2 epochs of batch 2)
    run through a trial: epochs-based lengths, step/exponential decays, the test split, one lr."""
    import dataclasses

    from branchsweep import fused_train
    from branchsweep.pipeline import SweepCaches, TrialConfig, run_trial

    preset, _ = celeba_ltb.presets("deep-wide")
    splits, real = [], fused_train.evaluate_networks

    def spy(*args, split="val", **kwargs):
        splits.append(split)
        return real(*args, split=split, **kwargs)

    monkeypatch.setattr(fused_train, "evaluate_networks", spy)
    search = {**preset.search_defaults["ltb"], "child_nodes": "deep_wide", "epochs": 2.0, "warmup_epochs": 1.0,
              "batch_size": 2, "checkpoint_every": 0, "schedule": "inverse", "tau0": 10.0}
    cfg = TrialConfig(
        method="ltb", search=search,
        data=dataclasses.replace(preset.data, root=str(write_celeba(tmp_path / "data")), size=32, num_workers=0,
                                 tasks=["Smiling", "Male", "Young"]),
        model=dataclasses.replace(preset.model, width=0.125),
        train=dataclasses.replace(preset.train, epochs=2.0, batch_size=2, eval_batch_size=2, checkpoint_every=0),
    )
    row = run_trial(cfg, tmp_path / "trial", SweepCaches(tmp_path / "cache"))
    assert splits == ["test"]
    assert {"Smiling/accuracy", "Male/accuracy", "Young/accuracy"} <= set(row) and row["params"] > 0
    log = (tmp_path / "trial" / "search" / "search_log.jsonl").read_text().splitlines()
    header = json.loads(log[0])["header"]
    assert (header["iterations"], header["warmup_iterations"]) == (4, 2)  # 2 epochs of 4 images in batches of 2
