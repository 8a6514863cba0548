"""The sweep's search space and its mapping onto :class:`~branchsweep.pipeline.TrialConfig`.

Optuna samples a *conditional* space (define-by-run): first the method, then only that method's
hyperparameters. Parameter names are ``"<method>.<field>"`` so the mapping onto the method's config
dataclass is mechanical (``"bmtas.lam"`` → ``BMTASConfig.lam``); the one derived parameter is
``"ltb.child_nodes"``, a per-layer node count ``k`` expanded to ``[k, …, k, "T"]`` (the paper's shape:
``k`` nodes per layer, one leaf per task).

>>> space = SearchSpace(methods=("bmtas",))
>>> params = {"method": "bmtas", "seed": 0, "bmtas.lam": 0.1, "bmtas.schedule": "linear", "bmtas.tau0": 5.0}
>>> method_settings(params, num_layers=3)
{'lam': 0.1, 'schedule': 'linear', 'tau0': 5.0}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.errors import ConfigError
from branchsweep.pipeline import TrialConfig

SEP = "."


@dataclass
class SearchSpace:
    """Ranges Optuna explores. λ and τ0 are sampled log-uniformly (they act multiplicatively)."""

    methods: tuple[str, ...] = ("bmtas", "ltb")
    lam: tuple[float, float] = (0.01, 2.0)
    bmtas_schedules: tuple[str, ...] = ("linear", "exponential", "constant")
    bmtas_tau0: tuple[float, float] = (1.0, 10.0)
    ltb_schedules: tuple[str, ...] = ("inverse_sqrt", "inverse", "constant")
    ltb_tau0: tuple[float, float] = (5.0, 100.0)
    child_nodes: tuple[int, ...] = (1, 2, 3)
    seeds: tuple[int, ...] = (0,)

    def validate(self) -> None:
        from branchsweep.search import SEARCH_METHODS
        from branchsweep.search.schedules import SCHEDULES

        for m in self.methods:
            SEARCH_METHODS.get(m)  # unknown names raise a one-line error listing the known ones
        for s in (*self.bmtas_schedules, *self.ltb_schedules):
            SCHEDULES.get(s)
        for name in ("lam", "bmtas_tau0", "ltb_tau0"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"search space {name}: need 0 < low <= high, got ({lo}, {hi})")
        if not self.methods or not self.seeds or any(k < 1 for k in self.child_nodes):
            raise ConfigError("search space: methods and seeds must be non-empty, child nodes >= 1")

    def define_by_run(self, trial: Any) -> None:
        """Optuna define-by-run function: the method first, then its own hyperparameters."""
        method = trial.suggest_categorical("method", list(self.methods))
        trial.suggest_categorical("seed", list(self.seeds))
        if method == "bmtas":
            trial.suggest_float(f"bmtas{SEP}lam", *self.lam, log=True)
            trial.suggest_categorical(f"bmtas{SEP}schedule", list(self.bmtas_schedules))
            trial.suggest_float(f"bmtas{SEP}tau0", *self.bmtas_tau0, log=True)
        elif method == "ltb":
            trial.suggest_categorical(f"ltb{SEP}child_nodes", list(self.child_nodes))
            trial.suggest_categorical(f"ltb{SEP}schedule", list(self.ltb_schedules))
            trial.suggest_float(f"ltb{SEP}tau0", *self.ltb_tau0, log=True)


@dataclass
class SweepBase:
    """What every trial of a sweep shares; the sampled parameters only fill in method and search settings.

    ``search_defaults[method]``: that method's settings before sampling (iterations, batch size, …).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_layers: int = 0


def method_settings(params: dict[str, Any], num_layers: int) -> dict[str, Any]:
    """The sampled ``"<method>.<field>"`` parameters of ``params["method"]`` as config field values."""
    method = params["method"]
    out: dict[str, Any] = {}
    for key, value in params.items():
        prefix, sep, name = key.partition(SEP)
        if sep and prefix == method:
            out[name] = value
    if method == "ltb" and "child_nodes" in out:
        out["child_nodes"] = [int(out["child_nodes"])] * (num_layers - 1) + ["T"]
    return out


def trial_label(params: dict[str, Any]) -> str:
    """A short human label: method and its sampled values, e.g. ``bmtas lam=0.1 linear tau0=5``."""
    bits = [str(params["method"])]
    for key, value in sorted(params.items()):
        if key.startswith(f"{params['method']}{SEP}"):
            name = key.partition(SEP)[2]
            bits.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(bits)


def to_trial_config(params: dict[str, Any], base: SweepBase, baseline: bool = False) -> TrialConfig:
    """A validated :class:`TrialConfig` for one Tune trial's sampled ``params``."""
    method = params["method"]
    seed = int(params.get("seed", base.train.seed))
    search = {**base.search_defaults.get(method, {}), **method_settings(params, base.num_layers)}
    hp = {k.partition(SEP)[2] if SEP in k else k: v for k, v in params.items() if k != "method"}
    if "lam" in hp:
        hp["lambda"] = hp.pop("lam")
    cfg = TrialConfig(
        method=method, data=dataclasses.replace(base.data), model=dataclasses.replace(base.model),
        train=dataclasses.replace(base.train, seed=seed), search=search if not baseline else {},
        seed=seed, label=method.capitalize() if baseline else trial_label(params), is_baseline=baseline, hp=hp,
    )
    cfg.validate()
    return cfg
