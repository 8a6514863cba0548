"""Random batches in each task kind's label convention (see ``branchsweep/data/base.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from branchsweep.tasks import Task

B, H, W = 2, 4, 5
Batch = tuple[torch.Tensor, torch.Tensor]


def _classes(task: Task, g: torch.Generator, labelled: bool) -> Batch:
    c = task.out_channels
    target = torch.randint(0, c, (B, H, W), generator=g)
    return torch.randn(B, c, H, W, generator=g), target if labelled else torch.full_like(target, 255)


def _binary_map(task: Task, g: torch.Generator, labelled: bool) -> Batch:
    target = torch.randint(0, 2, (B, 1, H, W), generator=g).float()
    return torch.randn(B, 1, H, W, generator=g), target if labelled else torch.full_like(target, 255.0)


def _normals(task: Task, g: torch.Generator, labelled: bool) -> Batch:
    target = F.normalize(torch.randn(B, 3, H, W, generator=g), dim=1)
    return torch.randn(B, 3, H, W, generator=g), target if labelled else torch.zeros_like(target)


def _depth(task: Task, g: torch.Generator, labelled: bool) -> Batch:
    target = torch.rand(B, 1, H, W, generator=g) * 5 + 0.5
    return torch.randn(B, 1, H, W, generator=g), target if labelled else torch.zeros_like(target)


def _continuous(task: Task, g: torch.Generator, labelled: bool) -> Batch:
    target = torch.rand(B, 1, H, W, generator=g) * 2 - 1
    return torch.randn(B, 1, H, W, generator=g), target if labelled else torch.full_like(target, torch.nan)


def _vector(task: Task, g: torch.Generator, labelled: bool) -> Batch:
    target = torch.randn(B, task.out_channels, generator=g)
    return torch.randn(B, task.out_channels, generator=g), target if labelled else torch.full_like(target, torch.nan)


def _attribute(task: Task, g: torch.Generator, labelled: bool) -> Batch:
    target = torch.randint(0, 2, (B,), generator=g).float()
    return torch.randn(B, 1, generator=g), target if labelled else torch.full_like(target, 255.0)


#: How to draw a batch for each task kind; a new kind needs an entry here (the tests fail without one).
SAMPLERS: dict[str, Callable[[Task, torch.Generator, bool], Batch]] = {
    "semseg": _classes, "human_parts": _classes, "parts": _classes, "sal": _binary_map, "edge": _binary_map,
    "normals": _normals, "depth": _depth, "regression": _vector, "binary": _attribute,
    "segment_semantic": _classes, "normal": _normals, "depth_zbuffer": _depth, "keypoints2d": _continuous,
    "edge_texture": _continuous,
}


@pytest.fixture
def make_batch() -> Callable[..., Batch]:
    """``make_batch(task, seed=0, labelled=True) -> (pred, target)``; unlabelled = every label invalid."""

    def make(task: Task, seed: int = 0, labelled: bool = True) -> Batch:
        g = torch.Generator().manual_seed(seed)
        return SAMPLERS[task.kind](task, g, labelled)

    return make
