import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.backbones import BACKBONES, create_backbone
from branchsweep.errors import ConfigError
from branchsweep.network import BranchedNetwork
from branchsweep.search.ltb import BranchingNetwork, resolve_child_nodes
from branchsweep.tasks import create_task

PAPER_CHILD_NODES = {"celeba_vgg": [3, 3, 5, 5, 10, 20, 30, 40], "celeba_deep_wide": [2, 4, 8, 16, 40]}


@pytest.mark.parametrize("name", sorted(PAPER_CHILD_NODES))
def test_registered_with_paper_branch_points(name):
    assert name in BACKBONES.names()
    spec = create_backbone(name, width=0.25, input_size=16)
    assert spec.num_layers == len(PAPER_CHILD_NODES[name])
    assert resolve_child_nodes(PAPER_CHILD_NODES[name], spec.num_layers, 40) == PAPER_CHILD_NODES[name]
    assert spec.input_shape == (3, 16, 16) and spec.skip_layers == ()


@pytest.mark.parametrize("name", sorted(PAPER_CHILD_NODES))
@pytest.mark.parametrize("size", [16, 64])
def test_binary_heads_give_one_logit(name, size):
    spec = create_backbone(name, width=0.125, input_size=size)
    tasks = [create_task("binary", name=f"a{i}") for i in range(3)]
    net = BranchedNetwork(spec, tasks, BranchConfig.single([t.name for t in tasks], spec.num_layers))
    out = net(torch.randn(2, 3, size, size))
    assert all(out[t.name].shape == (2, 1) for t in tasks)


def test_default_input_and_width():
    narrow = create_backbone("celeba_vgg", width=0.5)
    assert narrow.input_shape == (3, 64, 64)
    conv = narrow.layers[0]()[0]
    assert conv.out_channels == 16
    fc = create_backbone("celeba_vgg").layers[5]()[1]
    assert (fc.in_features, fc.out_features) == (32 * 2 * 2, 64)  # 64 px / 2^5 = 2


def test_layer_copies_are_independent():
    spec = create_backbone("celeba_deep_wide", width=0.125, input_size=16)
    a, b = spec.layers[0](), spec.layers[0]()
    assert not torch.equal(a[0].weight, b[0].weight)


def test_paper_child_nodes_run_in_the_branching_network():
    spec = create_backbone("celeba_vgg", width=0.125, input_size=16)
    tasks = [create_task("binary", name=f"a{i}") for i in range(40)]
    net = BranchingNetwork(spec, tasks, PAPER_CHILD_NODES["celeba_vgg"]).train()
    out = net(torch.randn(2, 3, 16, 16))
    assert len(out) == 40 and out["a39"].shape == (2, 1)


@pytest.mark.parametrize("name", sorted(PAPER_CHILD_NODES))
def test_pretrained_and_bad_sizes_are_config_errors(name):
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_backbone(name, pretrained="imagenet")
    with pytest.raises(ConfigError, match="input_size >= 4"):
        create_backbone(name, input_size=2)
    with pytest.raises(ConfigError, match="takes no option 'depth'"):
        create_backbone(name, depth=3)
