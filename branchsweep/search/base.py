"""The interface between a search method and everything that runs one (CLI, sweeps, trial pipeline).

A method is one registration in ``SEARCH_METHODS`` and owns everything that is its own:

* its **settings**: a config dataclass whose fields are declared with :func:`setting` (default, help,
  optionally the flag name and an argparse type). The ``search`` command generates its flags from them
  (:func:`config_flags`); a sweep's per-trial settings are built with
  :func:`branchsweep.config.from_mapping`, so an unknown key is an error, never ignored;
* its **search space** for sweeps: a dataclass (``space_type``) of ranges with
  ``suggest(trial, prefix)`` sampling Optuna parameters named ``"<method>.<name>"``, and
  :meth:`SearchMethod.settings` mapping the sampled values onto config fields;
* its **per-sweep shared state** (e.g. the BMTAS warm-up, computed once per sweep):
  :meth:`SearchMethod.sweep_settings` gets a folder the sweep reserves for the method and returns the
  settings every trial of the method receives; :meth:`SearchMethod.sweep_summary` says what was shared;
* whether it is a **control** of a sweep (a tree built from a searched front point, not searched:
  ``control_rank``) and which trials it adds for a front point (:meth:`SearchMethod.control_trials`;
  :func:`control_methods` lists the controls in order).

The CLI, ``branchsweep.sweep`` and ``branchsweep.pipeline`` loop over ``SEARCH_METHODS`` and never
name a method.
"""

from __future__ import annotations

import abc
import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.backbones import BackboneSpec
from branchsweep.config import from_mapping
from branchsweep.data.base import MultiTaskData
from branchsweep.registry import Registry
from branchsweep.tasks import Task


