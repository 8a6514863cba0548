import json

import pytest

from branchsweep.arch import BranchConfig
from branchsweep.errors import ConfigError

TASKS = ["semseg", "depth", "normals", "edge"]


def test_single_and_shared():
    single = BranchConfig.single(TASKS, 3)
    shared = BranchConfig.shared(TASKS, 3)
    assert [single.num_groups(i) for i in range(3)] == [4, 4, 4]
    assert [shared.num_groups(i) for i in range(3)] == [1, 1, 1]
    assert single.arch_hash() != shared.arch_hash()


def test_from_op_indices_groups_by_prefix():
    # tasks 0,1 agree on both layers; 2 agrees with them at layer 1 only; 3 differs in layer 1.
    cfg = BranchConfig.from_op_indices(TASKS, [[0, 0, 0, 1], [2, 2, 3, 2]])
    assert cfg.groups(0) == [["semseg", "depth", "normals"], ["edge"]]
    # layer 2: edge picks op 2 like semseg/depth, but its prefix differs, so it stays apart
    assert cfg.groups(1) == [["semseg", "depth"], ["normals"], ["edge"]]


def test_hash_ignores_labels_and_task_order():
    a = BranchConfig.from_op_indices(TASKS, [[0, 0, 1, 1], [0, 0, 1, 2]])
    b = BranchConfig.from_op_indices(TASKS, [[3, 3, 0, 0], [1, 1, 2, 0]])  # other labels, same tree
    c = BranchConfig.from_groups(list(reversed(TASKS)), [g for g in (a.groups(0), a.groups(1))])
    assert a == b == c
    assert a.arch_hash() == b.arch_hash() == c.arch_hash()
    d = BranchConfig.from_op_indices(TASKS, [[0, 0, 1, 1], [0, 1, 2, 2]])
    assert d.arch_hash() != a.arch_hash()


def test_from_parents_matches_op_indices_and_prunes():
    # 3 layers; layer 0 has 2 nodes, layer 1 has 3 nodes (node 2 unused), layer 2 one per task.
    parents = [[0, 0], [0, 1, 1], [0, 0, 1, 1]]
    cfg = BranchConfig.from_parents(TASKS, parents)
    assert cfg.groups(0) == [["semseg", "depth"], ["normals", "edge"]]
    assert cfg.groups(1) == [["semseg", "depth"], ["normals", "edge"]]
    assert cfg.num_groups(2) == 4
    with pytest.raises(ConfigError, match="one per task"):
        BranchConfig.from_parents(TASKS, [[0], [0, 0]])
    with pytest.raises(ConfigError, match="parent 5"):
        BranchConfig.from_parents(TASKS, [[0, 0], [5, 0, 1, 1]])


def test_json_round_trip(tmp_path):
    cfg = BranchConfig.from_op_indices(TASKS, [[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 2, 3]])
    path = cfg.save(tmp_path / "a.json")
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["schema"] == "branchsweep.branch_config"
    assert BranchConfig.load(path) == cfg


@pytest.mark.parametrize(
    "layers, message",
    [
        ([[["semseg", "depth"], ["normals", "edge"]], [["semseg", "normals"], ["depth"], ["edge"]]], "merges branches"),
        ([[["semseg", "depth", "normals"]]], "every task exactly once"),
        ([[["semseg", "depth", "normals", "edge", "depth"]]], "every task exactly once"),
        ([[["semseg", "depth", "normals", "sky"]]], "unknown task 'sky'"),
    ],
)
def test_validation_messages(layers, message):
    with pytest.raises(ConfigError, match=message):
        BranchConfig.from_groups(TASKS, layers)


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="malformed JSON"):
        BranchConfig.load(bad)
    bad.write_text(json.dumps({"version": 99, "tasks": TASKS, "layers": []}))
    with pytest.raises(ConfigError, match="unsupported version"):
        BranchConfig.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        BranchConfig.load(tmp_path / "missing.json")


def test_check_tasks_and_layers():
    cfg = BranchConfig.shared(TASKS, 3)
    with pytest.raises(ConfigError, match="3 layers but the backbone has 5"):
        cfg.check_tasks(TASKS, 5)
    with pytest.raises(ConfigError, match="unknown tasks"):
        cfg.check_tasks(TASKS[:3], 3)


def test_draw():
    cfg = BranchConfig.from_op_indices(["a", "b", "c"], [[0, 0, 0], [0, 0, 1], [0, 1, 1]])
    assert cfg.draw() == "L1 [a b c]\n├─ L2 [a b]\n│  ├─ L3 [a]\n│  └─ L3 [b]\n└─ L2-L3 [c]"
    assert cfg.branch_layer("a", "c") == 1
    assert cfg.branch_layer("a", "a") is None
