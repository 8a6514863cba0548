"""``--resource-estimator paper``: the published resource loss (BMTAS Eq. 6, the authors' ``BranchingLoss``).

The frozen table ``bmtas_paper_resource.json`` next to this file holds the authors' loss values and
α-gradients on 20 random α states each of the MobileNetV2 / PASCAL-Context and ResNet-50 / NYUD-v2
look-up tables (in GFLOPs). It was generated once, from the authors' code, by

    python benchmarks/bmtas_resource_reference.py --reference /path/to/bmtas --states 20 \\
        --write tests/search/bmtas_paper_resource.json

(``/path/to/bmtas``: a checkout of github.com/brdav/bmtas; the file records the SHA-256 of its
``src/criterion.py``). The test regenerates each α from its seed and sharpness and needs nothing
else. The other tests check the recursion against a literal loop written from the supplement's
definition, its relation to the exact loss, and how the search applies it (GFLOPs, once per task,
the paper's λ).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.config import from_mapping
from branchsweep.errors import ConfigError
from branchsweep.search import SEARCH_METHODS
from branchsweep.search.bmtas import BMTASConfig, resource_scale
from branchsweep.search.resource import PAPER_MAX_TASKS, expected_groups_exact, expected_madds, paper_groups

FROZEN = Path(__file__).with_name("bmtas_paper_resource.json")


def alpha_state(seed: int, sharpness: float, num_layers: int, num_tasks: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return sharpness * torch.randn(num_layers, num_tasks, num_tasks, generator=gen, dtype=torch.float64)


def frozen_cases():
    tables = json.loads(FROZEN.read_text())["tables"]
    return [(name, i) for name, table in tables.items() for i in range(len(table["states"]))]


@pytest.fixture(scope="module")
def frozen():
    return json.loads(FROZEN.read_text())["tables"]


def test_frozen_table_covers_both_backbones_with_20_states_each(frozen):
    assert set(frozen) == {"mobilenet_v2/pascal-context", "resnet50/nyud"}
    for table in frozen.values():
        assert len(table["states"]) >= 20
        assert len({s["sharpness"] for s in table["states"]}) >= 5  # from near-uniform to sharp α
        assert len(table["layer_gflops"]) == table["num_layers"]
    assert frozen["mobilenet_v2/pascal-context"]["num_tasks"] == 5 and frozen["resnet50/nyud"]["num_tasks"] == 4


@pytest.mark.parametrize("name,index", frozen_cases())
def test_matches_the_authors_loss_and_gradient(frozen, name, index):
    table = frozen[name]
    state = table["states"][index]
    num_layers, num_tasks = table["num_layers"], table["num_tasks"]
    alpha = alpha_state(state["seed"], state["sharpness"], num_layers, num_tasks).requires_grad_(True)
    gflops = torch.tensor(table["layer_gflops"], dtype=torch.float64)
    value = (paper_groups(torch.softmax(alpha, dim=-1)) * gflops).sum()
    (grad,) = torch.autograd.grad(value, [alpha])
    assert float(value.detach()) == pytest.approx(state["loss"], rel=1e-6)
    want = torch.tensor(state["grad"], dtype=torch.float64).reshape(num_layers, num_tasks, num_tasks)
    assert float((grad - want).abs().max() / want.abs().max()) < 1e-6


def literal_paper_groups(probs: torch.Tensor) -> list[float]:
    """Eq. 6 as the supplement defines it, one partition at a time (no vectorisation, Python floats)."""
    num_layers, num_tasks, _ = probs.shape
    p = probs.tolist()

    def partition(assign):
        blocks: dict[int, list[int]] = {}
        for task, cand in enumerate(assign):
            blocks.setdefault(cand, []).append(task)
        return frozenset(frozenset(b) for b in blocks.values())

    def refines(fine, coarse):
        return all(any(b <= c for c in coarse) for b in fine)

    parts = sorted({partition(a) for a in itertools.product(range(num_tasks), repeat=num_tasks)}, key=sorted)
    parts = [k for k in parts if len(k) < num_tasks]
    prev, out = None, []
    for layer in range(num_layers):
        q = dict.fromkeys(parts, 0.0)
        for a in itertools.product(range(num_tasks), repeat=num_tasks):
            k = partition(a)
            if k in q:
                prob = 1.0
                for task, cand in enumerate(a):
                    prob *= p[layer][task][cand]
                q[k] += prob
        cur = {k: q[k] * (1.0 if prev is None else sum(prev[j] for j in parts if refines(k, j))) for k in parts}
        rest = 1.0 - sum(cur.values())
        out.append(sum(v * len(k) for k, v in cur.items()) + rest * num_tasks)
        prev = cur
    return out


@pytest.mark.parametrize("num_tasks", [1, 2, 3, 4])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_recursion_matches_a_literal_loop(num_tasks, num_layers):
    probs = torch.softmax(alpha_state(7 * num_tasks + num_layers, 1.5, num_layers, num_tasks), dim=-1)
    assert paper_groups(probs).tolist() == pytest.approx(literal_paper_groups(probs), rel=1e-12)


@pytest.mark.parametrize("sharpness", [0.5, 2.0, 6.0])
def test_an_upper_bound_of_the_exact_count_equal_for_two_tasks(sharpness):
    for num_tasks in (3, 4, 5):
        probs = torch.softmax(alpha_state(num_tasks, sharpness, 6, num_tasks), dim=-1)
        ub, exact = paper_groups(probs), expected_groups_exact(probs)
        assert bool((ub >= exact - 1e-12).all()) and float((ub - exact).max()) > 1e-6
    probs = torch.softmax(alpha_state(2, sharpness, 6, 2), dim=-1)
    torch.testing.assert_close(paper_groups(probs), expected_groups_exact(probs), rtol=1e-12, atol=1e-12)


def test_exact_on_a_deterministic_tree():
    """On a one-hot α of a tree (groups only split) every layer's assignment refines the one before, so
    the recursion keeps all the mass and counts the tree's groups exactly."""
    tasks = ["a", "b", "c", "d"]
    tree = BranchConfig.from_groups(tasks, [[tasks], [["a", "b"], ["c", "d"]], [["a", "b"], ["c"], ["d"]],
                                            [["a"], ["b"], ["c"], ["d"]]])
    ops = torch.tensor([[tasks.index(min(g, key=tasks.index)) for g in [next(g for g in tree.groups(layer) if t in g)
                                                                       for t in tasks]] for layer in range(4)])
    probs = torch.nn.functional.one_hot(ops, 4).double()
    assert paper_groups(probs).tolist() == [float(tree.num_groups(layer)) for layer in range(4)] == [1, 2, 3, 4]


