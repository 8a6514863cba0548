"""Branch points: the tree space (its size in closed form, every tree enumerated), and every registered
method exporting only trees that split at the branch points given."""

from __future__ import annotations

import json
import random

import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.cli import main
from branchsweep.config import DataConfig, ModelConfig
from branchsweep.data import create_data
from branchsweep.errors import ConfigError
from branchsweep.factory import build_spec
from branchsweep.search import SEARCH_METHODS, SearchContext
from branchsweep.search.base import run_method
from branchsweep.search.ltb import BranchingNetwork
from branchsweep.search.supergraph import Supergraph
from branchsweep.tree_space import (
    check_branch_points,
    count_trees,
    enumerate_trees,
    respects,
    segment_partitions,
    segments,
    violation,
)

TASKS = ["bent_0", "square_0", "sinc_0"]
TINY = ["--dataset", "ltb-synthetic", "--tasks", ",".join(TASKS), "--train-samples", "64",
        "--val-samples", "16", "--backbone", "mlp", "--width", "0.16", "--no-progress"]
SHARED_TREE = BranchConfig.from_groups(TASKS, [[TASKS]] * 4).to_json(indent=None)
SPLIT_TREE = BranchConfig.from_groups(TASKS, [[TASKS], [TASKS], [["bent_0", "square_0"], ["sinc_0"]],
                                              [["bent_0", "square_0"], ["sinc_0"]]]).to_json(indent=None)
#: Per registered method: the smallest settings that run it on TINY (every registered method must be here).
TINY_SETTINGS: dict[str, dict] = {
    "bmtas": {"iterations": 6, "warmup_iterations": 2, "batch_size": 8, "weight_steps_per_arch": 2,
              "checkpoint_every": 0},
    "ltb": {"iterations": 6, "warmup_iterations": 2, "batch_size": 8, "child_nodes": [2, "T"]},
    "vanilla": {"like": SPLIT_TREE},
    "permuted": {"like": SPLIT_TREE, "permutations": 2},
    "random": {"like": SPLIT_TREE, "tolerance": 0.5},
    "fafs": {"like": SPLIT_TREE, "pretrain_iterations": 4, "batch_size": 8, "affinity_images": 16},
    "bmn": {"like": SPLIT_TREE, "pretrain_iterations": 4, "batch_size": 8, "affinity_images": 16},
}
POINTS = (1, 2)


@pytest.mark.parametrize("tasks", [1, 2, 3, 4])
@pytest.mark.parametrize("num_segments", [1, 2, 3])
def test_enumeration_matches_the_closed_form(tasks, num_segments):
    names = [f"t{i}" for i in range(tasks)]
    points = list(range(1, 2 * num_segments, 2))
    trees = enumerate_trees(names, points, 2 * num_segments + 1)
    assert len(trees) == count_trees(tasks, num_segments)
    assert len(set(trees)) == len(trees)  # all distinct
    assert all(respects(t, points) for t in trees)


def test_four_tasks_three_branch_points_is_154_trees():
    trees = enumerate_trees(["a", "b", "c", "d"], [1, 3, 5], 7)
    assert len(trees) == 154 == count_trees(4, 3)
    assert BranchConfig.shared(list("abcd"), 7) in trees
    assert all(t.num_groups(0) == 1 for t in trees)  # layer 0 is not a branch point: shared
    assert segment_partitions(trees[-1], [1, 3, 5]) == [trees[-1].partitions[i] for i in (1, 3, 5)]


def test_branch_point_checks():
    assert check_branch_points(None, 4) == (0, 1, 2, 3)
    assert segments([0, 2], 4) == [(0, 2), (2, 4)]
    with pytest.raises(ConfigError, match=r"in \[0, 3\]"):
        check_branch_points([4], 4)
    tree = BranchConfig.from_groups("ab", [[["a"], ["b"]], [["a"], ["b"]]])
    assert violation(tree, [1]) == "it splits at the input (layer 0 is not a branch point)"


@pytest.fixture(scope="module")
def tiny():
    data = create_data(DataConfig(dataset="ltb-synthetic", tasks=TASKS, train_samples=64, val_samples=16))
    spec = build_spec(ModelConfig(backbone="mlp", width=0.16), data)
    return data, spec, data.select_tasks(TASKS)


def test_every_registered_method_has_tiny_settings():
    assert set(SEARCH_METHODS.names()) <= set(TINY_SETTINGS) | {"split-at"}


