"""ONNX and TorchScript export of branched networks: one graph, every task a named output, outputs equal
to PyTorch's (onnxruntime on the CPU) for every registered backbone, dynamic batch, dynamic size where
the backbone allows it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import tasks_for, tiny_backbone

from branchsweep.arch import BranchConfig
from branchsweep.backbones import BACKBONES
from branchsweep.errors import ConfigError
from branchsweep.export import ATOL, RTOL, check_outputs, export, export_onnx, export_torchscript
from branchsweep.network import BranchedNetwork

#: Backbones whose dynamo export takes more than ~20 s on two busy cores (deep torchvision nets).
SLOW = {"mobilenet_v2", "resnet50", "resnet34"}


def _tree(name: str, size: int = 32) -> tuple[BranchedNetwork, torch.Tensor]:
    """Two tasks sharing every layer but the last (a real branch point), random weights, eval mode."""
    torch.manual_seed(0)
    spec = tiny_backbone(name, size)
    tasks = tasks_for(spec, 2)
    names = [t.name for t in tasks]
    config = BranchConfig.from_op_indices(names, [[0, 0]] * (spec.num_layers - 1) + [[0, 1]])
    net = BranchedNetwork(spec, tasks, config).eval()
    for m in net.modules():  # non-trivial batch-norm statistics, so eval-mode BN is really checked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return net, torch.randn(3, *spec.input_shape)


def _ort(path, x: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in BACKBONES.names()])
def test_onnx_equals_pytorch_for_every_backbone(name, tmp_path):
    net, x = _tree(name)
    path = tmp_path / "tree.onnx"
    graph = export_onnx(net, x, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == net.task_names == graph["outputs"]
    check = check_outputs(net, x, path, "onnx")
    assert check.passed and check.max_abs <= ATOL and check.worst_ratio <= 1, check.summary()
    for batch in (1, 3):  # dynamic batch axis
        xb = torch.randn(batch, *x.shape[1:])
        with torch.no_grad():
            want = net(xb)
        got = _ort(path, xb)
        for task, out in zip(net.task_names, got):
            np.testing.assert_allclose(out, want[task].numpy(), atol=ATOL, rtol=RTOL)


def test_shared_blocks_are_computed_once_in_the_graph(tmp_path):
    """A tree sharing its first layers has fewer convolutions in its graph than Single (one per block copy)."""
    net, x = _tree("convnet")
    single = BranchedNetwork(net.spec, tasks_for(net.spec, 2), BranchConfig.single(net.task_names,
                             net.spec.num_layers)).eval()
    counts = []
    for model, name in ((net, "tree"), (single, "single")):
        export_onnx(model, x, tmp_path / f"{name}.onnx")
        graph = onnx.load(str(tmp_path / f"{name}.onnx")).graph
        counts.append(sum(n.op_type == "Conv" for n in graph.node))
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert counts[0] == convs < counts[1]


def test_dynamic_size_where_the_backbone_allows_it(tmp_path):
    net, x = _tree("convnet")
    result = export(net, x, tmp_path / "dyn.onnx", "onnx", dynamic_size=True)
    assert [c.passed for c in result["checks"]] == [True, True]
    assert result["checks"][1].input_shape[2:] != list(x.shape[2:])
    xb = torch.randn(2, 3, 24, 40)
    with torch.no_grad():
        want = net(xb)
    for task, out in zip(net.task_names, _ort(tmp_path / "dyn.onnx", xb)):
        assert out.shape == tuple(want[task].shape)
        np.testing.assert_allclose(out, want[task].numpy(), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name, message", [("celeba_vgg", "only runs at 32x32"), ("mlp", "not an image")])
def test_dynamic_size_refused_where_the_backbone_cannot(name, message, tmp_path):
    net, x = _tree(name)
    with pytest.raises(ConfigError, match=message):
        export_onnx(net, x, tmp_path / "dyn.onnx", dynamic_size=True)
    assert not (tmp_path / "dyn.onnx").exists()


def test_torchscript_round_trip(tmp_path):
    net, x = _tree("convnet")
    path = tmp_path / "tree.pt"
    graph = export_torchscript(net, x, path)
    assert graph["outputs"] == net.task_names
    loaded = torch.jit.load(str(path))
    for batch in (1, 3):
        xb = torch.randn(batch, *x.shape[1:])
        with torch.no_grad():
            want, got = net(xb), loaded(xb)
        assert isinstance(got, tuple) and len(got) == len(net.task_names)
        for task, out in zip(net.task_names, got):
            torch.testing.assert_close(out, want[task], atol=ATOL, rtol=RTOL)
    assert check_outputs(net, x, path, "torchscript").passed


def test_check_outputs_fails_for_a_different_network(tmp_path):
    """The check can fail: a file exported from other weights is caught."""
    net, x = _tree("mlp")
    path = tmp_path / "tree.onnx"
    export_onnx(net, x, path)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    check = check_outputs(net, x, path, "onnx")
    assert not check.passed and check.max_abs > ATOL and check.worst_ratio > 1
    assert "FAILED" in check.summary()
