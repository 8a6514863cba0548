"""Reading results: a sweep's ``results.parquet``/``.csv``, or a table that did not come from a sweep.

Both are normalised to the sweep schema (one row per trial): ``trial_id``, ``label``, ``method``,
``status`` (``"ok"``/``"failed"``), ``is_baseline``, ``madds`` (integer MAdds, not G), ``params``,
metric columns, ``hp/*`` hyperparameters, ``arch_hash``, ``arch_json`` (the branch-config JSON),
``arch_drawing`` (its text drawing; optional, older sweeps lack it), wall times, and optionally a
``delta_m`` column, which is kept as ``delta_m_reported`` so the recomputed value can be compared.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.directions import resolve_directions, split_header
from analysis.errors import AnalysisError

RESULTS_NAMES = ("results.parquet", "results.csv")
#: Written by a sweep beside its results: the Δm metric columns and every metric's direction, so a
#: report of tasks the registry does not know by name (``bent_0``, CelebA attributes) needs no flags.
METRICS_FILE = "metrics.json"
REPLICATES_FILE = "replicates.parquet"
TRIVIAL_FILE = "trivial.json"

_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9, "t": 1e12}
_MADDS_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGbBtT]?)\s*(?:madds|flops|macs)?\s*$", re.I)
_DELTA_RE = re.compile(r"^\s*(Δ|\\Delta|delta)[ _]?m\b", re.I)


def parse_madds(value: object) -> int:
    """MAdds as an integer from ``15.7B``, ``"6.0 G"``, ``"950M"``, ``"12k"`` or a plain number.

    ``B`` and ``G`` both mean 10⁹ (papers write either).

    >>> parse_madds("15.7B"), parse_madds("950M"), parse_madds(1200)
    (15700000000, 950000000, 1200)
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise AnalysisError(f"cannot read MAdds from {value!r}")
        return int(round(value))
    match = _MADDS_RE.match(str(value))
    if match is None:
        raise AnalysisError(f"cannot read MAdds from {value!r}: expected a number with an optional K/M/G/B/T suffix")
    return int(round(float(match.group(1)) * _SUFFIX[match.group(2).lower()]))


def is_delta_m_column(column: str) -> bool:
    """True for a reported-Δm column (``"Δm [%]↑"``, ``"Δ_m"``, ``"delta_m"``)."""
    name, _ = split_header(column)
    return bool(_DELTA_RE.match(name))


def find_results_file(run_dir: Path) -> Path:
    """``RUN_DIR/results.parquet`` or ``RUN_DIR/results.csv``; an AnalysisError when neither exists."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AnalysisError(f"run folder {run_dir} does not exist")
    for name in RESULTS_NAMES:
        if (run_dir / name).is_file():
            return run_dir / name
    raise AnalysisError(f"{run_dir} has no {' or '.join(RESULTS_NAMES)}: is it a sweep folder?")


def read_metric_spec(run_dir: Path) -> tuple[list[str] | None, dict[str, str]]:
    """``(primary metric columns or None, {column: "max"|"min"})`` from ``RUN_DIR/metrics.json``.

    A folder without the file gives ``(None, {})`` (the caller then needs other sources of the
    directions, e.g. the task registry's); a file that is not the expected JSON object is an
    AnalysisError naming it.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None, {}
    import json

    try:
        spec = json.loads(path.read_text())
        primary = spec.get("primary")
        directions = {str(k): str(v) for k, v in dict(spec.get("directions", {})).items()}
    except (ValueError, AttributeError, TypeError) as err:
        raise AnalysisError(f"{path}: not a metrics spec ({err})") from None
    if primary is not None and not (isinstance(primary, list) and all(isinstance(c, str) for c in primary)):
        raise AnalysisError(f"{path}: 'primary' must be a list of metric column names")
    return primary, directions


def read_replicates(run_dir: Path) -> pd.DataFrame | None:
    """A sweep's ``replicates.parquet`` (one row per trial and retrain seed), or None when absent."""
    path = Path(run_dir) / REPLICATES_FILE
    return read_table(path) if path.is_file() else None


def read_trivial(run_dir: Path) -> dict[str, float] | None:
    """A sweep's ``trivial.json`` (the constant predictor's metrics), or None when absent."""
    path = Path(run_dir) / TRIVIAL_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AnalysisError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise AnalysisError(f"{path}: expected an object of metric values")
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, (int, float))}


