"""The one training loop: mixed precision, channels-last, loader workers, per-task backward, sync cadence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.data import create_data
from branchsweep.errors import ConfigError
from branchsweep.factory import build_model, build_spec
from branchsweep.loop import NonFiniteLossError, Runtime, TrainStep, epoch_batches
from branchsweep.search.supergraph import Supergraph, gumbel_softmax_weights
from branchsweep.train import evaluate_network, train_network


@pytest.fixture(scope="module")
def dense():
    data = create_data(DataConfig(dataset="synthetic-dense", size=16, train_samples=16, val_samples=8,
                                  tasks=["semseg", "depth", "normals"]))
    tasks = data.select_tasks(["semseg", "depth", "normals"])
    spec = build_spec(ModelConfig(backbone="mobilenet_v2", width=0.1), data)
    return data, tasks, spec


def _train(dense, **kw):
    data, tasks, spec = dense
    cfg = TrainConfig(iterations=4, batch_size=4, eval_batch_size=8, progress=False, **kw)
    model = build_model(spec, tasks, BranchConfig.shared([t.name for t in tasks], spec.num_layers), 0)
    result = train_network(model, data, tasks, cfg)
    return result, evaluate_network(model, data, tasks, cfg), model


def test_bf16_autocast_trains_on_cpu(dense):
    full, full_metrics, _ = _train(dense)
    half, half_metrics, model = _train(dense, amp="bf16")
    assert all(torch.isfinite(torch.tensor(half.losses)))
    assert half.losses != full.losses  # bf16 really was used ...
    assert half.losses[0] == pytest.approx(full.losses[0], rel=0.05)  # ... and computes the same loss, roughly
    assert set(half_metrics) == set(full_metrics)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32 (autocast only)


def test_channels_last_changes_layout_not_results(dense):
    plain, _, _ = _train(dense)
    last, _, model = _train(dense, channels_last=True)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # Same first loss up to rounding: this tiny untrained net predicts normals of norm ~1e-6, whose unit
    # direction (normals loss, weight 10 on a per-pixel channel sum) is rounding-sensitive; later steps
    # drift further, amplified by its huge gradients.
    assert last.losses[0] == pytest.approx(plain.losses[0], rel=1e-3)
    assert all(torch.isfinite(torch.tensor(last.losses)))


def test_fp16_needs_cuda_and_unknown_amp_is_an_error():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Runtime("cpu", amp="fp16")
    with pytest.raises(ConfigError, match="--amp must be one of"):
        TrainConfig(amp="fp8").validate()
    with pytest.raises(ConfigError, match="lr must be"):
        TrainConfig(lr=float("nan")).validate()


def test_loader_workers_give_the_same_batches(dense):
    data, _, _ = dense
    ds = data.split("val", train=False)
    serial = epoch_batches(ds, 4, seed=3)
    parallel = epoch_batches(ds, 4, seed=3, num_workers=2)
    for _ in range(5):  # more than one epoch (8 samples, 2 batches per epoch): workers persist across epochs
        a, b = next(serial), next(parallel)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])


def test_per_task_backward_equals_the_joint_gradient(dense):
    """Sequential per-task updates (the BMTAS supplement) accumulate exactly the joint gradient."""
    data, tasks, spec = dense
    batch = next(epoch_batches(data.split("train", train=False), 4, seed=0))
    grads = {}
    for per_task in (False, True):
        torch.manual_seed(0)
        model = Supergraph(spec, tasks)
        model.alpha.data.normal_()
        # As in the BMTAS weight step: one relaxed sample, no gradient to α.
        weights = gumbel_softmax_weights(model.alpha.detach(), 1.0, generator=torch.Generator().manual_seed(1))
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # a step that changes nothing: compare gradients
        step = TrainStep([opt], tasks, Runtime("cpu"), per_task=per_task)
        loss, parts = step(lambda x, tasks=None, w=weights, m=model: m(x, weights=w, tasks=tasks), batch)
        grads[per_task] = (float(loss), {k: float(v) for k, v in parts.items()},
                           [p.grad.clone() for p in model.parameters() if p.grad is not None])
    (loss_a, parts_a, ga), (loss_b, parts_b, gb) = grads[False], grads[True]
    assert loss_b == pytest.approx(loss_a, rel=1e-6) and parts_b == pytest.approx(parts_a, rel=1e-6)
    assert len(ga) == len(gb) and len(ga) > 10
    # Equal up to float summation order (norm-relative: single elements of these ill-conditioned, untrained
    # nets' gradients carry rounding of ~1e-4 of their size).
    worst = max(float((b - a).norm() / (a.norm() + 1e-12)) for a, b in zip(ga, gb) if a.norm() > 1e-3)
    assert worst < 1e-4


def test_non_finite_loss_is_caught_on_the_sync_cadence(dense):
    data, tasks, spec = dense
    model = build_model(spec, tasks, BranchConfig.shared([t.name for t in tasks], spec.num_layers), 0)
    opt = torch.optim.SGD(model.parameters(), lr=1e30)
    step = TrainStep([opt], tasks, Runtime("cpu", sync_every=3))
    batches = epoch_batches(data.split("train"), 4, seed=0)
    with pytest.raises(NonFiniteLossError, match="checked every 3 steps"):
        for it in range(9):
            step(model, next(batches), f"at iteration {it}")
    assert step.steps < 9  # stopped on a check, not at the end


@pytest.mark.slow
def test_compiled_retrain_matches_eager():
    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=32, val_samples=8,
                                  tasks=["bent_0", "square_0"]))
    tasks = data.select_tasks(None)
    spec = build_spec(ModelConfig(width=0.16), data)
    config = BranchConfig.shared([t.name for t in tasks], spec.num_layers)
    losses = {}
    for compile in (False, True):
        cfg = TrainConfig(iterations=3, batch_size=8, progress=False, compile=compile)
        losses[compile] = train_network(build_model(spec, tasks, config, 0), data, tasks, cfg).losses
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_per_task_arch_step_equals_the_joint_alpha_gradient(dense):
    from branchsweep.madds import madds_table
    from branchsweep.search.base import SearchContext
    from branchsweep.search.bmtas import BMTASConfig, arch_step

    data, tasks, spec = dense
    batch = next(epoch_batches(data.split("train", train=False), 4, seed=0))
    layer_madds = madds_table(spec, tasks).layer_tensor()

    class Capture:  # stands in for the α optimizer: records the gradient it is asked to apply
        def zero_grad(self, set_to_none=True):
            pass

        def step(self):
            self.grad = model.alpha.grad.clone()

    grads = {}
    for per_task in (False, True):
        torch.manual_seed(0)
        model = Supergraph(spec, tasks)
        model.alpha.data.normal_()
        opt = Capture()
        cfg = BMTASConfig(lam=3.0, per_task=per_task)
        ctx = SearchContext(data, spec, tasks, Path("unused"))
        arch_step(model, ctx, cfg, batch, Runtime("cpu"), 1.0, torch.Generator().manual_seed(1), layer_madds,
                  1e6, "exact", opt)
        grads[per_task] = opt.grad
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-4, atol=1e-7)
    assert grads[False].abs().sum() > 0


def test_search_context_runtime_settings_reach_the_search(tmp_path):
    from branchsweep.search import SEARCH_METHODS, SearchContext

    data = create_data(DataConfig(dataset="synthetic-dense", size=16, train_samples=40, val_samples=8,
                                  tasks=["semseg", "depth", "normals"], num_workers=1))
    tasks = data.select_tasks(["semseg", "depth", "normals"])
    spec = build_spec(ModelConfig(backbone="mobilenet_v2", width=0.1), data)
    method = SEARCH_METHODS.get("bmtas")
    cfg = method.make_config({"iterations": 3, "warmup_iterations": 1, "batch_size": 4, "per_task": True})
    ctx = SearchContext(data, spec, tasks, tmp_path, progress=False, amp="bf16", channels_last=True)
    result = method.run(cfg, ctx)
    assert result.config.num_tasks == 3 and (tmp_path / "branch_config.json").is_file()
