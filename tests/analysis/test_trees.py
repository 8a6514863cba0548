"""The plain-data reading of branch-config JSON agrees with ``BranchConfig`` and names its mistakes."""

from __future__ import annotations

import pytest

from analysis import AnalysisError, branch_tree, tree_plot
from analysis.plots import leaf_order
from branchsweep.arch import BranchConfig

TASKS = ["semseg", "depth", "normals", "edge"]
CONFIGS = [
    BranchConfig.single(TASKS, 3),
    BranchConfig.shared(TASKS, 3),
    BranchConfig.from_op_indices(TASKS, [[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 2, 2], [0, 1, 2, 3]]),
    BranchConfig.from_groups(TASKS, [[TASKS], [["edge", "depth"], ["normals", "semseg"]],
                                     [["normals"], ["semseg"], ["depth", "edge"]]]),
]


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_groups_and_parents_match_branch_config(config):
    tree = branch_tree(config.to_json())
    assert tree.tasks == config.tasks
    assert [[list(g) for g in part] for part in tree.layers] == [config.groups(layer) for layer in range(config.num_layers)]
    expected = [[-1] * config.num_groups(0)] + [
        [config.parent_group(layer, g) for g in range(config.num_groups(layer))] for layer in range(1, config.num_layers)
    ]
    assert [list(p) for p in tree.parents] == expected
    assert branch_tree(config.to_dict()) == tree


def test_leaf_order_keeps_siblings_together():
    # semseg and normals share a branch that depth, listed between them, does not: draw them adjacent.
    tree = branch_tree({"version": 1, "tasks": ["semseg", "depth", "normals"],
                        "layers": [[["semseg", "normals"], ["depth"]], [["semseg"], ["normals"], ["depth"]]]})
    assert leaf_order(tree) == ["semseg", "normals", "depth"]


def test_tree_plot_takes_json_text_a_parsed_object_or_a_branch_config():
    config = CONFIGS[2]
    for arch in (config.to_json(), config.to_dict(), config, branch_tree(config.to_json())):
        ax = tree_plot(arch, "t").axes[0]
        assert ax.get_title() == "t" and len(ax.collections) == sum(map(len, branch_tree(config.to_json()).layers))


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("[1]", "expected a JSON object"),
        ({"schema": "other", "version": 1, "tasks": ["a"], "layers": [[["a"]]]}, "schema is 'other'"),
        ({"version": 1, "tasks": ["a", "a"], "layers": [[["a"]]]}, "distinct task names"),
        ({"version": 1, "tasks": ["a"], "layers": []}, "'layers' must be"),
        ({"version": 1, "tasks": ["a", "b"], "layers": [[["a"], []]]}, "layer 1 must put each task"),
        ({"version": 1, "tasks": ["a", "b"], "layers": [[["a", "b", "b"]]]}, "layer 1 must put each task"),
        ({"version": 1, "tasks": ["a", "b"], "layers": [[["a"], ["b"]], [["a", "b"]]]}, "layer 2 merges branches"),
    ],
)
def test_malformed_trees_are_one_line_errors_naming_the_source(arch, message):
    with pytest.raises(AnalysisError, match=message) as info:
        branch_tree(arch, source="trial 7")
    assert str(info.value).startswith("trial 7: ") and "\n" not in str(info.value)
