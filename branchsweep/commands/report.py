"""``branchsweep report``: Δm, Pareto front, tables and figures for a sweep folder or any results table.

Two inputs:

* ``branchsweep report RUN_DIR`` reads ``RUN_DIR/results.parquet`` (or ``results.csv``) written by a
  sweep and writes ``RUN_DIR/report/``; the sweep's ``metrics.json`` (Δm columns and metric
  directions) is used when present, flags override it;
* ``branchsweep report --table FILE.csv --baseline Single --madds-column MAdds`` reads a table that did
  not come from a sweep (e.g. a paper's, MAdds like ``15.7B``, directions as ``↑``/``↓`` in the
  headers) and writes ``FILE's folder/report/``.

The :mod:`analysis` package knows no tasks: this command hands it the task registry's metric
directions and primary metrics as data (the last source of both), and turns its
:class:`~analysis.AnalysisError` into a one-line :class:`ConfigError`.

For a sweep folder it also looks for the committed exhaustive table of the sweep's recipe
(:func:`branchsweep.truth.find_table` on the data, backbone and retraining of the sweep's Single trial,
read from ``RUN_DIR/sweep.json``); when one matches, the report scores each searched method's trees
against every tree of the space and prints those lines too. Without a match nothing changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from branchsweep.commands._common import csv_list
from branchsweep.errors import ConfigError
from branchsweep.tasks import metric_directions, primary_metrics

NAME = "report"
HELP = "Δm, Pareto front over MAdds, tables and plots for a sweep folder (or --table FILE.csv)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", type=Path, help="sweep folder holding results.parquet or results.csv")
    p.add_argument("--table", type=Path, default=None, help="a results table not from a sweep (CSV or parquet)")
    p.add_argument("--baseline", default=None,
                   help="label of the Δm reference row (default for sweeps: the single-task baseline)")
    p.add_argument("--madds-column", default="MAdds", help="--table: column with MAdds, e.g. 15.7B (default MAdds)")
    p.add_argument("--label-column", default=None, help="--table: column with row labels (default: the first)")
    p.add_argument("--metrics", type=csv_list, default=None,
                   help="comma-separated metric columns for Δm (default: each task's primary metric; "
                        "--table: every other column)")
    p.add_argument("--direction", action="append", default=[], metavar="COLUMN=max|min",
                   help="direction of a metric without a registered one or a ↑/↓ header (repeatable); "
                        "'*/mse=min' sets it for that metric of every task")
    p.add_argument("--level", choices=["metric", "task"], default="metric",
                   help="Δm terms: one per metric (BMTAS tables) or averaged within each task first")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: RUN_DIR/report or FILE's folder/report)")
    p.add_argument("--cost", choices=["madds", "latency", "both"], default=None,
                   help="the front's cost axis: MAdds, the measured latency (a sweep run with --cost latency|both) "
                        "or both (default: the sweep's --cost, else madds)")
    p.add_argument("--sweep-config", default=None, metavar="PATH|URI",
                   help="the sweep's sweep.json, whose recipe finds the committed exhaustive table the report scores "
                        "the searched trees against (default: RUN_DIR/sweep.json; a sweep in cloud storage: its URI)")


def _directions(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        column, sep, direction = item.rpartition("=")
        if not sep or not column or direction.strip().lower() not in ("max", "min"):
            raise ConfigError(f"--direction expects COLUMN=max or COLUMN=min, got {item!r}")
        out[column] = direction.strip().lower()
    return out


SWEEP_FILE = "sweep.json"


def _read_sweep_file(where: str | Path) -> bytes | None:
    from branchsweep.sweep import storage

    if storage.is_uri(where):
        return storage.read_bytes(str(where)) if storage.exists(str(where)) else None
    path = Path(str(where).removeprefix("file://"))
    return path.read_bytes() if path.is_file() else None


def sweep_recipe(run_dir: Path, sweep_file: str | Path | None = None) -> tuple[Any, Any, Any] | None:
    """``(data, model, train)`` of the Single trial of the sweep in ``run_dir``, as its ``sweep.json``
    (``sweep_file``, a path or storage URI; default ``run_dir/sweep.json``) records the sweep's shared
    configs, with the Single trial's conventions applied as the trial does; None when there is no
    readable ``sweep.json`` (not a sweep, or one from another version)."""
    from branchsweep.config import DataConfig, ModelConfig, TrainConfig, from_mapping
    from branchsweep.pipeline.config import TrialConfig, with_method_conventions

    try:
        raw = _read_sweep_file(sweep_file or Path(run_dir) / SWEEP_FILE)
        if raw is None:
            return None
        base = json.loads(raw)["base"]
        parts = {name: from_mapping(typ, dict(base[name]), what=f"{SWEEP_FILE} {name}")
                 for name, typ in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))}
    except (OSError, ValueError, KeyError, TypeError):  # ConfigError is a ValueError
        return None
    single = with_method_conventions(TrialConfig(method="single", is_baseline=True, **parts))
    return single.data, single.model, single.train


def sweep_cost(run_dir: Path, sweep_file: str | Path | None = None) -> str:
    """The sweep's ``--cost`` as its ``sweep.json`` records it (``madds`` when none is recorded)."""
    try:
        raw = _read_sweep_file(sweep_file or Path(run_dir) / SWEEP_FILE)
        cost = json.loads(raw)["base"].get("cost", "madds") if raw is not None else "madds"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "madds"
    return cost if cost in ("madds", "latency", "both") else "madds"


