"""Analysis of sweep results: Δm, Pareto fronts over MAdds, hypervolume, reports and plots.

Pandas-first: every function takes and returns DataFrames/Series, so a notebook can pick up anywhere::

    import analysis
    df = analysis.load_results("runs/sweep1/results.parquet")
    primary, directions = analysis.read_metric_spec("runs/sweep1")   # the sweep's metrics.json
    report = analysis.build_report(df, metrics=primary, directions=directions)  # adds delta_m, on_front
    report.front                                     # the non-dominated trials, sorted by MAdds
    summary = analysis.summarize_replicates(long)    # one row per (trial, retrain seed) -> mean, <col>/se
    analysis.write_report(report, "runs/sweep1/report")

It is a leaf package: importing it pulls in pandas, numpy and matplotlib (object-oriented API, Agg
canvas) and nothing of torch, Ray or :mod:`branchsweep`. What it knows about tasks arrives as data:
metric directions and Δm columns from the sweep's ``metrics.json`` (:func:`read_metric_spec`) or as
arguments (``known=`` / ``primaries=``, which ``branchsweep report`` fills from the task registry);
architectures from the ``arch_hash``, ``arch_drawing`` and ``arch_json`` columns (:func:`branch_tree`).
Mistakes in the input raise :class:`AnalysisError` (a ``ValueError``) with a one-line message.
"""

from analysis.delta_m import delta_m, metric_columns, primary_metric_columns, task_of_column
from analysis.directions import resolve_directions, split_header
from analysis.errors import AnalysisError
from analysis.exhaustive import (
    designed_gap,
    exhaustive_front,
    front_value,
    grouping_evidence,
    hypervolume_fraction,
    matched_gaps,
    regret,
    seed_fractions,
    table_reference,
    tree_means,
)
from analysis.pareto import front_steps, hypervolume_2d, pareto_front
from analysis.plots import (
    id_table,
    lambda_plot,
    madds_unit,
    pareto_plot,
    pareto_plot_with_ids,
    place_labels,
    short_ids,
    tree_plot,
    truth_plot,
)
from analysis.replicates import (
    baseline_gaps,
    baselines_table,
    format_mean_se,
    hypervolume_replicates,
    near_ties,
    overall_gap,
    paired_difference,
    pool_trials,
    pooled_baselines,
    seed_paired_gap,
    standard_error,
    summarize_replicates,
    trivial_margins,
    verdict_lines,
)
from analysis.report import Report, build_report, choose_baseline, write_report
from analysis.tables import (
    find_results_file,
    load_paper_table,
    load_results,
    markdown_table,
    parse_madds,
    read_metric_spec,
    read_replicates,
    read_table,
    read_trivial,
)
from analysis.trees import BranchTree, branch_tree

__all__ = [
    "AnalysisError",
    "BranchTree",
    "Report",
    "baseline_gaps",
    "baselines_table",
    "branch_tree",
    "build_report",
    "choose_baseline",
    "delta_m",
    "designed_gap",
    "exhaustive_front",
    "find_results_file",
    "format_mean_se",
    "front_steps",
    "front_value",
    "grouping_evidence",
    "hypervolume_2d",
    "hypervolume_fraction",
    "hypervolume_replicates",
    "id_table",
    "lambda_plot",
    "load_paper_table",
    "load_results",
    "madds_unit",
    "markdown_table",
    "matched_gaps",
    "metric_columns",
    "near_ties",
    "overall_gap",
    "paired_difference",
    "pareto_front",
    "pareto_plot",
    "pareto_plot_with_ids",
    "parse_madds",
    "place_labels",
    "pool_trials",
    "regret",
    "seed_fractions",
    "table_reference",
    "tree_means",
    "pooled_baselines",
    "primary_metric_columns",
    "read_metric_spec",
    "seed_paired_gap",
    "read_replicates",
    "read_table",
    "read_trivial",
    "resolve_directions",
    "short_ids",
    "split_header",
    "standard_error",
    "summarize_replicates",
    "task_of_column",
    "tree_plot",
    "truth_plot",
    "trivial_margins",
    "verdict_lines",
    "write_report",
]
