import pytest
import torch
from helpers import dense_heads, tasks_for, tiny_backbone

from branchsweep.arch import BranchConfig
from branchsweep.backbones import BACKBONES
from branchsweep.madds import count_madds, madds_table, measure_table
from branchsweep.network import BranchedNetwork


def configs(names, num_layers):
    mixed_rows = [[0] * len(names)] * (num_layers // 2) + [[0] + [1] * (len(names) - 1)] * (num_layers - num_layers // 2 - 1)
    mixed_rows.append(list(range(len(names))))
    return {
        "single": BranchConfig.single(names, num_layers),
        "shared": BranchConfig.shared(names, num_layers),
        "mixed": BranchConfig.from_op_indices(names, mixed_rows),
    }


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_madds_of_built_network_equals_table(backbone):
    spec = tiny_backbone(backbone)
    tasks = tasks_for(spec)
    names = [t.name for t in tasks]
    table = measure_table(spec, tasks)
    seen = set()
    for label, cfg in configs(names, spec.num_layers).items():
        net = BranchedNetwork(spec, tasks, cfg).eval()
        measured = count_madds(net, spec.example_input(1))
        assert measured == table.madds(cfg), label
        seen.add(measured)
    assert len(seen) == 3  # single > mixed > shared


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_forward_shapes(backbone):
    spec = tiny_backbone(backbone)
    tasks = tasks_for(spec)
    cfg = configs([t.name for t in tasks], spec.num_layers)["mixed"]
    out = BranchedNetwork(spec, tasks, cfg).train()(spec.example_input(2))
    assert set(out) == {t.name for t in tasks}
    for t in tasks:
        if len(spec.input_shape) == 3 and t.dense and dense_heads(spec):
            assert out[t.name].shape == (2, t.out_channels, *spec.input_shape[1:])
        else:
            assert out[t.name].shape == (2, t.out_channels)


def test_shared_blocks_computed_once():
    spec = tiny_backbone("mobilenet_v2")
    tasks = tasks_for(spec, 3)
    names = [t.name for t in tasks]
    cfg = BranchConfig.from_op_indices(names, [[0, 0, 0]] * 10 + [[0, 0, 1]] * (spec.num_layers - 10))
    net = BranchedNetwork(spec, tasks, cfg)
    calls: dict[tuple[int, int], int] = {}
    for layer, blocks in enumerate(net.blocks):
        for g, block in enumerate(blocks):
            block.register_forward_hook(lambda m, i, o, key=(layer, g): calls.__setitem__(key, calls.get(key, 0) + 1))
    net(spec.example_input(2))
    expected = {(layer, g) for layer in range(spec.num_layers) for g in range(cfg.num_groups(layer))}
    assert set(calls) == expected
    assert all(v == 1 for v in calls.values())
    assert len(calls) == 10 + 2 * (spec.num_layers - 10)


def test_each_task_gets_its_own_skip_features():
    """A task's head sees the low-level features of its own branch, not another's."""
    spec = tiny_backbone("mobilenet_v2")
    tasks = tasks_for(spec, 2)
    names = [t.name for t in tasks]
    cfg = BranchConfig.single(names, spec.num_layers)
    net = BranchedNetwork(spec, tasks, cfg).eval()
    x = spec.example_input(1) + 0.3
    base = net(x)
    with torch.no_grad():
        for p in net.blocks[0][1].parameters():  # layer 1 of the second task only
            p.add_(0.5)
    after = net(x)
    assert torch.equal(base[names[0]], after[names[0]])
    assert not torch.equal(base[names[1]], after[names[1]])


def test_lr_division_by_sharing():
    spec = tiny_backbone("mlp")
    tasks = tasks_for(spec, 3)
    cfg = BranchConfig.from_op_indices([t.name for t in tasks], [[0, 0, 0], [0, 0, 1], [0, 1, 2], [0, 1, 2]])
    net = BranchedNetwork(spec, tasks, cfg)
    groups = {g["sharing"]: g["lr"] for g in net.parameter_groups(0.3, divide_by_sharing=True)}
    assert groups == pytest.approx({1: 0.3, 2: 0.15, 3: 0.1})


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet50"])
def test_single_stem_keeps_the_full_lr_and_other_trees_divide_it(backbone):
    """The paper's Single is T separate networks (nothing shared, nothing divided): its stem, shared here
    only for the network format, keeps the full lr; in any other tree the stem is shared and divided."""
    spec = tiny_backbone(backbone)
    tasks = tasks_for(spec, 3)
    for label, cfg in configs([t.name for t in tasks], spec.num_layers).items():
        net = BranchedNetwork(spec, tasks, cfg)
        stem = {id(p) for p in net.stem.parameters()}
        assert stem and net.sharing()[next(n for n, _ in net.named_parameters() if n.startswith("stem."))] == 3
        lrs = [g["lr"] for g in net.parameter_groups(0.3, divide_by_sharing=True) if stem & {id(p) for p in g["params"]}]
        assert lrs == pytest.approx([0.3] if label == "single" else [0.1]), label
        assert net.is_single() == (label == "single")
        undivided = net.parameter_groups(0.3, divide_by_sharing=False)
        assert len(undivided) == 1 and undivided[0]["lr"] == 0.3


def test_madds_cache(tmp_path):
    spec = tiny_backbone("mlp")
    tasks = tasks_for(spec)
    a = madds_table(spec, tasks, cache_dir=tmp_path)
    files = list((tmp_path / "madds").glob("*.json"))
    assert len(files) == 1
    assert madds_table(spec, tasks, cache_dir=tmp_path) == a
    files[0].write_text("garbage")  # a broken cache entry is measured again
    assert madds_table(spec, tasks, cache_dir=tmp_path) == a


def test_format_madds_picks_a_readable_unit():
    import doctest

    import branchsweep.madds

    result = doctest.testmod(branchsweep.madds)
    assert result.attempted > 0 and result.failed == 0
