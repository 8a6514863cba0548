"""Every registered temperature schedule: its endpoints, its direction and its formula at one midpoint.

README: the tests are parametrised over every registration. A new schedule needs an entry in
``EXPECTED`` (the test below fails without one).
"""

from __future__ import annotations

import math

import pytest

from branchsweep.errors import ConfigError
from branchsweep.search.schedules import SCHEDULES, make_schedule

TOTAL = 100
#: name -> (τ(t) written out independently, whether the schedule ends at τ1 (else it ignores τ1)).
EXPECTED = {
    "linear": (lambda t, a, b: a + (b - a) * t / TOTAL, True),
    "exponential": (lambda t, a, b: a * (b / a) ** (t / TOTAL), True),
    "cosine": (lambda t, a, b: b + (a - b) * (1 + math.cos(math.pi * t / TOTAL)) / 2, True),
    "constant": (lambda t, a, b: a, False),
    "inverse_sqrt": (lambda t, a, b: a / math.sqrt(1 + t), False),
    "inverse": (lambda t, a, b: a / (1 + t), False),
}


def test_every_registered_schedule_has_an_expectation():
    assert sorted(EXPECTED) == SCHEDULES.names()


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_endpoints_monotonicity_and_formula(name):
    formula, has_end = EXPECTED[name]
    decay = make_schedule(name, tau0=5.0, tau1=0.1)
    steps = range(TOTAL + 1)
    values = [decay(t, TOTAL) for t in steps]
    assert values[0] == pytest.approx(5.0, rel=1e-12)
    assert values[-1] == pytest.approx(0.1 if has_end else formula(TOTAL, 5.0, 0.1), rel=1e-12)
    assert all(v > 0 for v in values)
    assert all(b <= a for a, b in zip(values, values[1:]))  # τ1 < τ0: never rises
    if name != "constant":
        assert values[-1] < values[0]
    for t in (0, 1, 37, 50, TOTAL):
        assert decay(t, TOTAL) == pytest.approx(formula(t, 5.0, 0.1), rel=1e-12), t
    # Steps outside [0, total] are clamped to the endpoints.
    assert decay(-3, TOTAL) == values[0] and decay(TOTAL + 7, TOTAL) == values[-1]
    if has_end:  # τ1 > τ0: the schedule rises instead, ending at τ1
        rise = [make_schedule(name, tau0=0.5, tau1=2.0)(t, TOTAL) for t in steps]
        assert rise[0] == pytest.approx(0.5) and rise[-1] == pytest.approx(2.0)
        assert all(b >= a for a, b in zip(rise, rise[1:]))


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_non_positive_temperatures_are_rejected(name):
    with pytest.raises(ConfigError, match="temperatures must be > 0"):
        make_schedule(name, tau0=0.0)
    with pytest.raises(ConfigError, match="temperatures must be > 0"):
        make_schedule(name, tau0=1.0, tau1=-1.0)
