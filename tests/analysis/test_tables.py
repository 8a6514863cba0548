"""Reading tables: MAdds strings, header arrows, paper tables and their mistakes."""

from __future__ import annotations

import pandas as pd
import pytest
from analysis_fixtures import TABLES

from analysis import (
    AnalysisError,
    load_paper_table,
    load_results,
    markdown_table,
    parse_madds,
    resolve_directions,
    split_header,
)
from analysis.tables import is_delta_m_column


@pytest.mark.parametrize(
    ("text", "value"),
    [("15.7B", 15_700_000_000), ("6.0 G", 6_000_000_000), ("950M", 950_000_000), ("12k", 12_000),
     ("1.5T", 1_500_000_000_000), ("3e9", 3_000_000_000), (1200, 1200), (2.6e9, 2_600_000_000)],
)
def test_parse_madds(text, value):
    assert parse_madds(text) == value


@pytest.mark.parametrize("text", ["fast", "15.7X", "", float("nan"), "1.2.3B"])
def test_parse_madds_rejects_garbage(text):
    with pytest.raises(AnalysisError, match="MAdds"):
        parse_madds(text)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("Norm↓", ("Norm", "min")), ("SemSeg ↑", ("SemSeg", "max")), ("Depth (↓)", ("Depth", "min")),
     (r"Δ_m [%] \uparrow", ("Δ_m [%]", "max")), ("semseg/mIoU", ("semseg/mIoU", None))],
)
def test_split_header(header, expected):
    assert split_header(header) == expected


def test_delta_m_columns_are_recognised():
    assert all(map(is_delta_m_column, ["Δm [%]↑", "Δ_m", "delta_m", "Delta m"]))
    assert not any(map(is_delta_m_column, ["Depth↓", "madds", "dmodel"]))


def test_directions_prefer_explicit_then_arrow_then_known():
    known = {"depth/rmse": "min", "Norm↓": "max", "Edge": "min", "Sal↑": "min"}
    dirs = resolve_directions(["Norm↓", "Edge", "depth/rmse", "Sal↑"], {"Norm": "max", "Edge": "higher"}, known=known)
    assert dirs == {"Norm↓": "max", "Edge": "max", "depth/rmse": "min", "Sal↑": "max"}
    with pytest.raises(AnalysisError, match="'mystery/score'"):
        resolve_directions(["mystery/score"], known=known)
    with pytest.raises(AnalysisError, match="'depth/rmse' has no direction"):
        resolve_directions(["depth/rmse"])  # nothing is looked up that was not passed in
    with pytest.raises(AnalysisError, match="direction must be"):
        resolve_directions(["depth/rmse"], known={"depth/rmse": "down"})
    wildcard = resolve_directions(["bent_0/mse", "sinc_1/mse", "x/acc"], {"*/mse": "min", "x/acc": "max"})
    assert wildcard == {"bent_0/mse": "min", "sinc_1/mse": "min", "x/acc": "max"}


def test_paper_table_in_the_sweep_schema():
    df, directions = load_paper_table(TABLES["table1"], "Single", "MAdds")
    assert list(directions) == ["SemSeg", "PartSeg", "Sal", "Norm", "Edge"]
    assert df.set_index("label").loc["Shared", "madds"] == 6_000_000_000
    assert df["is_baseline"].sum() == 1 and (df["status"] == "ok").all()
    assert "delta_m_reported" in df.columns and "Δm [%]" not in df.columns


def _write(tmp_path, text: str):
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


def test_paper_table_mistakes_name_the_problem(tmp_path):
    with pytest.raises(AnalysisError, match="not found"):
        load_paper_table(tmp_path / "missing.csv", "Single", "MAdds")
    with pytest.raises(AnalysisError, match="baseline row 'Solo'"):
        load_paper_table(TABLES["table1"], "Solo", "MAdds")
    with pytest.raises(AnalysisError, match="--madds-column"):
        load_paper_table(TABLES["table1"], "Single", "GFLOPs")
    bad_madds = _write(tmp_path, "Model,MAdds,Acc↑\nSingle,lots,1\nB,2G,2\n")
    with pytest.raises(AnalysisError, match="row 'Single'.*lots"):
        load_paper_table(bad_madds, "Single", "MAdds")
    no_arrow = _write(tmp_path, "Model,MAdds,Acc↑,Score\nSingle,1G,1,2\nB,2G,2,3\n")
    with pytest.raises(AnalysisError, match="'Score' has no direction"):
        load_paper_table(no_arrow, "Single", "MAdds")
    df, dirs = load_paper_table(no_arrow, "Single", "MAdds", directions={"Score": "min"})
    assert dirs == {"Acc": "max", "Score": "min"}


def test_results_file_checks(tmp_path):
    path = tmp_path / "results.csv"
    pd.DataFrame({"label": ["a"], "madds": ["many"], "status": ["ok"]}).to_csv(path, index=False)
    with pytest.raises(AnalysisError, match="MAdds 'many'"):
        load_results(path)
    pd.DataFrame({"trial": [1]}).to_csv(path, index=False)
    with pytest.raises(AnalysisError, match="'label' is missing"):
        load_results(path)


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": ["x|y", "z"], "b": [1.5, float("nan")]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1.5 |", "| z |  |"]