def test_task_limit():
    probs = torch.full((2, PAPER_MAX_TASKS + 1, PAPER_MAX_TASKS + 1), 1.0 / (PAPER_MAX_TASKS + 1), dtype=torch.float64)
    with pytest.raises(ValueError, match="at most"):
        paper_groups(probs)


def test_search_adds_the_paper_loss_in_gflops_once_per_task():
    """λ · E / scale with the paper estimator is λ · T · BranchingLoss, the loss in GFLOPs (2 × GMAdds)."""
    num_tasks, lam = 5, 0.05
    costs = torch.tensor([3e8, 7e8, 1.1e9], dtype=torch.float64)
    probs = torch.softmax(alpha_state(1, 2.0, 3, num_tasks), dim=-1)
    cfg = from_mapping(BMTASConfig, {"resource_estimator": "paper", "lam": lam})
    term = lam * expected_madds(probs, costs, "paper") / resource_scale(cfg, costs, num_tasks)
    branching_loss = (paper_groups(probs) * 2 * costs / 1e9).sum()
    assert float(term) == pytest.approx(num_tasks * lam * float(branching_loss), rel=1e-12)
    with pytest.raises(ConfigError, match="absolute"):
        from_mapping(BMTASConfig, {"resource_estimator": "paper", "resource_mode": "normalized"})


def test_paper_estimator_takes_the_paper_lambda_unless_one_is_given():
    bmtas = SEARCH_METHODS.get("bmtas")
    defaults = bmtas.data_defaults("pascal-context", "mobilenet_v2", 5)
    assert bmtas.make_config(defaults).lam == 0.242  # mapped onto the exact loss
    assert bmtas.make_config({**defaults, "resource_estimator": "paper"}).lam == 0.05  # Table 1's BMTAS-2
    assert bmtas.make_config({**defaults, "resource_estimator": "paper", "lam": 0.1}).lam == 0.1
    assert bmtas.make_config({**bmtas.data_defaults("nyud", "resnet50", 4), "resource_estimator": "paper"}).lam == 1e-3
    assert type(bmtas.make_config(defaults).lam) is float


def test_a_search_with_the_paper_estimator_logs_the_bound_and_its_term(tmp_path):
    from branchsweep.backbones import create_backbone
    from branchsweep.config import DataConfig
    from branchsweep.data import create_data
    from branchsweep.search import SearchContext
    from branchsweep.search.bmtas import run_search

    data = create_data(DataConfig(dataset="synthetic-dense", size=16, train_samples=40, val_samples=8, seed=0))
    tasks = data.select_tasks(["semseg", "sal", "depth", "normals"])
    ctx = SearchContext(data=data, spec=create_backbone("mobilenet_v2", width=0.1, input_size=16), tasks=tasks,
                        out_dir=tmp_path / "run", progress=False, cache_dir=tmp_path / "cache")
    cfg = from_mapping(BMTASConfig, dict(iterations=4, warmup_iterations=1, batch_size=4, hard=True,
                                         weight_steps_per_arch=2, checkpoint_every=0, lam=0.5,
                                         resource_estimator="paper"))
    result = run_search(cfg, ctx)
    lines = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert lines[0]["estimator"] == "paper" and lines[0]["resource_scale"] == pytest.approx(1e9 / 8)
    arch = [e for e in lines if e.get("phase") == "arch"]
    assert arch and all(e["resource_loss"] == pytest.approx(0.5 * 8 * e["expected_madds"] / 1e9) for e in arch)
    # at α = 0 (the first step) the bound is the recursion on uniform candidates
    costs = torch.tensor(lines[0]["layer_madds"], dtype=torch.float64)
    uniform = torch.full((len(costs), 4, 4), 0.25, dtype=torch.float64)
    assert arch[0]["expected_madds"] == pytest.approx(float((paper_groups(uniform) * costs).sum()), rel=1e-9)
    assert arch[0]["expected_madds"] > float(expected_madds(uniform, costs, "exact"))
