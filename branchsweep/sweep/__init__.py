"""Ray Tune + Optuna Pareto sweeps over search methods and their hyperparameters.

``space`` maps Optuna's samples onto trial configs, ``trainable`` runs one trial (directly or in a Ray
Train ``TorchTrainer``), ``runner`` drives baselines, the Optuna search, resume, results and report.
"""

from branchsweep.sweep.runner import SweepConfig, SweepOutcome, connect_ray, run_sweep
from branchsweep.sweep.space import SearchSpace, SweepBase, to_trial_config
from branchsweep.sweep.trainable import TrialSettings, sweep_trial

__all__ = [
    "SearchSpace", "SweepBase", "SweepConfig", "SweepOutcome", "TrialSettings", "connect_ray", "run_sweep",
    "sweep_trial", "to_trial_config",
]
