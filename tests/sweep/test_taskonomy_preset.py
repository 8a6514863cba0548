"""The Taskonomy Learning-to-Branch preset, run on CPU on the fixture tree: one trial of its smoke
variant through the same chain a Ray trial runs (search at ``search_size`` → export → price → retrain
at ``size`` → evaluate), without starting Ray."""

from __future__ import annotations

import math

import pytest
from conftest import sweep_scripts
from data.taskonomy_fixture import write_taskonomy

from branchsweep.pipeline import SweepCaches, run_trial
from branchsweep.search import ltb
from branchsweep.sweep import to_trial_config


@pytest.fixture(scope="module")
def preset_module():
    with sweep_scripts("taskonomy_ltb") as scripts:
        yield scripts["taskonomy_ltb"]


def test_paper_settings(preset_module):
    p = preset_module.PRESET
    assert p.data.size == 256 and p.model.backbone == "resnet34"
    # an epoch is the paper's 275K images (4296 iterations at batch 64), whatever the download holds
    assert p.data.options == {"search_size": 128, "epoch_images": 275_000}
    search = p.search_defaults["ltb"]
    epoch = 275_000 // 64
    assert epoch == 4296
    # Appendix A: × 0.97 every epoch, in the search (both optimisers) and in the retrain
    assert (search["lr_schedule"], search["lr_gamma"], search["lr_every_epochs"]) == ("exponential", 0.97, 1.0)
    assert (search["iterations"], search["warmup_iterations"], search["batch_size"]) == (30 * epoch, 2 * epoch, 64)
    assert (search["lr"], search["arch_lr"], search["weight_decay"], search["tau_unit"]) == (1e-3, 1e-1, 1e-5, "epoch")
    assert {(pt["ltb.schedule"], pt["ltb.tau0"], pt["ltb.child_nodes"]) for pt in p.points} == {("inverse", 10.0, 5)}
    assert len(p.points) == 1 and not any("seed" in k for k in p.points[0])
    t = p.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.divide_lr_by_sharing) == ("sgd", 5e-4, 0.9, 1e-4, False)
    assert t.iterations == 30 * epoch and t.batch_size == 64
    assert (t.lr_schedule, t.lr_gamma, t.lr_every_epochs) == ("exponential", 0.97, 1.0)


def test_smoke_trial_searches_small_and_retrains_large(preset_module, tmp_path, monkeypatch):
    from _common import build_config, parser

    smoke = preset_module.SMOKE
    root = write_taskonomy(tmp_path / "taskonomy")
    cfg = build_config(smoke, parser(smoke, None).parse_args(["--smoke", "--root", str(root), "--out", str(tmp_path / "run")]))
    seen = []
    real = ltb.run_search

    def spy(search_cfg, ctx, stop_at=None):
        seen.append((ctx.data.input_shape, ltb.resolve_child_nodes(search_cfg.child_nodes, ctx.spec.num_layers, 5)))
        return real(search_cfg, ctx, stop_at)

    monkeypatch.setattr(ltb, "run_search", spy)
    import branchsweep.fused_train as fused_train

    retrained = []
    real_train = fused_train.train_replicates

    def spy_train(replicates, data, *args, **kwargs):
        retrained.append(data.split("train", train=True)[0]["image"].shape)
        return real_train(replicates, data, *args, **kwargs)

    monkeypatch.setattr(fused_train, "train_replicates", spy_train)
    trial = to_trial_config(cfg.points[0], cfg.base)
    row = run_trial(trial, tmp_path / "trial", SweepCaches(tmp_path / "cache"))
    assert seen == [((3, 8, 8), [5] * 16)]  # searched at search_size with 5 child nodes per residual block
    assert retrained == [(3, 16, 16)]  # retrained at size
    assert row["method"] == "ltb" and row["madds"] > 0 and row["params"] > 0
    metrics = {"segment_semantic/ce", "normal/cosine", "depth_zbuffer/mae", "keypoints2d/mae", "edge_texture/mae"}
    assert metrics <= set(row) and all(math.isfinite(row[m]) for m in metrics)
    assert -1.0 <= row["normal/cosine"] <= 1.0
