"""The interface between the ``search`` command / sweeps and a search method."""

from __future__ import annotations

import abc
import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.backbones import BackboneSpec
from branchsweep.data.base import MultiTaskData
from branchsweep.registry import Registry
from branchsweep.tasks import Task


@dataclass
class SearchContext:
    """What every search gets: data, the backbone spec, the tasks, where to write, and how to run.

    ``out_dir`` receives ``branch_config.json``, the search log and resumable checkpoints;
    ``resume`` continues from the last checkpoint there.
    """

    data: MultiTaskData
    spec: BackboneSpec
    tasks: list[Task]
    out_dir: Path
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    cache_dir: Path | None = None


@dataclass
class SearchResult:
    """A finished search: the exported architecture plus its log."""

    config: BranchConfig
    log_path: Path | None
    wall_time_s: float
    info: dict[str, Any] = field(default_factory=dict)


class SearchMethod(abc.ABC):
    """Base class of a search method.

    ``config_type`` is the method's typed config dataclass; ``add_arguments`` adds its flags to the
    ``search`` command; ``config_from_args`` maps parsed flags onto the config (and is what a sweep's
    search space maps onto, via :func:`branchsweep.config.from_mapping`).
    """

    name: str = ""
    config_type: type = object

    @abc.abstractmethod
    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        """Add this method's flags (their defaults are the paper's settings)."""

    @abc.abstractmethod
    def config_from_args(self, args: argparse.Namespace) -> Any:
        """Map parsed flags onto ``config_type`` (validated)."""

    @abc.abstractmethod
    def run(self, cfg: Any, ctx: SearchContext) -> SearchResult:
        """Search, write ``branch_config.json`` and the log into ``ctx.out_dir``, return the result."""


SEARCH_METHODS: Registry[SearchMethod] = Registry("search method")
