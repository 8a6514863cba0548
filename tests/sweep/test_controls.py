"""The controls stage: which baseline trees a sweep adds for the front points of its searched methods."""

from __future__ import annotations

import json

import pytest

from branchsweep.arch import BranchConfig
from branchsweep.sweep.controls import control_points, searched_fronts
from branchsweep.sweep.results import replicate_rows, trivial_row

TASKS = ["a", "b", "c", "d"]


def row(trial_id, method, madds, delta_m, tree, **extra):
    return {"trial_id": trial_id, "label": trial_id, "method": method, "status": "ok", "madds": madds,
            "delta_m": delta_m, "arch_hash": tree.arch_hash(), "arch_json": tree.to_json(indent=None), **extra}


def grouped(groups):
    return BranchConfig.from_groups(TASKS, [[TASKS]] + [groups] * 3)


def test_controls_are_built_for_each_front_point_once():
    ab_cd, ac_bd = grouped([["a", "b"], ["c", "d"]]), grouped([["a", "c"], ["b", "d"]])
    shared = BranchConfig.shared(TASKS, 4)
    rows = [
        row("single", "single", 100, 0.0, BranchConfig.single(TASKS, 4), is_baseline=True),
        row("b1", "bmtas", 60, -1.0, ab_cd),
        row("b2", "bmtas", 70, -3.0, ac_bd),        # dominated by b1: no controls
        row("b3", "bmtas", 40, -5.0, shared),       # on the front, but Shared has no distinct permutation
        row("l1", "ltb", 60, -2.0, ab_cd),          # same tree as b1: its controls are not repeated
        row("p1", "permuted", 60, -9.0, ac_bd, baseline_kind="permuted"),  # controls are never fronts
    ]
    fronts = searched_fronts(rows)
    assert {m: [r["trial_id"] for r in f] for m, f in fronts.items()} == {"bmtas": ["b3", "b1"], "ltb": ["l1"]}
    points = control_points(rows, ("permuted", "vanilla", "random"), permutations=5)
    kinds = [(p["control"]["tags"]["baseline_of"], p["method"]) for p in points]
    # b1's tree has exactly two other pairings; b3 (Shared) gets vanilla and random only
    assert sorted(kinds) == sorted([("b1", "permuted"), ("b1", "permuted"), ("b1", "vanilla"), ("b1", "random"),
                                    ("b3", "vanilla"), ("b3", "random")])
    vanilla = next(p for p in points if p["method"] == "vanilla" and p["control"]["tags"]["baseline_of"] == "b1")
    assert vanilla["control"]["search"] == {"target_madds": 60.0}
    perms = [p for p in points if p["method"] == "permuted"]
    assert [p["control"]["search"]["index"] for p in perms] == [0, 1]
    assert BranchConfig.from_json(perms[0]["control"]["search"]["like"]) == ab_cd
    assert control_points(rows, ("vanilla",), permutations=0) == [p for p in points if p["method"] == "vanilla"]


def test_replicate_rows_and_trivial_row():
    reps = [{"retrain_seed": 0, "x/acc": 1.0, "delta_m": 0.5}, {"retrain_seed": 1, "x/acc": 3.0, "delta_m": 1.5}]
    rows = [{"trial_id": "t", "label": "T", "method": "single", "is_baseline": True, "status": "ok", "madds": 5,
             "replicates_json": json.dumps(reps), "trivial_json": json.dumps({"x/acc": 0.5})},
            {"trial_id": "f", "status": "failed"}]
    long = replicate_rows(rows)
    assert [(r["trial_id"], r["retrain_seed"], r["x/acc"]) for r in long] == [("t", 0, 1.0), ("t", 1, 3.0)]
    assert trivial_row(rows) == {"x/acc": 0.5}
    assert trivial_row(rows[1:]) is None


@pytest.mark.parametrize("params", [{"method": "bmtas", "seed": 1}])
def test_a_sweep_point_cannot_sample_a_seed(params):
    from branchsweep.errors import ConfigError
    from branchsweep.sweep.space import SweepBase, to_trial_config

    with pytest.raises(ConfigError, match="seeds are not sampled"):
        to_trial_config(params, SweepBase())
