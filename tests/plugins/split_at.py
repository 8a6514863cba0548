"""A throw-away search method registered from outside the package (one file, nothing else touched).

``split-at``: every task shares layers ``[0, layer)`` and has its own branch from ``layer`` on. Loaded by
the tests through :func:`branchsweep.registry.import_plugins` (CLI) and ``SweepConfig.plugins`` (sweeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.errors import ConfigError
from branchsweep.search.base import SEARCH_METHODS, SearchContext, SearchMethod, SearchResult, setting


@dataclass
class SplitAtConfig:
    layer: int = setting(1, "first layer where every task has its own branch")

    def validate(self) -> None:
        if self.layer < 0:
            raise ConfigError(f"split-at: --layer must be >= 0, got {self.layer}")


@dataclass
class SplitAtSpace:
    layers: tuple[int, ...] = (0, 1, 2)

    def validate(self) -> None:
        if not self.layers:
            raise ConfigError("split-at search space: no layers")

    def suggest(self, trial: Any, prefix: str) -> None:
        trial.suggest_categorical(f"{prefix}layer", list(self.layers))


class SplitAt(SearchMethod):
    """Share the first ``layer`` layers, then one branch per task."""

    name = "split-at"
    config_type = SplitAtConfig
    space_type = SplitAtSpace

    def run(self, cfg: SplitAtConfig, ctx: SearchContext) -> SearchResult:
        names = [t.name for t in ctx.tasks]
        shared = min(cfg.layer, ctx.spec.num_layers)
        groups = [[names]] * shared + [[[n] for n in names]] * (ctx.spec.num_layers - shared)
        config = BranchConfig.from_groups(names, groups)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        config.save(ctx.out_dir / "branch_config.json")
        return SearchResult(config=config, log_path=None, wall_time_s=0.0, info={"layer": cfg.layer})


if "split-at" not in SEARCH_METHODS:
    SEARCH_METHODS.register("split-at", SplitAt())
