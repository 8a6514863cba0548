"""ResNet-34 + ASPP (Learning to Branch, Taskonomy): layer list, parameter counts, MAdds, LTB blocks."""

from __future__ import annotations

import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.backbones import create_backbone
from branchsweep.cli import main
from branchsweep.commands.madds import parameter_count
from branchsweep.madds import measure_table
from branchsweep.search.ltb import BranchingNetwork, resolve_child_nodes
from branchsweep.tasks import create_task

TASKS = ["segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture"]
#: GMAdds and parameters (M) of Shared / Single at the search (128) and retrain (256) resolutions,
#: as `branchsweep madds --backbone resnet34 --tasks <the five> --size S` prints them.
EXPECTED = {(128, "shared"): (10.77, 41.95), (128, "single"): (33.22, 127.05),
            (256, "shared"): (43.08, 41.95), (256, "single"): (132.87, 127.05)}


def test_a_branch_point_after_every_residual_block():
    spec = create_backbone("resnet34", width=0.0625, input_size=32)
    assert spec.num_layers == 16 and spec.skip_layers == ()
    assert spec.layer_names == [f"s{s}b{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(1, n + 1)]
    tasks = [create_task(t) for t in TASKS]
    counts = resolve_child_nodes(5, spec.num_layers, len(tasks))
    assert counts == [5] * 16
    net = BranchingNetwork(spec, tasks, counts).train()
    out = net(torch.randn(2, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "segment_semantic": (2, 16, 32, 32), "normal": (2, 3, 32, 32), "depth_zbuffer": (2, 1, 32, 32),
        "keypoints2d": (2, 1, 32, 32), "edge_texture": (2, 1, 32, 32)}


@pytest.mark.parametrize("size", [128, 256])
def test_full_size_madds_and_parameters(size):
    with torch.device("meta"):  # shapes only: the full-size network costs no memory and no arithmetic
        spec = create_backbone("resnet34", input_size=size)
        tasks = [create_task(t) for t in TASKS]
        table = measure_table(spec, tasks)
        for arch in ("shared", "single"):
            config = getattr(BranchConfig, arch)(TASKS, spec.num_layers)
            got = (round(table.madds(config) / 1e9, 2), round(parameter_count(spec, tasks, config) / 1e6, 2))
            assert got == EXPECTED[size, arch]


def test_madds_command_prints_madds_and_parameters(capsys):
    code = main(["madds", "--backbone", "resnet34", "--tasks", ",".join(TASKS), "--size", "32", "--width", "0.0625"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("resnet34 32x32 single:") and lines[0].endswith("M parameters") and "GMAdds" in lines[0]


def test_output_stride_is_checked():
    from branchsweep.errors import ConfigError

    with pytest.raises(ConfigError, match="output_stride must be 8, 16 or 32"):
        create_backbone("resnet34", output_stride=4)


def test_parameter_count_equals_the_built_network():
    from branchsweep.network import BranchedNetwork, count_parameters

    spec = create_backbone("resnet34", width=0.0625, input_size=32)
    tasks = [create_task(t) for t in TASKS]
    rows = [[0] * 5] * 8 + [[0, 0, 0, 1, 1]] * 6 + [[0, 0, 1, 2, 2], [0, 1, 2, 3, 4]]
    configs = [BranchConfig.single(TASKS, 16), BranchConfig.shared(TASKS, 16), BranchConfig.from_op_indices(TASKS, rows)]
    counts = [parameter_count(spec, tasks, c) for c in configs]
    assert counts == [count_parameters(BranchedNetwork(spec, tasks, c)) for c in configs]
    assert counts[0] > counts[2] > counts[1]
