"""Temperature schedules by name, shared by both searches (and explored by the sweeps).

A schedule maps a step ``t`` in ``[0, total]`` to a temperature ``τ(t) > 0``:

* ``linear``: ``τ0 + (τ1 - τ0) · t / total`` (BMTAS: 5.0 → 0.1);
* ``exponential``: ``τ0 · (τ1 / τ0) ** (t / total)``;
* ``cosine``: ``τ1 + (τ0 - τ1) · (1 + cos(π t / total)) / 2``;
* ``constant``: ``τ0``;
* ``inverse_sqrt``: ``τ0 / sqrt(1 + t)`` (Learning to Branch, synthetic data: 50 decayed by √iteration);
* ``inverse``: ``τ0 / (1 + t)`` (Learning to Branch, CelebA: 10 decayed by the epoch number, ``t`` in epochs).

>>> make_schedule("linear", tau0=5.0, tau1=0.1)(50, 100)
2.55
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from branchsweep.errors import ConfigError
from branchsweep.registry import Registry


@dataclass(frozen=True)
class Schedule:
    """A named temperature schedule; call it as ``schedule(step, total)``."""

    name: str
    tau0: float
    tau1: float
    fn: Callable[[float, float, float, float], float]

    def __call__(self, step: float, total: float) -> float:
        frac_total = max(float(total), 1.0)
        step = min(max(float(step), 0.0), frac_total)
        return float(self.fn(step, frac_total, self.tau0, self.tau1))


SCHEDULES: Registry[Callable[[float, float, float, float], float]] = Registry("temperature schedule")
SCHEDULES.register("linear", lambda t, n, a, b: a + (b - a) * t / n, help="τ0 → τ1 linearly")
SCHEDULES.register("exponential", lambda t, n, a, b: a * (b / a) ** (t / n), help="τ0 → τ1 geometrically")
SCHEDULES.register(
    "cosine", lambda t, n, a, b: b + (a - b) * (1 + math.cos(math.pi * t / n)) / 2, help="τ0 → τ1 on a half cosine"
)
SCHEDULES.register("constant", lambda t, n, a, b: a, help="τ0 throughout")
SCHEDULES.register("inverse_sqrt", lambda t, n, a, b: a / math.sqrt(1 + t), help="τ0 / √(1+t)")
SCHEDULES.register("inverse", lambda t, n, a, b: a / (1 + t), help="τ0 / (1+t)")


def make_schedule(name: str, tau0: float, tau1: float | None = None) -> Schedule:
    """Build schedule ``name`` from ``tau0`` (start) and ``tau1`` (end, where the schedule has one)."""
    fn = SCHEDULES.get(name)
    tau1 = tau0 if tau1 is None else tau1
    if tau0 <= 0 or tau1 <= 0:
        raise ConfigError(f"temperatures must be > 0 (got tau0={tau0}, tau1={tau1})")
    return Schedule(name, float(tau0), float(tau1), fn)
