"""Losses against hand-computed values (BMTAS supplement A, Learning to Branch 4.1/4.2)."""

from __future__ import annotations

import math

import pytest
import torch

from branchsweep.tasks import TASKS, create_task, losses

LOG2 = math.log(2.0)


@pytest.mark.parametrize("kind", TASKS.names())
def test_batch_without_valid_label_gives_graph_attached_zero(kind, make_batch):
    task = create_task(kind)
    pred, target = make_batch(task, labelled=False)
    pred.requires_grad_(True)
    loss = task.loss(pred, target)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


@pytest.mark.parametrize("kind", TASKS.names())
def test_weighted_sum_with_an_unlabelled_task_stays_finite(kind, make_batch):
    task = create_task(kind)
    pred, target = make_batch(task, labelled=False)
    other = torch.ones(1, requires_grad=True)
    total = (other * 2).sum() + task.weight * task.loss(pred.requires_grad_(True), target)
    total.backward()
    assert total.item() == 2.0 and other.grad.item() == 2.0


def test_cross_entropy_ignores_255():
    # two pixels labelled 0 with logits (0, 0) and (log 3, 0): -log(1/2) and -log(3/4); third ignored
    pred = torch.tensor([[[[0.0, math.log(3.0), 100.0]], [[0.0, 0.0, -100.0]]]])
    target = torch.tensor([[[0, 0, 255]]])
    expected = (LOG2 - math.log(0.75)) / 2
    assert losses.cross_entropy(pred, target).item() == pytest.approx(expected)


def test_balanced_bce_weights_the_rare_class():
    # y = (1, 0, 0, 0), logits 0: w = 3/4 → L = (3/4 + 3·1/4) · log 2 / 4
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert losses.balanced_bce(pred, target).item() == pytest.approx(1.5 * LOG2 / 4)
    # an ignored pixel changes neither the balance nor the mean
    padded = torch.cat([target, torch.full((1, 1, 2, 1), 255.0)], dim=3)
    assert losses.balanced_bce(torch.zeros(1, 1, 2, 3), padded).item() == pytest.approx(1.5 * LOG2 / 4)


def test_balanced_bce_hand_value_with_nonzero_logits():
    # y = (1, 0), x = (2, -1): w = 1/2; L = (1/2 · softplus(-2) + 1/2 · softplus(-1)) / 2
    pred = torch.tensor([[[[2.0, -1.0]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    expected = 0.5 * (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    assert losses.balanced_bce(pred, target).item() == pytest.approx(expected)


@pytest.mark.parametrize("pos_weight", [0.95, 0.8])
def test_weighted_bce_uses_the_positive_weight(pos_weight):
    # y = (1, 0, 0), x = 0: L = (w+ + 2 (1 - w+)) · log 2 / 3
    pred = torch.zeros(1, 1, 1, 4)
    target = torch.tensor([[[[1.0, 0.0, 0.0, 255.0]]]])
    expected = (pos_weight + 2 * (1 - pos_weight)) * LOG2 / 3
    assert losses.weighted_bce(pred, target, pos_weight=pos_weight).item() == pytest.approx(expected)


def test_edge_task_loss_takes_its_positive_weight():
    pred, target = torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 0.0]]]])
    assert create_task("edge", pos_weight=0.8).loss(pred, target).item() == pytest.approx(LOG2 / 2)


def test_normals_l1_normalises_predictions_and_skips_invalid_pixels():
    # pixel 0: prediction (3, 4, 0) → (0.6, 0.8, 0), label (1, 0, 0): |0.4| + |0.8| + 0 = 1.2
    # pixel 1: label is the zero vector (invalid) → left out; sum over the 3 channels / 1 valid pixel
    pred = torch.tensor([[[[3.0, 9.0]], [[4.0, 9.0]], [[0.0, 9.0]]]])
    target = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])
    assert losses.normals_l1(pred, target).item() == pytest.approx(1.2)
    assert losses.normals_l1(pred * 7.0, target).item() == pytest.approx(1.2)


def test_normals_l1_sums_channels_and_averages_over_valid_pixels():
    """The reference code's reduction (ω = 10 was tuned on it): (2,0,0) vs (0,1,0) → |1| + |−1| + 0 = 2."""
    assert losses.normals_l1(torch.tensor([[[[2.0]], [[0.0]], [[0.0]]]]),
                             torch.tensor([[[[0.0]], [[1.0]], [[0.0]]]])).item() == pytest.approx(2.0)
    # two valid pixels with losses 2 and 0 → 1 (the divisor counts pixels, not channel entries)
    pred = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])
    target = torch.tensor([[[[0.0, 0.0]], [[1.0, 1.0]], [[0.0, 0.0]]]])
    assert losses.normals_l1(pred, target).item() == pytest.approx(1.0)


def test_depth_l1_over_valid_pixels_only():
    pred = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    target = torch.tensor([[[[2.0, 0.0, 6.0]]]])  # middle pixel invalid
    assert losses.depth_l1(pred, target).item() == pytest.approx((1.0 + 3.0) / 2)


def test_mse_is_l2_and_skips_missing_targets():
    pred = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    target = torch.tensor([[3.0, 2.0], [float("nan"), 5.0]])
    assert losses.mse(pred, target).item() == pytest.approx((4.0 + 0.0 + 1.0) / 3)


def test_binary_bce_hand_value():
    # x = (0, 2), y = (1, 0): (log 2 + softplus(2)) / 2; third sample ignored
    pred = torch.tensor([[0.0], [2.0], [5.0]])
    target = torch.tensor([1.0, 0.0, 255.0])
    expected = (LOG2 + math.log1p(math.exp(2.0))) / 2
    assert losses.binary_bce(pred, target).item() == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["semseg", "sal", "edge", "normals", "depth"])
def test_padding_marked_invalid_does_not_change_the_loss(kind, make_batch):
    """A prediction padded to the input size scores like the original region."""
    task = create_task(kind)
    pred, target = make_batch(task)
    invalid = {"semseg": 255, "sal": 255, "edge": 255, "normals": 0, "depth": 0}[kind]
    big_pred = torch.nn.functional.pad(pred, (0, 3, 0, 2), value=7.0)
    pad_target = target if target.dim() == 4 else target[:, None]
    big_target = torch.nn.functional.pad(pad_target.float(), (0, 3, 0, 2), value=float(invalid))
    if target.dim() == 3:
        big_target = big_target[:, 0].long()
    assert task.loss(big_pred, big_target).item() == pytest.approx(task.loss(pred, target).item())
