"""Fused retraining: K networks trained as one wide network equal K separate runs."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from helpers import tasks_for, tiny_backbone

from branchsweep.arch import BranchConfig
from branchsweep.backbones import BACKBONES
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.data import create_data
from branchsweep.factory import build_model, build_spec
from branchsweep.fused_train import FusedNetworks, Replicate, cannot_fuse, evaluate_networks, train_replicates
from branchsweep.train import CHECKPOINT_NAME, evaluate_network, load_checkpoint, train_network


def _trees(names: list[str], num_layers: int) -> list[BranchConfig]:
    half = num_layers // 2
    grouped = [[names]] * half + [[names[:1], names[1:]]] * (num_layers - half)
    return [BranchConfig.single(names, num_layers), BranchConfig.shared(names, num_layers),
            BranchConfig.from_groups(names, grouped)]


def _max_diff(a: dict, b: dict) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a.values(), b.values()))


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_wide_forward_and_backward_equal_separate_networks(backbone):
    """Outputs, gradients and BatchNorm statistics of the wide network are each network's own, for
    every registered backbone (in training where it can fuse, else in evaluation)."""
    spec = tiny_backbone(backbone, size=32)
    tasks = tasks_for(spec)
    names = [t.name for t in tasks]
    models = [build_model(spec, tasks, tree, seed) for seed, tree in enumerate(_trees(names, spec.num_layers))]
    alone = [copy.deepcopy(m) for m in models]
    training = all(cannot_fuse(Replicate(m, TrainConfig())) is None for m in models)
    for m in models + alone:
        m.train(training)
    torch.manual_seed(0)
    images = [spec.example_input(4).normal_() for _ in models]
    outputs = FusedNetworks(models)(torch.cat(images, dim=1))
    sum(o.square().sum() for out in outputs for o in out.values()).backward()
    for out, m, x, model in zip(outputs, alone, images, models):
        expected = m(x)
        assert set(out) == set(expected)
        for name in expected:
            torch.testing.assert_close(out[name], expected[name], rtol=1e-4, atol=1e-5)
        sum(o.square().sum() for o in expected.values()).backward()
        for (key, p), q in zip(model.named_parameters(), m.parameters()):
            # Summation order differs: compare relative to the gradient's scale.
            assert (p.grad - q.grad).abs().max() <= 1e-4 * q.grad.abs().max() + 1e-7, key
        torch.testing.assert_close(dict(model.named_buffers()), dict(m.named_buffers()), rtol=1e-4, atol=1e-5)


def test_dropout_networks_train_one_at_a_time_and_say_so():
    spec = tiny_backbone("mobilenet_v2")
    tasks = tasks_for(spec)
    model = build_model(spec, tasks, BranchConfig.shared([t.name for t in tasks], spec.num_layers), 0)
    assert "dropout" in cannot_fuse(Replicate(model, TrainConfig()))
    assert "compile" in cannot_fuse(Replicate(model, TrainConfig(compile=True)))


@pytest.fixture(scope="module")
def dense():
    data = create_data(DataConfig(dataset="synthetic-dense", size=12, train_samples=24, val_samples=8,
                                  tasks=["semseg", "sal", "depth", "normals"]))
    tasks = data.select_tasks(["semseg", "sal", "depth", "normals"])
    spec = build_spec(ModelConfig(backbone="convnet", width=0.25), data)
    cfg = TrainConfig(iterations=4, batch_size=4, eval_batch_size=8, optimizer="adam", lr=1e-3,
                      divide_lr_by_sharing=False, loss_weights={"semseg": 3.0, "normals": 2.0}, progress=False)
    return data, tasks, spec, cfg


def _replicates(dense, tmp_path=None, trees=None, seeds=(0, 1)):
    data, tasks, spec, cfg = dense
    names = [t.name for t in tasks]
    trees = trees or _trees(names, spec.num_layers)[:2]
    out = []
    for tree in trees:
        for seed in seeds:
            folder = None if tmp_path is None else tmp_path / f"{tree.arch_hash()}-{seed}"
            out.append(Replicate(build_model(spec, tasks, tree, seed), dataclasses.replace(cfg, seed=seed), folder))
    return out


def test_fused_training_equals_separate_runs_in_weights_losses_and_metrics(dense, tmp_path):
    data, tasks, _, cfg = dense
    fused_reps = _replicates(dense, tmp_path / "fused")
    alone_reps = _replicates(dense, tmp_path / "alone")
    said: list[str] = []
    fused_results = train_replicates(fused_reps, data, tasks, say=said.append)
    assert said == []  # everything fused, nothing to report
    fused_metrics = evaluate_networks([r.model for r in fused_reps], data, tasks, cfg)
    for f, a, fr, fm in zip(fused_reps, alone_reps, fused_results, fused_metrics):
        ar = train_network(a.model, data, tasks, a.cfg, a.out_dir)
        assert fr.losses == pytest.approx(ar.losses, rel=1e-4)
        assert _max_diff(f.model.state_dict(), a.model.state_dict()) < 1e-4
        am = evaluate_network(a.model, data, tasks, a.cfg)
        assert fm.keys() == am.keys()
        assert all(fm[k] == pytest.approx(am[k], rel=1e-3, abs=1e-4) for k in am)
        # The same checkpoint format, with each network's own optimiser and schedule state.
        fs, as_ = load_checkpoint(f.out_dir / CHECKPOINT_NAME), load_checkpoint(a.out_dir / CHECKPOINT_NAME)
        assert fs.keys() == as_.keys() and fs["iteration"] == as_["iteration"] == cfg.iterations
        assert torch.equal(fs["rng"], as_["rng"]) and fs["settings"] == as_["settings"]
    # Different seeds really are different networks.
    assert _max_diff(fused_reps[0].model.state_dict(), fused_reps[1].model.state_dict()) > 1e-3


def test_fused_resume_after_a_kill_equals_an_uninterrupted_run(dense, tmp_path):
    data, tasks, _, cfg = dense
    cfg_ckpt = dataclasses.replace(cfg, checkpoint_every=2)
    whole = _replicates(dense, tmp_path / "whole", seeds=(0, 1, 2))
    for r in whole:
        r.cfg = dataclasses.replace(r.cfg, checkpoint_every=2)
    train_replicates(whole, data, tasks)

    class Killed(Exception):
        pass

    def kill(it, info):
        if it == 3:
            raise Killed

    first = _replicates(dense, tmp_path / "killed", seeds=(0, 1, 2))
    for r in first:
        r.cfg, r.on_step = dataclasses.replace(r.cfg, checkpoint_every=2), kill
    with pytest.raises(Killed):
        train_replicates(first, data, tasks)
    assert all(load_checkpoint(r.out_dir / CHECKPOINT_NAME)["iteration"] == 2 for r in first)
    again = _replicates(dense, tmp_path / "killed", seeds=(0, 1, 2))
    for r in again:
        r.cfg, r.resume = dataclasses.replace(r.cfg, checkpoint_every=2), True
    train_replicates(again, data, tasks)
    for a, w in zip(again, whole):
        assert _max_diff(a.model.state_dict(), w.model.state_dict()) < 1e-6
    assert cfg_ckpt.checkpoint_every == 2


def test_a_fused_checkpoint_resumes_alone_and_refuses_other_settings(dense, tmp_path):
    from branchsweep.errors import ConfigError

    data, tasks, _, cfg = dense
    reps = _replicates(dense, tmp_path, seeds=(3, 4))
    train_replicates(reps, data, tasks)
    r = reps[0]
    # Resuming the finished fused checkpoint alone takes no further step and keeps its weights.
    resumed = build_model(r.model.spec, tasks, r.model.config, 3)
    train_network(resumed, data, tasks, r.cfg, r.out_dir, resume=True)
    assert _max_diff(resumed.state_dict(), r.model.state_dict()) == 0
    with pytest.raises(ConfigError, match="seed=3"):
        train_network(build_model(r.model.spec, tasks, r.model.config, 3), data, tasks,
                      dataclasses.replace(r.cfg, seed=5), r.out_dir, resume=True)
