"""Analysis of sweep results: Δm, Pareto fronts over MAdds, hypervolume, reports and plots.

Pandas-first: every function takes and returns DataFrames/Series, so a notebook can pick up anywhere::

    import analysis
    df = analysis.load_results("runs/sweep1/results.parquet")
    report = analysis.build_report(df)                  # adds delta_m and on_front
    report.front                                        # the non-dominated trials, sorted by MAdds
    analysis.write_report(report, "runs/sweep1/report")

The package needs pandas, numpy and matplotlib (object-oriented API, Agg canvas); torch is imported
only when metric directions or primary metrics are looked up in the task registry.
"""

from analysis.delta_m import delta_m, metric_columns, primary_metric_columns, task_of_column
from analysis.directions import resolve_directions, split_header
from analysis.pareto import front_steps, hypervolume_2d, pareto_front
from analysis.plots import lambda_plot, madds_unit, pareto_plot, tree_plot
from analysis.report import Report, build_report, choose_baseline, write_report
from analysis.tables import (
    find_results_file,
    load_paper_table,
    load_results,
    markdown_table,
    parse_madds,
    read_metric_spec,
    read_table,
)

__all__ = [
    "Report",
    "build_report",
    "choose_baseline",
    "delta_m",
    "find_results_file",
    "front_steps",
    "hypervolume_2d",
    "lambda_plot",
    "load_paper_table",
    "load_results",
    "madds_unit",
    "markdown_table",
    "metric_columns",
    "pareto_front",
    "pareto_plot",
    "parse_madds",
    "primary_metric_columns",
    "read_metric_spec",
    "read_table",
    "resolve_directions",
    "split_header",
    "task_of_column",
    "tree_plot",
    "write_report",
]