def setting(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
            type: Callable[[str], Any] | None = None, choices: tuple | None = None, cli: bool = True,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with what its ``search`` flag needs (a drop-in for :func:`dataclasses.field`).

    ``flag`` defaults to ``--<field-name-with-dashes>``; ``type`` to the field's annotated type
    (``int``, ``float``, ``str``; ``bool`` gives ``--x/--no-x``); ``cli=False`` keeps a field out of
    the command line.
    """
    meta = {"help": help, "flag": flag, "type": type, "choices": choices, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ConfigFlag:
    """One generated command-line flag: ``flag`` sets config field ``field``."""

    flag: str
    field: str
    type: Callable[[str], Any] | None
    boolean: bool
    choices: tuple | None
    help: str


def _plain_type(hint: Any) -> Any:
    """``int | None`` -> ``int``; other unions and generics -> None (they need an explicit type)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return _plain_type(rest[0]) if len(rest) == 1 else None
    return hint if hint in (int, float, str, bool) else None


def config_flags(config_type: type) -> list[ConfigFlag]:
    """The flags of a settings dataclass, in field order (fields declared with :func:`setting`).

    >>> @dataclass
    ... class Demo:
    ...     lam: float = setting(0.1, "resource weight", flag="--lambda")
    ...     hard: bool = setting(False, "hard samples")
    >>> [(f.flag, f.field, f.boolean) for f in config_flags(Demo)]
    [('--lambda', 'lam', False), ('--hard', 'hard', True)]
    """
    hints = typing.get_type_hints(config_type)
    out = []
    for f in dataclasses.fields(config_type):
        meta = f.metadata
        if not meta.get("cli", True) or "help" not in meta:
            continue
        plain = _plain_type(hints[f.name])
        conv = meta.get("type") or (plain if plain is not bool else None)
        if conv is None and plain is not bool:
            raise TypeError(f"{config_type.__name__}.{f.name}: give setting(type=...) for a {hints[f.name]} flag")
        out.append(ConfigFlag(meta.get("flag") or "--" + f.name.replace("_", "-"), f.name, conv, plain is bool,
                              meta.get("choices"), meta.get("help", "")))
    return out


@dataclass
class SearchContext:
    """What every search gets: data, the backbone spec, the tasks, where to write, and how to run.

    ``out_dir`` receives ``branch_config.json``, the search log and resumable checkpoints;
    ``resume`` continues from the last checkpoint there. ``device``, ``amp`` and ``channels_last``
    are run settings (:class:`branchsweep.loop.Runtime`); loader workers come from the data set.
    ``data`` is replaced by the view a search reads (:meth:`MultiTaskData.for_search`: Taskonomy is
    searched at 128², retrained at 256²); for the other data sets that is the data set itself.
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
    amp: str = "off"
    channels_last: bool = False
    #: Layer boundaries at which the exported tree may split (:mod:`branchsweep.tree_space`); None: every
    #: layer. Checked against the backbone and stored sorted and complete (every layer when None).
    branch_points: tuple[int, ...] | None = None
    #: ``on_step(iteration, info)``: progress for callers such as Ray trials, called on host synchronisations
    #: (``info``: ``tau``, ``loss`` and, where the method has them, ``madds`` of the architecture it would
    #: export now) and after every resumable checkpoint (``info["checkpoint"]`` True).
    on_step: Callable[[int, dict], None] | None = None

    def step(self, iteration: int, **info: Any) -> None:
        """Call :attr:`on_step` when set (search loops call this; values must be plain numbers)."""
        if self.on_step is not None:
            self.on_step(iteration, info)

    def __post_init__(self) -> None:
        from branchsweep.tree_space import check_branch_points

        self.branch_points = check_branch_points(self.branch_points, self.spec.num_layers)
        for_search = getattr(self.data, "for_search", None)
        if for_search is not None:
            self.data = for_search()

    def runtime(self):
        from branchsweep.loop import Runtime

        return Runtime(self.device, self.amp, self.channels_last, self.data.num_workers)


@dataclass(frozen=True)
class ControlTrial:
    """One control trial a method builds for a searched front point: ``name`` follows the point's short name in
    the trial's label (``bmtas#1 permuted 2``); ``search`` holds the trial's search settings."""

    name: str
    search: dict[str, Any]


@dataclass
class SearchResult:
    """A finished search: the exported architecture plus its log."""

    config: BranchConfig
    log_path: Path | None
    wall_time_s: float
    info: dict[str, Any] = field(default_factory=dict)


class SearchMethod(abc.ABC):
    """Base class of a search method (see the module docstring).

    ``config_type``: the settings dataclass (fields declared with :func:`setting`; paper defaults).
    ``space_type``: the sweep's search space of this method, a dataclass of ranges with a
    ``suggest(trial, prefix)`` method (None: the method is not swept by Optuna).
    ``divides_lr_by_sharing``: the method's retraining convention, used when a trial's
    ``train.divide_lr_by_sharing`` is None (BMTAS divides a shared block's lr by its task count).
    """

    name: str = ""
    config_type: type = object
    space_type: type | None = None
    divides_lr_by_sharing: bool = True
    #: A control of sweeps (BMTAS Table 3, Figure 2: a tree built from a front point of the searched methods,
    #: at its MAdds or from its tree): its place among a front point's controls (lower first); None: not one.
    control_rank: int | None = None

    def make_config(self, values: Mapping[str, Any]) -> Any:
        """The validated settings from field values (an unknown field is a one-line error)."""
        return from_mapping(self.config_type, dict(values), what=f"{self.name} settings")

    def flags(self) -> list[ConfigFlag]:
        return config_flags(self.config_type)

    def make_space(self, ranges: Mapping[str, Any] | None = None) -> Any:
        """This method's search space with ``ranges`` overriding its defaults (validated)."""
        if self.space_type is None:
            from branchsweep.errors import ConfigError

            raise ConfigError(f"search method {self.name!r} has no sweep search space")
        return from_mapping(self.space_type, dict(ranges or {}), what=f"{self.name} search space")

    def settings(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """Config field values from this method's sampled parameters (prefix already removed)."""
        return dict(sampled)

    def data_defaults(self, dataset: str, backbone: str, num_tasks: int) -> dict[str, Any]:
        """Settings this method defaults to on data set ``dataset`` with ``backbone`` (its paper's recipe;
        the ``search`` command applies them under the flags given). Default: none."""
        return {}

    def sweep_settings(self, shared_dir: Path) -> dict[str, Any]:
        """Settings every trial of this method gets in a sweep; ``shared_dir`` is reserved for it."""
        return {}

    def sweep_summary(self, shared_dir: Path, trials: int) -> str | None:
        """One line about the state shared by a sweep's ``trials`` of this method (None: nothing)."""
        return None

    def control_trials(self, row: Mapping[str, Any], count: int, seed: int) -> list[ControlTrial]:
        """The trials this control adds for a searched front point ``row`` (a results row: ``arch_json``,
        ``madds``). ``count``: how many trees a control that draws several builds (a sweep's
        ``permutations``); ``seed``: the search seed the trials run with. Default: none."""
        return []

    @abc.abstractmethod
    def run(self, cfg: Any, ctx: SearchContext) -> SearchResult:
        """Search, write ``branch_config.json`` and the log into ``ctx.out_dir``, return the result."""


SEARCH_METHODS: Registry[SearchMethod] = Registry("search method")


def control_methods() -> list[str]:
    """The registered controls (``control_rank`` set), in the order their trials are built for a front point."""
    ranked = [(SEARCH_METHODS.get(n).control_rank, n) for n in SEARCH_METHODS]
    return [n for _, n in sorted((r, n) for r, n in ranked if r is not None)]


def run_method(method: SearchMethod, cfg: Any, ctx: SearchContext) -> SearchResult:
    """Run ``method`` and check that its tree splits only at ``ctx.branch_points`` (every caller runs a
    method through here, so no method, present or future, exports a tree off the branch points)."""
    from branchsweep.tree_space import check_respects

    result = method.run(cfg, ctx)
    check_respects(result.config, ctx.branch_points, method.name)
    return result


def parse_settings(args: argparse.Namespace, method: SearchMethod, dest_of: Mapping[str, str]) -> dict[str, Any]:
    """Field values of ``method`` from flags parsed with :func:`add_method_flags` (unset ones skipped).

    A flag set on the command line that belongs to another method is a one-line error.
    """
    from branchsweep.errors import ConfigError

    own = {f.flag: f.field for f in method.flags()}
    values = {}
    for flag, dest in dest_of.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if flag not in own:
            owners = [m for m in SEARCH_METHODS if any(f.flag == flag for f in SEARCH_METHODS.get(m).flags())]
            raise ConfigError(f"{flag} is a {'/'.join(owners)} setting, not {method.name}")
        values[own[flag]] = value
    return values


def add_method_flags(parser: argparse.ArgumentParser, methods: Sequence[str] | None = None) -> dict[str, str]:
    """Add the flags of ``methods`` (default: every registered method) once each; returns ``{flag: dest}``.

    A method's own flags go in one argument group per method (``BMTAS settings``); a flag that several
    methods declare goes in a group of shared settings, its help naming its owners.
    """
    names = list(SEARCH_METHODS) if methods is None else list(methods)
    by_flag: dict[str, list[tuple[str, ConfigFlag]]] = {}
    for name in names:
        for f in SEARCH_METHODS.get(name).flags():
            by_flag.setdefault(f.flag, []).append((name, f))
    groups: dict[str, Any] = {}

    def group_of(owners: list[str]):
        key = owners[0] if len(owners) == 1 else ""
        if key not in groups:
            title = (f"{key} settings (default: the method's paper settings)" if key
                     else "settings of several search methods")
            groups[key] = parser.add_argument_group(title)
        return groups[key]

    dest_of = {}
    for flag, owners in by_flag.items():
        first = owners[0][1]
        if any((f.type, f.boolean) != (first.type, first.boolean) for _, f in owners):
            raise TypeError(f"search methods declare {flag} with different types")
        dest = "method_setting_" + flag.lstrip("-").replace("-", "_")
        label = "/".join(name for name, _ in owners)
        kwargs: dict[str, Any] = {"dest": dest, "default": None,
                                  "help": first.help if len(names) == 1 else f"[{label}] {first.help}"}
        if first.boolean:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = first.type
            if first.choices:
                kwargs["choices"] = first.choices
            else:
                kwargs["metavar"] = flag.lstrip("-").upper().replace("-", "_")
        group_of([name for name, _ in owners]).add_argument(flag, **kwargs)
        dest_of[flag] = dest
    return dest_of