@pytest.mark.parametrize("name", SEARCH_METHODS.names())
@pytest.mark.parametrize("seed", [0, 1])
def test_every_method_exports_only_trees_on_the_branch_points(name, seed, tiny, tmp_path):
    data, spec, tasks = tiny
    method = SEARCH_METHODS.get(name)
    ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=tmp_path, seed=seed, progress=False,
                        branch_points=POINTS)
    result = method.run(method.make_config(TINY_SETTINGS[name]), ctx)  # unchecked: the method itself must obey
    assert respects(result.config, POINTS), result.config.draw()
    assert BranchConfig.load(tmp_path / "branch_config.json") == result.config


def test_supergraph_routes_only_change_at_branch_points(tiny):
    """α is one per segment; whatever its values, the argmax tree and sampled routes respect the points."""
    data, spec, tasks = tiny
    torch.manual_seed(0)
    model = Supergraph(spec, tasks, branch_points=POINTS)
    assert model.alpha.shape[0] == len(POINTS)
    gen = torch.Generator().manual_seed(0)
    for _ in range(25):
        with torch.no_grad():
            model.alpha.normal_(std=3.0)
        config = BranchConfig.from_op_indices(TASKS, model.argmax_ops().tolist())
        assert respects(config, POINTS)
        hard = model.sample_weights(1.0, hard=True, generator=gen)
        sampled = BranchConfig.from_op_indices(TASKS, hard.argmax(-1).tolist())
        assert respects(sampled, POINTS)
        probs = torch.softmax(model.layer_alpha().double(), dim=-1)
        assert torch.equal(probs[0, :, 0], torch.ones(len(TASKS), dtype=torch.double))  # layer 0: shared


def test_ltb_network_splits_only_at_branch_points(tiny):
    data, spec, tasks = tiny
    torch.manual_seed(0)
    net = BranchingNetwork(spec, tasks, [3, "T"], branch_points=POINTS)
    assert net.counts == [1, 3, 3, 3] and net.choosing == {1, 2}
    rng = random.Random(0)
    for _ in range(25):
        with torch.no_grad():
            for a in net.logits:
                a.copy_(torch.tensor([[rng.gauss(0, 3) for _ in range(a.shape[1])] for _ in range(a.shape[0])]))
        assert respects(net.export(), POINTS)
    out = net.train()(data.split("train", train=True)[0]["image"].unsqueeze(0))
    assert set(out) == set(TASKS)
    assert net.last_choice[3] == [0, 1, 2]  # layer 3 is not a branch point: child j reads node j
    with pytest.raises(ConfigError, match="one count per branch point"):
        BranchingNetwork(spec, tasks, [3, 3, 3, "T"], branch_points=POINTS)


def test_run_method_refuses_a_tree_off_the_branch_points(tiny, tmp_path):
    data, spec, tasks = tiny
    ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=tmp_path, progress=False, branch_points=(2,))
    with pytest.raises(ConfigError, match="permuted: --like: the tree does not respect --branch-points 2"):
        run_method(SEARCH_METHODS.get("permuted"), SEARCH_METHODS.get("permuted").make_config(
            {"like": BranchConfig.from_groups(TASKS, [[TASKS], [["bent_0"], ["square_0", "sinc_0"]],
                                                      [["bent_0"], ["square_0", "sinc_0"]],
                                                      [["bent_0"], ["square_0", "sinc_0"]]]).to_json()}), ctx)


def test_branch_points_from_the_cli(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["search", "--method", "ltb", "--branch-points", "1,2", "--child-nodes", "2,T", "--iterations", "4",
                 "--warmup-iterations", "1", "--batch-size", "8", "--out", str(out), *TINY]) == 0
    assert respects(BranchConfig.load(out / "branch_config.json"), POINTS)
    capsys.readouterr()
    assert main(["search", "--method", "vanilla", "--branch-points", "9", "--branch-at", "1",
                 "--out", str(tmp_path / "x"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "branch points must be layer indices in [0, 3]" in err
    assert main(["search", "--method", "vanilla", "--branch-points", "2", "--branch-at", "1",
                 "--out", str(tmp_path / "y"), *TINY]) == 2
    assert "--branch-at 1 is not a branch point (allowed: 2, 4)" in capsys.readouterr().err
    log = json.loads((out / "search_log.jsonl").read_text().splitlines()[0])
    assert log["header"]["child_nodes"] == [2, 3]
