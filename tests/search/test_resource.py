"""The exact expected-MAdds loss against brute-force enumeration, finite differences and Monte Carlo."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.search.resource import (
    EXACT_MAX_TASKS,
    expected_groups,
    expected_groups_exact,
    expected_madds,
)


def random_probs(num_layers: int, num_tasks: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    alpha = torch.randn(num_layers, num_tasks, num_tasks, generator=g, dtype=torch.float64) * 1.5
    return torch.softmax(alpha, dim=-1)


def brute_force_madds(probs: torch.Tensor, layer_madds: torch.Tensor) -> float:
    """Σ over every op assignment (one per layer and task) of P(assignment) · MAdds(branched net).

    Layers are independent, so the enumeration runs layer by layer over the distribution of the
    prefix partition (the state), which visits every assignment of every layer.
    """
    num_layers, num_tasks, num_ops = probs.shape
    p = probs.tolist()
    states: dict[tuple[int, ...], float] = {tuple([0] * num_tasks): 1.0}  # prefix label per task
    total = 0.0
    for layer in range(num_layers):
        new: dict[tuple[int, ...], float] = {}
        for prefix, pr in states.items():
            for ops in itertools.product(range(num_ops), repeat=num_tasks):
                q = pr
                for t, j in enumerate(ops):
                    q *= p[layer][t][j]
                keys = list(zip(prefix, ops))
                label = {k: i for i, k in reversed(list(enumerate(keys)))}
                nxt = tuple(sorted(set(label.values())).index(label[k]) for k in keys)
                new[nxt] = new.get(nxt, 0.0) + q
                total += q * len(set(keys)) * float(layer_madds[layer])
        states = new
    return total


def full_enumeration_madds(probs: torch.Tensor, layer_madds: torch.Tensor) -> float:
    """Literal Σ over all T^(T·L) joint assignments, priced with BranchConfig (tiny cases only)."""
    num_layers, num_tasks, _ = probs.shape
    tasks = [f"t{i}" for i in range(num_tasks)]
    total = 0.0
    for flat in itertools.product(range(num_tasks), repeat=num_layers * num_tasks):
        ops = [list(flat[layer * num_tasks:(layer + 1) * num_tasks]) for layer in range(num_layers)]
        pr = 1.0
        for layer in range(num_layers):
            for t in range(num_tasks):
                pr *= float(probs[layer, t, ops[layer][t]])
        cfg = BranchConfig.from_op_indices(tasks, ops)
        total += pr * sum(cfg.num_groups(layer) * float(layer_madds[layer]) for layer in range(num_layers))
    return total


@pytest.mark.parametrize("num_layers,num_tasks", [(1, 2), (2, 3), (3, 2), (2, 2)])
def test_brute_force_helpers_agree(num_layers, num_tasks):
    probs = random_probs(num_layers, num_tasks, seed=num_layers * 10 + num_tasks)
    costs = torch.arange(1, num_layers + 1, dtype=torch.float64) * 3.0
    assert brute_force_madds(probs, costs) == pytest.approx(full_enumeration_madds(probs, costs), abs=1e-9)


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4])
@pytest.mark.parametrize("num_tasks", [1, 2, 3, 4])
def test_exact_matches_enumeration(num_layers, num_tasks):
    probs = random_probs(num_layers, num_tasks, seed=100 * num_layers + num_tasks)
    costs = torch.rand(num_layers, generator=torch.Generator().manual_seed(num_layers), dtype=torch.float64) * 1e3
    got = float(expected_madds(probs, costs, method="exact"))
    assert got == pytest.approx(brute_force_madds(probs, costs), abs=1e-9, rel=0)


def test_single_and_shared_extremes():
    num_layers, num_tasks = 3, 4
    costs = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    shared = torch.zeros(num_layers, num_tasks, num_tasks, dtype=torch.float64)
    shared[..., 2] = 1.0
    single = torch.eye(num_tasks, dtype=torch.float64).expand(num_layers, -1, -1).clone()
    assert float(expected_madds(shared, costs)) == pytest.approx(7.0)
    assert float(expected_madds(single, costs)) == pytest.approx(28.0)


def test_gradient_matches_finite_differences():
    alpha = torch.randn(3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    costs = torch.tensor([2.0, 5.0, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: expected_madds(torch.softmax(a, -1), costs, method="exact"), (alpha,))


def test_monte_carlo_is_unbiased_in_value_and_gradient():
    probs = random_probs(4, 5, seed=7)
    alpha = torch.log(probs).clone().requires_grad_(True)
    costs = torch.tensor([1.0, 3.0, 2.0, 5.0], dtype=torch.float64)
    exact = expected_madds(torch.softmax(alpha, -1), costs, method="exact")
    (g_exact,) = torch.autograd.grad(exact, alpha)
    gen = torch.Generator().manual_seed(0)
    mc = expected_madds(torch.softmax(alpha, -1), costs, method="mc", samples=20000, generator=gen)
    (g_mc,) = torch.autograd.grad(mc, alpha)
    assert float(mc.detach()) == pytest.approx(float(exact.detach()), rel=0.01)
    # Score-function gradients are noisier: compare the gradient direction and overall scale.
    cos = torch.nn.functional.cosine_similarity(g_mc.flatten(), g_exact.flatten(), dim=0)
    assert cos > 0.9
    assert g_mc.norm() == pytest.approx(float(g_exact.norm()), rel=0.2)


def test_auto_is_exact_up_to_12_tasks_and_monte_carlo_above():
    """README: "Above 12 tasks an unbiased Monte-Carlo estimator takes over", at the real threshold (one
    layer, so the exact sum over 2^13 task subsets stays cheap)."""
    assert EXACT_MAX_TASKS == 12
    costs = torch.tensor([7.0], dtype=torch.float64)
    twelve, thirteen = random_probs(1, 12, seed=12), random_probs(1, 13, seed=13)
    assert torch.equal(expected_groups(twelve, "auto"), expected_groups_exact(twelve))
    assert torch.equal(expected_madds(twelve, costs), expected_madds(twelve, costs, method="exact"))
    gen = torch.Generator().manual_seed(0)
    auto = expected_madds(thirteen, costs, samples=32, generator=gen)
    gen.manual_seed(0)
    assert torch.equal(auto, expected_madds(thirteen, costs, method="mc", samples=32, generator=gen))
    assert not torch.equal(auto, expected_madds(thirteen, costs, method="exact"))  # an estimate, not the sum
    # ... and close to it: 20 000 samples of the unbiased estimator
    many = expected_madds(thirteen, costs, method="mc", samples=20000, generator=gen)
    assert float(many) == pytest.approx(float(expected_madds(thirteen, costs, method="exact")), rel=0.01)


def test_bmtas_log_says_which_estimator_it_used(tmp_path):
    """A 13-task BMTAS search prices with Monte Carlo and its log says so; 12 tasks are exact."""
    from branchsweep.backbones import create_backbone
    from branchsweep.config import DataConfig
    from branchsweep.data import create_data
    from branchsweep.search import SEARCH_METHODS, SearchContext
    from branchsweep.search.bmtas import BMTASConfig

    method = SEARCH_METHODS.get("bmtas")
    spec = create_backbone("mlp", input_dim=6, hidden=4, num_layers=2)
    starts = {}
    for count in (12, 13):
        data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=20, val_samples=4, seed=0, options={
            "activations": ["sin"], "tasks_per_activation": count, "input_dim": 6, "output_dim": 2}))
        ctx = SearchContext(data=data, spec=spec, tasks=list(data.tasks.values()), out_dir=tmp_path / str(count),
                            progress=False, cache_dir=tmp_path / "cache")
        cfg = BMTASConfig(iterations=1, warmup_iterations=0, batch_size=4, checkpoint_every=0, mc_samples=8)
        result = method.run(cfg, ctx)
        starts[count] = json.loads(result.log_path.read_text().splitlines()[0])
    assert starts[12]["estimator"] == "exact" and starts[12]["note"] == "exact resource loss"
    assert starts[13]["estimator"] == "mc"
    assert starts[13]["note"] == "13 tasks > 12: resource loss estimated by unbiased Monte Carlo (8 samples)"


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\[L, T, T\]"):
        expected_madds(torch.ones(2, 3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="layer_madds"):
        expected_madds(torch.full((2, 2, 2), 0.5), torch.ones(3))
    with pytest.raises(ValueError, match="estimator"):
        expected_groups(torch.full((2, 2, 2), 0.5), method="bogus")
