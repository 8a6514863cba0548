"""Ray Tune + Optuna Pareto sweeps over search methods and their hyperparameters.

``runner`` runs a sweep as a sequence of stages (:func:`run_sweep`); each job has its module: ``settings``
(:class:`SweepConfig`), ``record`` (``sweep.json``, the resume check), ``study`` and ``searcher`` (the
Optuna study and Tune searcher), ``cluster`` (Ray), ``tuner`` (one Tuner per stage), ``space`` (Optuna's
samples to trial configs), ``trainable`` (one trial, directly or in a Ray Train ``TorchTrainer``),
``controls`` (the control trees of front points), ``results`` (rows, Δm, the result files), ``storage``,
``progress`` and ``redact``.
"""

from branchsweep.sweep.cluster import connect_ray
from branchsweep.sweep.runner import SweepOutcome, run_sweep
from branchsweep.sweep.settings import SweepConfig
from branchsweep.sweep.space import SearchSpace, SweepBase, to_trial_config
from branchsweep.sweep.trainable import TrialSettings, sweep_trial

__all__ = [
    "SearchSpace", "SweepBase", "SweepConfig", "SweepOutcome", "TrialSettings", "connect_ray", "run_sweep",
    "sweep_trial", "to_trial_config",
]