def read_table(path: Path) -> pd.DataFrame:
    """Read a ``.parquet`` or ``.csv`` file; an AnalysisError for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"{path} not found")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise AnalysisError(f"{path}: cannot read it as a table ({err})") from None


def normalise_results(df: pd.DataFrame, source: str = "results") -> pd.DataFrame:
    """A sweep's table with defaults filled in, checked for the columns a report needs."""
    df = df.copy()
    for required in ("label", "madds"):
        if required not in df.columns:
            raise AnalysisError(f"{source}: column {required!r} is missing")
    if "trial_id" not in df.columns:
        df.insert(0, "trial_id", [str(i) for i in range(len(df))])
    defaults = {"method": "", "status": "ok", "is_baseline": False}
    for column, value in defaults.items():
        if column not in df.columns:
            df[column] = value
    df["status"] = df["status"].fillna("failed").astype(str)
    df["is_baseline"] = df["is_baseline"].fillna(False).astype(bool)
    ok = df["status"] == "ok"
    madds = pd.to_numeric(df["madds"], errors="coerce")
    bad = df.index[ok & madds.isna()]
    if len(bad):
        raise AnalysisError(f"{source}: trial {df.loc[bad[0], 'label']!r} is ok but its MAdds {df.loc[bad[0], 'madds']!r} is not a number")
    df["madds"] = madds
    if "delta_m" in df.columns:
        df = df.rename(columns={"delta_m": "delta_m_reported"})
    return df


def load_results(path: Path) -> pd.DataFrame:
    """Read and normalise a sweep's results file (see the module docstring for the schema)."""
    return normalise_results(read_table(path), str(path))


def load_paper_table(
    path: Path,
    baseline: str,
    madds_column: str,
    *,
    label_column: str | None = None,
    metrics: Sequence[str] | None = None,
    directions: Mapping[str, str] | None = None,
    known: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """A table that did not come from a sweep (e.g. a paper's), in the sweep schema.

    The label column defaults to the first column; ``madds_column`` is parsed with :func:`parse_madds`;
    the metrics default to every other column except a reported Δm (kept as ``delta_m_reported``).
    Metric directions come from ``directions``, header arrows or ``known`` (in that order, see
    :func:`~analysis.directions.resolve_directions`). Headers lose their arrows in the returned frame
    (``"Norm↓"`` -> ``"Norm"``). The row labelled ``baseline`` becomes ``is_baseline``. Returns the
    frame and ``{metric: direction}``.
    """
    raw = read_table(path)
    names = {c: split_header(str(c))[0] for c in raw.columns}
    by_name = {n: c for c, n in names.items()}

    def column(requested: str, flag: str) -> str:
        if requested in raw.columns:
            return requested
        if split_header(requested)[0] in by_name:
            return by_name[split_header(requested)[0]]
        raise AnalysisError(f"{path}: no column {requested!r} ({flag}); columns: {', '.join(map(str, raw.columns))}")

    label_col = column(label_column, "--label-column") if label_column else str(raw.columns[0])
    madds_col = column(madds_column, "--madds-column")
    reported = [c for c in raw.columns if is_delta_m_column(str(c))]
    if metrics:
        metric_cols = [column(m, "--metrics") for m in metrics]
    else:
        metric_cols = [c for c in raw.columns if c not in (label_col, madds_col) and c not in reported]
    if not metric_cols:
        raise AnalysisError(f"{path}: no metric columns besides {label_col!r} and {madds_col!r}")
    dirs = resolve_directions(metric_cols, directions, known=known)
    for c in metric_cols:
        values = pd.to_numeric(raw[c], errors="coerce")
        if values.isna().any():
            row = raw.loc[values.isna().idxmax(), label_col]
            raise AnalysisError(f"{path}: metric {c!r} of row {row!r} is not a number ({raw.loc[values.isna().idxmax(), c]!r})")
    labels = raw[label_col].astype(str)
    if baseline not in set(labels):
        raise AnalysisError(f"{path}: baseline row {baseline!r} not found in column {label_col!r}; rows: {', '.join(labels)}")
    madds = []
    for label, value in zip(labels, raw[madds_col]):
        try:
            madds.append(parse_madds(value))
        except AnalysisError as err:
            raise AnalysisError(f"{path}: row {label!r}, column {madds_col!r}: {err}") from None
    out = pd.DataFrame({
        "trial_id": [str(i) for i in range(len(raw))],
        "label": labels,
        "method": "",
        "status": "ok",
        "is_baseline": labels == baseline,
        "madds": madds,
    })
    for c in metric_cols:
        out[names[c]] = pd.to_numeric(raw[c]).astype(float)
    if reported:
        out["delta_m_reported"] = pd.to_numeric(raw[reported[0]], errors="coerce")
    return out, {names[c]: d for c, d in dirs.items()}


def markdown_table(df: pd.DataFrame, floatfmt: str = "{:.6g}") -> str:
    """A GitHub-flavoured markdown table (no extra dependency); NaN prints as an empty cell."""

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, (float, np.floating)):
            return floatfmt.format(value)
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
