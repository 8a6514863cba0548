"""``branchsweep search --method NAME``: search a branching structure, export branch_config.json.

Flags common to every search (where to write, seed, device, data, backbone) live here; every
registered method contributes the flags of its own settings (generated from its config dataclass,
e.g. ``--lambda`` for BMTAS, ``--child-nodes`` for Learning to Branch). A flag that several methods
declare is added once; a flag of another method than ``--method`` is an error, never ignored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from branchsweep.commands._common import (
    add_data_arguments,
    add_model_arguments,
    add_runtime_arguments,
    data_config,
    model_config,
)
from branchsweep.data import create_data
from branchsweep.errors import ConfigError
from branchsweep.factory import build_spec
from branchsweep.madds import format_madds, madds_table
from branchsweep.search import SEARCH_METHODS, SearchContext
from branchsweep.search.base import add_method_flags, parse_settings, run_method
from branchsweep.tree_space import parse_branch_points

NAME = "search"
HELP = "search a branched architecture (BMTAS, Learning to Branch, ...) and write branch_config.json"
_DESTS = "_method_setting_dests"
#: The CLI leaves ``-h/--help`` to this command: with ``--method NAME`` before it, help lists that method's
#: settings only.
ADD_HELP = False


class _MethodHelp(argparse.Action):
    """``--help``: after ``--method NAME`` (a registered method), the help of that method alone."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        method = getattr(namespace, "method", None)
        if method in SEARCH_METHODS:
            one = type(parser)(prog=parser.prog, description=parser.description, add_help=False)
            add_arguments(one, methods=[method])
            one.print_help()
        else:
            parser.print_help()
        parser.exit()


def add_arguments(p: argparse.ArgumentParser, methods: list[str] | None = None) -> None:
    p.add_argument("-h", "--help", action=_MethodHelp,
                   help="show this help and exit (after --method NAME: that method's settings only)")
    p.add_argument("--method", required=True, help=f"search method: {', '.join(SEARCH_METHODS.names()) or 'none'}")
    p.add_argument("--out", type=Path, required=True, help="output folder (branch_config.json, search log, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--branch-points", type=parse_branch_points, default=None, metavar="L1,L2,...",
                   help="layer indices at which the tree may split (0: the input; layers before the first are "
                        "shared by every task; default: every layer)")
    p.add_argument("--no-progress", action="store_true")
    add_runtime_arguments(p)
    add_data_arguments(p)
    add_model_arguments(p)
    p.set_defaults(**{_DESTS: add_method_flags(p, methods)})


def run(args: argparse.Namespace) -> int:
    method = SEARCH_METHODS.get(args.method)
    settings = parse_settings(args, method, getattr(args, _DESTS))
    dcfg, mcfg = data_config(args), model_config(args)
    data = create_data(dcfg)
    tasks = data.select_tasks(dcfg.tasks)
    if len(tasks) < 2:
        raise ConfigError("a branching search needs at least two tasks")
    spec = build_spec(mcfg, data)
    cfg = method.make_config({**method.data_defaults(data.name, spec.name, len(tasks)), **settings})
    ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=args.out, seed=args.seed, device=args.device,
                        resume=args.resume, progress=not args.no_progress, amp=args.amp,
                        channels_last=args.channels_last, branch_points=args.branch_points)
    ctx.runtime()  # a bad device or precision fails here, before anything is written
    args.out.mkdir(parents=True, exist_ok=True)
    result = run_method(method, cfg, ctx)
    madds = madds_table(spec, tasks).madds(result.config)
    print(result.config.draw(spec.layer_names))
    print(f"{args.method} search finished in {result.wall_time_s:.1f} s: {format_madds(madds)}, "
          f"architecture {result.config.arch_hash()}")
    print(f"wrote {args.out / 'branch_config.json'}" + (f" and {result.log_path}" if result.log_path else ""))
    return 0
