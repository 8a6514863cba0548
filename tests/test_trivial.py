"""Trivial predictors: one rule per task kind, fitted on training labels, scored like a network."""

import math

import pytest
import torch

from branchsweep.config import DataConfig, TrainConfig
from branchsweep.data import create_data
from branchsweep.tasks import TASKS, create_task
from branchsweep.trivial import TRIVIAL_RULES, fit_trivial, trivial_metrics


@pytest.mark.parametrize("kind", TASKS.names())
def test_every_task_kind_names_a_trivial_rule(kind):
    assert create_task(kind).trivial in TRIVIAL_RULES


def test_synthetic_dense_trivial_scores_are_the_constant_predictions():
    data = create_data(DataConfig(dataset="synthetic-dense", size=16, train_samples=24, val_samples=8))
    tasks = data.select_tasks(["semseg", "depth", "normals", "sal"])
    model = fit_trivial(data, tasks)
    assert model.constant("semseg").argmax().item() == 0  # all-background
    val = [data.split("val", train=False)[i] for i in range(8)]
    depth = torch.stack([v["depth"] for v in val])
    train_depth = torch.stack([data.split("train", train=False)[i]["depth"] for i in range(24)])
    metrics = trivial_metrics(data, tasks, TrainConfig(eval_batch_size=4, progress=False))
    expected_rmse = math.sqrt(float(((depth - train_depth.mean()) ** 2).mean()))
    assert metrics["depth/rmse"] == pytest.approx(expected_rmse, rel=1e-4)
    background = float(torch.stack([v["semseg"] for v in val]).eq(0).double().mean())
    n_classes = tasks[0].out_channels
    present = torch.stack([v["semseg"] for v in val]).unique().numel()
    # mIoU over classes present in labels or predictions: background IoU = its pixel share, others 0
    assert metrics["semseg/mIoU"] == pytest.approx(100 * background / present, rel=1e-6)
    assert n_classes >= present
    # a constant normal has one angular error per pixel; its mean is positive and below 90°
    assert 0 < metrics["normals/mean"] < 90


def test_rules_on_tiny_labels():
    sal = create_task("sal")
    assert torch.sigmoid(TRIVIAL_RULES.get("probability")(sal, [torch.tensor([[[1.0, 255.0, 0.0]]])])).item() == \
        pytest.approx(0.5, abs=1e-4)  # 255 is ignored
    reg = create_task("regression", name="r", out_channels=2)
    got = TRIVIAL_RULES.get("mean")(reg, [torch.tensor([1.0, float("nan")]), torch.tensor([3.0, 4.0])])
    assert got.tolist() == [2.0, 4.0]  # per channel: the NaN entry alone is left out
