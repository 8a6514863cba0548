"""Pareto fronts (paper tables, ties, one row, three objectives, NaN) and the 2-D hypervolume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import FRONTS

from analysis import AnalysisError, build_report, front_steps, hypervolume_2d, load_paper_table, pareto_front

MIN_MAX = {"madds": "min", "dm": "max"}


def test_front_of_the_paper_tables(paper_table):
    name, path = paper_table
    results, directions = load_paper_table(path, "Single", "MAdds")
    report = build_report(results, baseline="Single", metrics=list(directions), directions=directions)
    assert set(report.front["label"]) == FRONTS[name]
    assert not report.results.set_index("label").loc["Single", "on_front"]


def test_identical_points_are_all_on_the_front_and_equal_dominated_ones_all_off():
    df = pd.DataFrame({"madds": [1, 1, 2, 2, 3], "dm": [0.0, 0.0, 1.0, 1.0, 0.5]})
    assert pareto_front(df, MIN_MAX).tolist() == [True, True, True, True, False]


def test_a_tie_in_one_objective_is_broken_by_the_other():
    df = pd.DataFrame({"madds": [5, 5, 5], "dm": [1.0, 2.0, 2.0]})
    assert pareto_front(df, MIN_MAX).tolist() == [False, True, True]


def test_single_row_is_the_front():
    df = pd.DataFrame({"madds": [7], "dm": [-3.0]}, index=["only"])
    front = pareto_front(df, MIN_MAX)
    assert front.to_dict() == {"only": True}
    assert front.name == "on_front"


def test_all_dominated_but_one():
    df = pd.DataFrame({"madds": [1, 2, 3, 4], "dm": [9.0, 8.0, 1.0, 9.0]})
    assert pareto_front(df, MIN_MAX).tolist() == [True, False, False, False]


def test_three_objectives():
    df = pd.DataFrame({
        "madds": [1, 2, 2, 3, 1],
        "dm": [0.0, 1.0, 0.5, 1.0, 0.0],
        "params": [5, 5, 6, 1, 6],
    })
    # row 2 is worse than row 1 everywhere; row 4 ties row 0 on two and is worse on params.
    front = pareto_front(df, {"madds": "min", "dm": "max", "params": "min"})
    assert front.tolist() == [True, True, False, True, False]


def test_nan_rows_are_off_the_front_and_dominate_nothing():
    df = pd.DataFrame({"madds": [1.0, np.nan, 3.0], "dm": [0.0, 100.0, 1.0]})
    assert pareto_front(df, MIN_MAX).tolist() == [True, False, True]


def test_matches_a_brute_force_check_on_random_points():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.integers(0, 6, size=(60, 3)), columns=["a", "b", "c"]).astype(float)
    objectives = {"a": "min", "b": "max", "c": "min"}
    x = df.to_numpy() * np.array([1, -1, 1])
    expected = [not any((x[j] <= x[i]).all() and (x[j] < x[i]).any() for j in range(len(x))) for i in range(len(x))]
    assert pareto_front(df, objectives).tolist() == expected


def test_front_steps_are_sorted_by_cost():
    df = pd.DataFrame({"madds": [3, 1, 2, 4], "dm": [2.0, 0.0, 1.0, 1.5]})
    assert front_steps(df, "madds", "dm")["madds"].tolist() == [1, 2, 3]


def test_hypervolume_against_hand_computed_areas():
    df = pd.DataFrame({"madds": [1.0, 2.0, 3.0], "dm": [-3.0, -2.0, -1.0]})
    # minimise (madds, -dm) = (1, 3), (2, 2), (3, 1), reference (4, 4): 1·1 + 1·2 + 1·3.
    assert hypervolume_2d(df, MIN_MAX, {"madds": 4.0, "dm": -4.0}) == pytest.approx(6.0)
    extra = pd.concat([df, pd.DataFrame({"madds": [2.5, 2.0, 5.0, 0.5], "dm": [-2.5, -2.0, 0.0, -4.5]})])
    # a dominated point, a duplicate, one beyond the reference cost and one below the reference Δm add nothing.
    assert hypervolume_2d(extra, MIN_MAX, [4.0, -4.0]) == pytest.approx(6.0)
    two_min = pd.DataFrame({"x": [1.0, 2.0], "y": [2.0, 1.0]})
    assert hypervolume_2d(two_min, {"x": "min", "y": "min"}, [3.0, 3.0]) == pytest.approx(3.0)
    assert hypervolume_2d(two_min, {"x": "min", "y": "min"}, [0.5, 0.5]) == 0.0


def test_objective_mistakes_are_config_errors():
    df = pd.DataFrame({"madds": [1.0], "dm": [0.0]})
    with pytest.raises(AnalysisError, match="'speed'"):
        pareto_front(df, {"speed": "max"})
    with pytest.raises(AnalysisError, match="direction"):
        pareto_front(df, {"madds": "lowest"})
    with pytest.raises(AnalysisError, match="exactly two"):
        hypervolume_2d(df, {"madds": "min"}, [1.0])
    with pytest.raises(AnalysisError, match="'dm'"):
        hypervolume_2d(df, MIN_MAX, {"madds": 1.0})
