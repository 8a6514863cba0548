"""What one trial is: a :class:`TrialConfig` (method, data, backbone, retrain settings, seed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.config import DataConfig, ModelConfig, TrainConfig, from_mapping, to_dict
from branchsweep.errors import ConfigError
from branchsweep.registry import Registry

#: Architectures that need no search: name -> (task names, number of layers) -> BranchConfig.
BASELINES: Registry[Callable[[list[str], int], BranchConfig]] = Registry("baseline architecture")
BASELINES.register("single", BranchConfig.single, help="one network per task (the Δm reference)")
BASELINES.register("shared", BranchConfig.shared, help="every layer shared, task-specific heads")


@dataclass
class TrialConfig:
    """Everything one trial needs; built once from a Tune config or flags, validated, JSON-friendly.

    ``method``: a baseline name (``single``, ``shared``), ``fixed`` (retrain the architecture JSON at
    ``arch``) or a registered search method configured by ``search`` (field names of that method's
    config dataclass). ``seed`` is the *search* seed (a different search seed is a different trial);
    the exported architecture is retrained ``replicates`` times, with seeds ``train.seed + r``
    (:meth:`retrain_seeds`), and its metrics are reported as mean and standard error over them.
    ``branch_points``: where a searched tree may split (every search method and baseline honours it).
    ``hp``: the hyperparameters to record as ``hp/<name>``; ``tags``: other values recorded as columns
    of the result row (e.g. ``baseline_of`` of a control trial).
    """

    method: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: dict[str, Any] = field(default_factory=dict)
    arch: str | None = None
    seed: int = 0
    label: str | None = None
    is_baseline: bool = False
    hp: dict[str, Any] = field(default_factory=dict)
    replicates: int = 1
    tags: dict[str, Any] = field(default_factory=dict)
    #: Layer boundaries at which a searched tree may split (:mod:`branchsweep.tree_space`); None: every layer.
    branch_points: list[int] | None = None
    #: Measure the retrained tree's latency with these :class:`branchsweep.latency.LatencySettings` fields
    #: (``latency_ms`` and friends in the row; a sweep's ``--cost latency|both``); None: MAdds only.
    latency: dict[str, Any] | None = None

    def validate(self) -> None:
        from branchsweep.search import SEARCH_METHODS

        known = [*BASELINES.names(), "fixed", *SEARCH_METHODS.names()]
        if self.method not in known:
            raise ConfigError(f"unknown trial method {self.method!r} (known: {', '.join(known)})")
        if not isinstance(self.replicates, int) or self.replicates < 1:
            raise ConfigError(f"replicates must be an integer >= 1, got {self.replicates!r}")
        if self.method == "fixed" and not self.arch:
            raise ConfigError("method 'fixed' needs arch=<path to a branch-config JSON>")
        if self.method in SEARCH_METHODS:
            self.method_config(None)  # unknown fields and bad values fail here, before any work
        if self.latency is not None:
            self.latency_settings()

    def latency_settings(self) -> Any:
        """The validated :class:`~branchsweep.latency.LatencySettings` of ``latency`` (None: not measured)."""
        if self.latency is None:
            return None
        from branchsweep.latency import LatencySettings

        return from_mapping(LatencySettings, dict(self.latency), what="latency settings")

    def retrain_seeds(self) -> list[int]:
        """The retrain seeds of the replicates: ``train.seed, train.seed + 1, …``."""
        return [self.train.seed + r for r in range(self.replicates)]

    @property
    def display_label(self) -> str:
        return self.label or self.method

    def method_config(self, shared_dir: Path | None) -> Any:
        """The search method's typed settings from ``search``, on top of the method's per-sweep settings
        for the folder ``shared_dir`` the sweep reserves for it (None: outside a sweep)."""
        from branchsweep.search import SEARCH_METHODS

        method = SEARCH_METHODS.get(self.method)
        shared = method.sweep_settings(shared_dir) if shared_dir is not None else {}
        return method.make_config({**shared, **self.search})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("data", "model", "train"):
            out[name] = to_dict(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrialConfig:
        raw = dict(raw)
        parts = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        for name, typ in parts.items():
            if name in raw and isinstance(raw[name], dict):
                raw[name] = from_mapping(typ, raw[name], what=f"trial {name} config")
        return from_mapping(cls, raw, what="trial config")


def with_method_conventions(cfg: TrialConfig, method: str | None = None) -> TrialConfig:
    """``cfg`` with ``train.divide_lr_by_sharing`` None resolved to the convention of ``method`` (default
    ``cfg.method``): a search method's ``divides_lr_by_sharing`` (Learning to Branch: no), otherwise yes
    (baselines and fixed JSONs keep the BMTAS rule, the project's default before it was a setting)."""
    from branchsweep.search import SEARCH_METHODS

    if cfg.train.divide_lr_by_sharing is not None:
        return cfg
    name = method or cfg.method
    divide = SEARCH_METHODS.get(name).divides_lr_by_sharing if name in SEARCH_METHODS else True
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, divide_lr_by_sharing=divide))
