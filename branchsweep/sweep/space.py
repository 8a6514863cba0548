"""The sweep's search space and its mapping onto :class:`~branchsweep.pipeline.TrialConfig`.

Optuna samples a *conditional* space (define-by-run): first the method, then only that method's
parameters. Seeds are not part of it: a trial's search seed is fixed (``search_seed`` in a point, else
the sweep's), and every exported architecture is retrained with ``SweepBase.replicates`` seeds whose
mean is the objective, so the sampler never chases a lucky seed. Each registered search method owns its part: its space dataclass (``space_type``) samples
parameters named ``"<method>.<name>"``, and :meth:`SearchMethod.settings` maps the sampled values onto
its config fields. This module never names a method.

>>> space = SearchSpace(methods=("bmtas",))
>>> params = {"method": "bmtas", "bmtas.lambda": 0.1, "bmtas.schedule": "linear", "bmtas.tau0": 5.0}
>>> method_settings(params)
{'schedule': 'linear', 'tau0': 5.0, 'lam': 0.1}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.errors import ConfigError
from branchsweep.pipeline import TrialConfig

SEP = "."


def _swept_methods() -> tuple[str, ...]:
    from branchsweep.search import SEARCH_METHODS

    return tuple(m for m in SEARCH_METHODS if SEARCH_METHODS.get(m).space_type is not None)


@dataclass
class SearchSpace:
    """What Optuna explores: which methods (default: every registered method that has a search space)
    and ``ranges[method]`` overriding fields of that method's space dataclass."""

    methods: tuple[str, ...] = field(default_factory=_swept_methods)
    ranges: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        from branchsweep.search import SEARCH_METHODS

        if not self.methods:
            raise ConfigError("search space: methods must be non-empty")
        for m in self.methods:
            SEARCH_METHODS.get(m)  # unknown names raise a one-line error listing the known ones
        for m in self.ranges:
            if m not in self.methods:
                raise ConfigError(f"search space: ranges given for {m!r}, which is not among the methods "
                                  f"({', '.join(self.methods)})")
        for m in self.methods:
            self.method_space(m)

    def method_space(self, method: str) -> Any:
        """Method ``method``'s space dataclass with this sweep's ranges (validated)."""
        from branchsweep.search import SEARCH_METHODS

        return SEARCH_METHODS.get(method).make_space(self.ranges.get(method))

    def define_by_run(self, trial: Any) -> None:
        """Optuna define-by-run function: the method first, then its own parameters."""
        method = trial.suggest_categorical("method", list(self.methods))
        self.method_space(method).suggest(trial, f"{method}{SEP}")


@dataclass
class SweepBase:
    """What every trial of a sweep shares; the sampled parameters only fill in method and search settings.

    ``search_defaults[method]``: that method's settings before sampling (iterations, batch size, …).
    ``replicates``: retrain seeds per architecture (``train.seed``, ``train.seed + 1``, …); results
    carry mean and standard error over them. ``search_seed``: the searches' seed. ``branch_points``: the
    layers at which searched and control trees may split.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    replicates: int = 1
    search_seed: int = 0
    #: Where every search and control tree of the sweep may split (:mod:`branchsweep.tree_space`); None: every layer.
    branch_points: tuple[int, ...] | None = None
    #: The front's cost axis: ``madds``, ``latency`` (measured on the node that retrains, with ``latency``'s
    #: settings) or ``both`` (Optuna then minimises both).
    cost: str = "madds"
    #: :class:`branchsweep.latency.LatencySettings` fields for ``cost`` latency/both (default settings: {}).
    latency: dict[str, Any] = field(default_factory=dict)

    @property
    def objectives(self) -> dict[str, str]:
        """The sweep's objectives: each cost column minimised, Δm maximised (as the report's front)."""
        from analysis.report import cost_columns, front_objectives

        return front_objectives(cost_columns(self.cost))


def sampled(params: dict[str, Any]) -> dict[str, Any]:
    """The ``"<method>.<name>"`` parameters of ``params["method"]``, prefix removed."""
    prefix = f"{params['method']}{SEP}"
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def method_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The sampled parameters of ``params["method"]`` as that method's config field values."""
    from branchsweep.search import SEARCH_METHODS

    return SEARCH_METHODS.get(params["method"]).settings(sampled(params))


def trial_label(params: dict[str, Any]) -> str:
    """A short human label: method and its sampled values, e.g. ``bmtas lambda=0.1 linear tau0=5``."""
    bits = [str(params["method"])]
    for name, value in sorted(sampled(params).items()):
        bits.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(bits)


def to_trial_config(params: dict[str, Any], base: SweepBase, baseline: bool = False) -> TrialConfig:
    """A validated :class:`TrialConfig` for one Tune trial's sampled ``params``."""
    from branchsweep.search import SEARCH_METHODS

    params = params.get("point", params)  # control trials: one grid value holding the whole point
    if "seed" in params:
        raise ConfigError("a sweep point sets 'seed': seeds are not sampled; use 'search_seed' for a search's seed "
                          "(retrain seeds are the sweep's replicates)")
    method = params["method"]
    seed = int(params.get("search_seed", base.search_seed))
    control = params.get("control")
    search: dict[str, Any] = {}
    if control is not None:  # a baseline tree built for a front point (branchsweep.sweep.controls)
        search = dict(control.get("search", {}))
    elif not baseline and method in SEARCH_METHODS:
        search = {**base.search_defaults.get(method, {}), **method_settings(params)}
    hp = {k.partition(SEP)[2] if SEP in k else k: v for k, v in params.items() if k not in ("method", "control")}
    if baseline:
        label = method.capitalize()
    elif control is not None:
        label = str(control["label"])
    else:
        label = trial_label(params)
    cfg = TrialConfig(
        method=method, data=dataclasses.replace(base.data), model=dataclasses.replace(base.model),
        train=dataclasses.replace(base.train), search=search, seed=seed, label=label, is_baseline=baseline,
        hp=hp, replicates=base.replicates, tags=dict(control.get("tags", {})) if control else {},
        branch_points=list(base.branch_points) if base.branch_points else None,
        latency=dict(base.latency) if base.cost != "madds" else None,
    )
    cfg.validate()
    return cfg
