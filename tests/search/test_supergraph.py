"""Supergraph routing: same outputs as the naive all-candidates graph, with fewer block evaluations."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import tasks_for, tiny_backbone
from torch import nn

from branchsweep.arch import BranchConfig
from branchsweep.backbones import BACKBONES, create_backbone
from branchsweep.search.supergraph import (
    NaiveSupergraph,
    Supergraph,
    gumbel_softmax_weights,
    reset_batchnorm_stats,
    strip_last_bn_affine,
)


def pair(name: str, n: int = 3):
    spec = tiny_backbone(name, size=32)
    tasks = tasks_for(spec, n)
    torch.manual_seed(0)
    fast = Supergraph(spec, tasks).eval()
    torch.manual_seed(0)
    naive = NaiveSupergraph(spec, tasks).eval()
    x = spec.example_input(2).normal_(generator=torch.Generator().manual_seed(1))
    return spec, fast, naive, x


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mlp"])
def test_structure(backbone):
    spec, sg, _, _ = pair(backbone)
    assert sg.alpha.shape == (spec.num_layers, 3, 3)
    assert torch.count_nonzero(sg.alpha) == 0
    assert all(len(layer) == 3 for layer in sg.candidates)
    # copies share no parameters
    assert sg.candidates[0][0] is not sg.candidates[0][1]
    p0 = next(sg.candidates[0][0].parameters())
    assert all(p0 is not p for p in sg.candidates[0][1].parameters())
    assert sg.alpha not in set(sg.weight_parameters())


def test_last_batchnorm_loses_affine_only():
    block = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)))
    assert strip_last_bn_affine(block)
    assert block[1].affine and not block[2][1].affine
    assert not strip_last_bn_affine(nn.Linear(2, 2))
    _, sg, _, _ = pair("mobilenet_v2")
    for layer in sg.candidates:
        for cand in layer:
            bns = [m for m in cand.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            assert not bns or not bns[-1].affine


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mlp"])
@pytest.mark.parametrize("hard", [False, True])
def test_same_outputs_as_naive_with_fewer_evaluations(backbone, hard):
    spec, fast, naive, x = pair(backbone)
    w = gumbel_softmax_weights(fast.alpha, tau=1.0, hard=hard, generator=torch.Generator().manual_seed(2))
    a, b = fast(x, weights=w), naive(x, weights=w)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    L, T = spec.num_layers, 3
    assert naive.evaluations == L * T * T
    if hard:  # only the selected candidate per task (once per shared input at layer 1)
        assert fast.evaluations <= L * T
    else:  # the stem output is shared: layer 1 runs each candidate once
        assert fast.evaluations == T + (L - 1) * T * T


def test_straight_through_gradient_reaches_alpha_of_the_task_only():
    spec, sg, _, x = pair("mlp")
    w = gumbel_softmax_weights(sg.alpha, tau=1.0, hard=True, generator=torch.Generator().manual_seed(0))
    out = sg(x, weights=w, tasks=["r1"])
    assert list(out) == ["r1"]
    out["r1"].sum().backward()
    assert sg.alpha.grad[:, 1].abs().sum() > 0
    assert sg.alpha.grad[:, [0, 2]].abs().sum() == 0


def test_discrete_routing_costs_the_branched_network():
    spec, sg, _, x = pair("mobilenet_v2")
    ops = torch.zeros(spec.num_layers, 3, dtype=torch.long)
    ops[5:, 2] = 1
    ops[10:, 1] = 2
    sg(x, ops=ops)
    cfg = BranchConfig.from_op_indices(sg.task_names, ops.tolist())
    assert sg.evaluations == sum(cfg.num_groups(layer) for layer in range(cfg.num_layers))
    sg.evaluations = 0
    sg(x, ops=sg.warmup_ops())
    assert sg.evaluations == spec.num_layers * 3


def test_warmup_routing_trains_candidate_t_on_task_t_only():
    spec, sg, _, x = pair("mlp")
    out = sg.train()(x, ops=sg.warmup_ops())
    out["r0"].sum().backward()
    for layer in sg.candidates:
        assert all(p.grad is not None for p in layer[0].parameters())
        assert all(p.grad is None for j in (1, 2) for p in layer[j].parameters())


def test_zero_weights_skip_candidates_and_bad_arguments():
    spec, sg, _, x = pair("mlp")
    w = torch.zeros(spec.num_layers, 3, 3)
    w[:, :, 1] = 1.0
    sg(x, weights=w)
    assert sg.evaluations == spec.num_layers  # detached equal rows: tasks stay one stream
    with pytest.raises(ValueError, match="exactly one"):
        sg(x)


def test_reset_batchnorm_stats():
    _, sg, _, x = pair("mobilenet_v2")
    sg.train()(x, ops=sg.warmup_ops())
    bn = next(m for m in sg.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.num_batches_tracked > 0
    reset_batchnorm_stats(sg)
    assert bn.num_batches_tracked == 0 and torch.all(bn.running_var == 1)


# ------------------------------------------------------------------------- fused vs candidate by candidate
def fused_and_plain(name: str, n: int = 3, size: int = 32):
    """Two supergraphs with equal parameters in float64: fused (default) and candidate by candidate.

    float64, because the gradients of these tiny random networks are ill-conditioned (BatchNorm over a
    few values) and float32 rounding differences between two summation orders grow large; MobileNetV2
    at width 0.1, because CPU depthwise convolutions in float64 run one channel at a time.
    """
    spec = create_backbone("mobilenet_v2", width=0.1, input_size=size) if name == "mobilenet_v2" else \
        tiny_backbone(name, size=size)
    tasks = tasks_for(spec, n)
    torch.manual_seed(0)
    a = Supergraph(spec, tasks).double().train()
    b = copy.deepcopy(a)
    b.fuse = False
    x = spec.example_input(4).double().normal_(generator=torch.Generator().manual_seed(1))
    return a, b, x


def run_step(model, x, hard: bool, detach: bool, seed: int, tasks=None):
    """Outputs, parameter gradients (α included) and buffers after one forward/backward."""
    model.zero_grad(set_to_none=True)
    alpha = model.alpha.detach() if detach else model.alpha
    w = gumbel_softmax_weights(alpha.double(), 1.0, hard, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)  # dropout
    out = model(x, weights=w, tasks=tasks)
    sum((o**2).mean() * (i + 1) for i, o in enumerate(out.values())).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    return out, grads, {n: t.clone() for n, t in model.named_buffers()}


def assert_same(res_a, res_b):
    (oa, ga, ba), (ob, gb, bb) = res_a, res_b
    assert oa.keys() == ob.keys()
    for k in oa:
        torch.testing.assert_close(oa[k], ob[k])
    assert {k for k, g in ga.items() if g is None} == {k for k, g in gb.items() if g is None}
    for k in ga:
        if ga[k] is not None:
            torch.testing.assert_close(ga[k], gb[k], rtol=1e-7, atol=1e-12)
    for k in ba:
        torch.testing.assert_close(ba[k], bb[k])


@pytest.mark.parametrize("backbone", sorted(BACKBONES.names()))
@pytest.mark.parametrize("hard", [False, True])
def test_fused_equals_candidate_by_candidate(backbone, hard):
    """Outputs, θ and α gradients and BatchNorm buffers of an α step then a weight step."""
    a, b, x = fused_and_plain(backbone)
    for detach in (False, True):  # α step (a stream per task) and weight step (tasks share streams)
        assert_same(run_step(a, x, hard, detach, 2), run_step(b, x, hard, detach, 2))
    assert a.evaluations == b.evaluations


def test_fused_task_subsets_and_discrete_routing():
    a, b, x = fused_and_plain("mobilenet_v2", n=4)
    for tasks in (["depth"], ["semseg", "edge"]):
        assert_same(run_step(a, x, False, False, 4, tasks), run_step(b, x, False, False, 4, tasks))
    ops = torch.zeros(a.num_layers, 4, dtype=torch.long)
    ops[6:, 1] = 2
    ops[12:, 3] = 3
    for model in (a, b):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # dropout
        sum(o.square().mean() for o in model(x, ops=ops).values()).backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert (pa.grad is None) == (pb.grad is None), name
        if pa.grad is not None:
            torch.testing.assert_close(pa.grad, pb.grad)


def test_fused_channels_last_equals_nchw():
    a, b, x = fused_and_plain("mobilenet_v2", size=64)
    for m in [*a.modules(), *b.modules()]:
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # dropout masks are drawn in memory order, which channels-last changes
    a.to(memory_format=torch.channels_last)
    xa = x.contiguous(memory_format=torch.channels_last)
    assert_same(run_step(a, xa, False, False, 5), run_step(b, x, False, False, 5))


@pytest.mark.parametrize("hard", [False, True])
def test_per_task_passes_sum_to_the_joint_gradient(hard):
    """The paper's sequential per-task update: Σ_t ∇(w_t L_t) over one-task passes = ∇ of the joint loss."""
    a, _, x = fused_and_plain("mobilenet_v2", n=3)
    a.eval()  # (running statistics would see the stem once per pass)

    def weights():
        return gumbel_softmax_weights(a.alpha, 1.0, hard, torch.Generator().manual_seed(6))

    joint = a(x, weights=weights())
    sum((i + 1) * o.square().mean() for i, o in enumerate(joint.values())).backward()
    expected = {n: p.grad.clone() for n, p in a.named_parameters() if p.grad is not None}
    a.zero_grad(set_to_none=True)
    for i, name in enumerate(a.task_names):
        out = a(x, weights=weights(), tasks=[name])
        torch.testing.assert_close(out[name], joint[name])
        ((i + 1) * out[name].square().mean()).backward()
    got = {n: p.grad for n, p in a.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys()
    for n in got:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-7, atol=1e-12)
