"""The task registry: every kind builds, trains (finite loss, gradients) and evaluates."""

from __future__ import annotations

import pytest
import torch

from branchsweep.errors import BranchsweepError, ConfigError
from branchsweep.tasks import TASKS, create_task, metric_directions

KINDS = TASKS.names()

#: BMTAS supplement A loss weights; Learning to Branch uses equal weights (synthetic, CelebA) and
#: 1/3/2/7/7 on Taskonomy (Appendix A).
PAPER_WEIGHTS = {"semseg": 1.0, "human_parts": 2.0, "sal": 5.0, "normals": 10.0, "edge": 50.0, "depth": 1.0,
                 "regression": 1.0, "binary": 1.0, "segment_semantic": 1.0, "normal": 3.0, "depth_zbuffer": 2.0,
                 "keypoints2d": 7.0, "edge_texture": 7.0}


def test_the_benchmark_kinds_are_registered():
    assert {"semseg", "human_parts", "parts", "sal", "normals", "edge", "depth", "regression", "binary"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_default_task_is_consistent(kind):
    task = create_task(kind)
    assert task.kind == kind
    assert task.out_channels >= 1
    assert task.primary in task.directions
    assert set(task.directions.values()) <= {"max", "min"}
    assert task.primary_direction == task.directions[task.primary]


@pytest.mark.parametrize("kind", KINDS)
def test_loss_is_finite_and_trains(kind, make_batch):
    task = create_task(kind)
    pred, target = make_batch(task)
    pred.requires_grad_(True)
    loss = task.loss(pred, target)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_metric_returns_exactly_the_declared_metrics(kind, make_batch):
    task = create_task(kind)
    metric = task.make_metric()
    metric.update(*make_batch(task))
    values = metric.compute()
    assert set(values) == set(task.directions)
    assert all(isinstance(v, float) and v == v for v in values.values())


@pytest.mark.parametrize("kind", KINDS)
def test_name_and_weight_can_be_overridden(kind):
    task = create_task(kind, name=f"my_{kind}", weight=0.5)
    assert task.name == f"my_{kind}" and task.weight == 0.5


@pytest.mark.parametrize("kind", [k for k in KINDS if k in PAPER_WEIGHTS])
def test_default_loss_weights_are_the_papers(kind):
    assert create_task(kind).weight == PAPER_WEIGHTS[kind]


def test_edge_defaults_are_pascal_context_and_nyud_overrides():
    pascal = create_task("edge")
    assert pascal.params == {"pos_weight": 0.95, "max_dist": 0.0075, "thresholds": 99}
    nyud = create_task("edge", pos_weight=0.8, max_dist=0.011, thresholds=9)
    assert nyud.params == {"pos_weight": 0.8, "max_dist": 0.011, "thresholds": 9}
    metric = nyud.make_metric()
    assert metric.max_dist == 0.011 and len(metric.thresholds) == 9


def test_semseg_class_count_sets_the_head():
    assert create_task("semseg", num_classes=40).out_channels == 40


def test_unknown_kind_is_a_user_error():
    with pytest.raises(BranchsweepError, match="unknown task 'semsegg'.*did you mean 'semseg'"):
        create_task("semsegg")


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("semseg", {"classes": 3}, "takes no parameter 'classes'"),
        ("semseg", {"num_classes": 1}, "num_classes must be at least 2"),
        ("edge", {"pos_weight": 1.5}, "pos_weight must be in"),
        ("edge", {"max_dist": 0.0}, "max_dist must be positive"),
        ("edge", {"thresholds": 0}, "thresholds must be at least 1"),
        ("depth", {"weight": -1.0}, "loss weight must be >= 0"),
        ("regression", {"out_channels": 0}, "at least 1 output channel"),
    ],
)
def test_bad_parameters_are_config_errors(kind, params, message):
    with pytest.raises(ConfigError, match=message):
        create_task(kind, **params)


def test_metric_directions_cover_every_kind():
    directions = metric_directions()
    for kind in KINDS:
        task = create_task(kind)
        for metric, direction in task.directions.items():
            assert directions[f"{task.name}/{metric}"] == direction
    assert directions["normals/mean"] == "min" and directions["edge/odsF"] == "max"
    assert directions["depth/rmse"] == "min" and directions["sal/maxF"] == "max"