def truth_table(run_dir: Path, sweep_file: str | Path | None = None) -> tuple[Any, dict[str, Any]] | None:
    """``(rows, manifest)`` of the committed exhaustive table whose recipe is the sweep's (None: none)."""
    from branchsweep.truth import find_table, load_table

    recipe = sweep_recipe(run_dir, sweep_file)
    name = find_table(*recipe) if recipe is not None else None
    if name is None:
        return None
    try:
        rows, manifest = load_table(name)
    except (ConfigError, OSError, ValueError) as err:
        print(f"warning: exhaustive table {name} matches the sweep's recipe but cannot be read ({err}); "
              "the report leaves it out", file=sys.stderr)
        return None
    return rows, {**manifest, "table": manifest.get("table") or name}


def run(args: argparse.Namespace) -> int:
    import analysis

    try:
        return _report(args)
    except analysis.AnalysisError as err:
        raise ConfigError(str(err)) from None


def _report(args: argparse.Namespace) -> int:
    import pandas as pd

    import analysis

    if (args.run_dir is None) == (args.table is None):
        raise ConfigError("give either a sweep folder (branchsweep report RUN_DIR) or --table FILE, not both or neither")
    directions = _directions(args.direction)
    if args.table is not None:
        if args.baseline is None:
            raise ConfigError("--table needs --baseline LABEL (the row Δm is measured against)")
        results, table_dirs = analysis.load_paper_table(
            args.table, args.baseline, args.madds_column, label_column=args.label_column,
            metrics=args.metrics, directions=directions, known=metric_directions(),
        )
        report = analysis.build_report(results, baseline=args.baseline, metrics=list(table_dirs),
                                       directions=table_dirs, level=args.level, source=str(args.table),
                                       cost=args.cost or "madds")
        out = args.out or args.table.parent / "report"
    else:
        path = analysis.find_results_file(args.run_dir)
        primary, recorded = analysis.read_metric_spec(args.run_dir)
        report = analysis.build_report(analysis.load_results(path), baseline=args.baseline,
                                       metrics=args.metrics or primary, directions={**recorded, **directions},
                                       level=args.level, source=str(path), known=metric_directions(),
                                       primaries=primary_metrics(), replicates=analysis.read_replicates(args.run_dir),
                                       trivial=analysis.read_trivial(args.run_dir),
                                       truth=truth_table(args.run_dir, args.sweep_config),
                                       cost=args.cost or sweep_cost(args.run_dir, args.sweep_config))
        out = args.out or args.run_dir / "report"
    files = analysis.write_report(report, out)
    front = report.front
    scale, unit = analysis.madds_unit(report.results["madds"])
    print(f"{len(report.results)} trials, {len(front)} on the front, Δm against {report.baseline!r}")
    width = max([24, *(len(str(label)) for label in front["label"])])
    for _, row in front.iterrows():
        latency = row.get("latency_ms")
        timed = f"  {float(latency):8.3f} ms" if latency is not None and pd.notna(latency) else ""
        print(f"  {str(row['label']):<{width}} {row['madds'] / scale:9.3f} {unit}{timed}  Δm {row['delta_m']:+7.2f} %")
    from analysis.report import truth_header, truth_verdict

    for line in truth_header(report) + truth_verdict(report):
        print(line)
    print(f"report written to {out}/ ({', '.join(p.name for p in files.values())})")
    return 0
