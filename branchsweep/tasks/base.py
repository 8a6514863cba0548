"""What a task is: head size, loss, default loss weight, metrics and their directions.

A :class:`Task` is a plain value object; the registry in :mod:`branchsweep.tasks` maps task *kinds*
("semseg", "depth", "regression", "binary", ...) to factories so that a data set can create
``semseg`` with 21 classes (PASCAL-Context) or 40 (NYUD-v2) from the same definition.

Conventions shared by every loss and metric:

* dense predictions are ``[B, C, H, W]`` at the label resolution; vector predictions are ``[B, C]``;
* labels use ``ignore_index`` (255) or 0 depth for "no label here"; a batch in which a task has no
  valid label contributes a zero loss (never NaN) that still carries the graph;
* metrics are accumulators over the whole evaluation set (``update`` per batch, ``compute`` once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from branchsweep.errors import ConfigError

Direction = Literal["max", "min"]


class Metric(Protocol):
    """Accumulates one task's metrics over an evaluation set."""

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None: ...

    def compute(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Task:
    """One prediction task of a multi-task network.

    ``directions`` says for every metric name returned by ``make_metric().compute()`` whether higher
    (``"max"``) or lower (``"min"``) is better; ``primary`` is the metric quoted in Δm tables;
    ``trivial`` names the constant predictor a trained model must beat (:mod:`branchsweep.trivial`).
    """

    name: str
    kind: str
    out_channels: int
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    make_metric: Callable[[], Metric]
    directions: dict[str, Direction]
    primary: str
    weight: float = 1.0
    dense: bool = True
    params: dict = field(default_factory=dict)
    #: How the constant predictor this task is compared against is fitted on the training labels
    #: (a rule of :data:`branchsweep.trivial.TRIVIAL_RULES`: majority, probability, mean, unit_mean).
    trivial: str = "mean"

    def __post_init__(self) -> None:
        if self.primary not in self.directions:
            raise ConfigError(f"task {self.name}: primary metric {self.primary!r} has no direction")
        bad = {m: d for m, d in self.directions.items() if d not in ("max", "min")}
        if bad:
            metric, direction = next(iter(bad.items()))
            raise ConfigError(f"task {self.name}: metric {metric!r} has direction {direction!r}, not max/min")
        if self.out_channels < 1:
            raise ConfigError(f"task {self.name}: a head needs at least 1 output channel, got {self.out_channels}")
        if not self.weight >= 0.0:
            raise ConfigError(f"task {self.name}: the loss weight must be >= 0, got {self.weight}")

    @property
    def primary_direction(self) -> Direction:
        """Whether the primary metric is better high (``"max"``) or low (``"min"``)."""
        return self.directions[self.primary]
