"""``branchsweep.latency``: settings are validated, ``measure`` returns sane numbers for both runtimes."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tasks_for, tiny_backbone

from branchsweep.arch import BranchConfig
from branchsweep.errors import ConfigError
from branchsweep.latency import LatencySettings, batch_of, measure, percentile
from branchsweep.network import BranchedNetwork


def _mlp_tree():
    spec = tiny_backbone("mlp")
    tasks = tasks_for(spec, 3)
    config = BranchConfig.from_op_indices([t.name for t in tasks], [[0, 0, 0], [0, 0, 1], [0, 1, 2], [0, 1, 2]])
    return BranchedNetwork(spec, tasks, config).eval(), spec.example_input(2).normal_()


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_measure_returns_positive_finite_ordered_numbers(runtime):
    net, x = _mlp_tree()
    settings = LatencySettings(batch=4, threads=2, warmup=2, repeats=7, runtime=runtime)
    threads = torch.get_num_threads()
    result = measure(net, x, settings)
    assert torch.get_num_threads() == threads  # restored after measuring
    assert result.repeats == 7 and len(result.times_ms) == 7
    assert 0 < result.median_ms <= result.p90_ms and math.isfinite(result.p90_ms)
    assert result.p90_ms <= max(result.times_ms)
    assert result.peak_mem_mb >= 0 and math.isfinite(result.peak_mem_mb) and "RSS" in result.memory
    row = result.to_dict()
    assert row["runtime"] == runtime and row["batch"] == 4 and row["median_ms"] == result.median_ms


@pytest.mark.parametrize("kwargs, message", [
    ({"device": "tpu"}, "device must be cpu, cuda or cuda:N"),
    ({"batch": 0}, "batch must be an integer >= 1"),
    ({"threads": 1.5}, "threads must be an integer >= 1"),
    ({"warmup": -1}, "warmup must be an integer >= 0"),
    ({"repeats": 0}, "repeats must be an integer >= 1"),
    ({"runtime": "tensorrt"}, "runtime must be one of torch, onnxruntime"),
])
def test_settings_are_validated(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LatencySettings(**kwargs)


def test_cuda_without_cuda_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, on any machine
    net, x = _mlp_tree()
    with pytest.raises(ConfigError, match="CUDA is not available"):
        measure(net, x, LatencySettings(device="cuda"))


def test_batch_and_percentile():
    x = torch.arange(6.0).reshape(3, 2)
    assert batch_of(x, 4).tolist() == [[0.0, 1.0]] * 4
    assert percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0], 90) == 10.0
