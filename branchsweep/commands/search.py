"""``branchsweep search --method bmtas|ltb``: search a branching structure, export branch_config.json.

Flags common to every method live here; each method adds its own (``--lambda`` for BMTAS,
``--child-nodes`` for Learning to Branch). Common flags default to None, meaning "the method's paper
default", so one flag name serves both methods.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from branchsweep.commands._common import add_data_arguments, add_model_arguments, data_config, model_config
from branchsweep.data import create_data
from branchsweep.errors import ConfigError
from branchsweep.factory import build_spec
from branchsweep.madds import format_madds, madds_table
from branchsweep.search import SEARCH_METHODS, SearchContext

NAME = "search"
HELP = "search a branched architecture (BMTAS or Learning to Branch) and write branch_config.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help=f"search method: {', '.join(SEARCH_METHODS.names()) or 'none'}")
    p.add_argument("--out", type=Path, required=True, help="output folder (branch_config.json, search log, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("search schedule (default: the method's paper settings)")
    g.add_argument("--schedule", default=None, help="temperature schedule: linear, exponential, cosine, constant, ...")
    g.add_argument("--tau0", type=float, default=None, help="initial temperature")
    g.add_argument("--tau1", type=float, default=None, help="final temperature (schedules that have one)")
    g.add_argument("--iterations", type=int, default=None, help="search iterations (weight updates)")
    g.add_argument("--warmup-iterations", type=int, default=None, help="warm-up iterations before the architecture is trained")
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--lr", type=float, default=None, help="learning rate of the network weights")
    g.add_argument("--arch-lr", type=float, default=None, help="learning rate of the architecture parameters")
    add_data_arguments(p)
    add_model_arguments(p)
    for name in SEARCH_METHODS.names():
        SEARCH_METHODS.get(name).add_arguments(p.add_argument_group(f"{name} options"))


def run(args: argparse.Namespace) -> int:
    method = SEARCH_METHODS.get(args.method)
    cfg = method.config_from_args(args)
    dcfg, mcfg = data_config(args), model_config(args)
    data = create_data(dcfg)
    tasks = data.select_tasks(dcfg.tasks)
    if len(tasks) < 2:
        raise ConfigError("a branching search needs at least two tasks")
    spec = build_spec(mcfg, data)
    ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=args.out, seed=args.seed, device=args.device,
                        resume=args.resume, progress=not args.no_progress)
    args.out.mkdir(parents=True, exist_ok=True)
    result = method.run(cfg, ctx)
    madds = madds_table(spec, tasks).madds(result.config)
    print(result.config.draw(spec.layer_names))
    print(f"{args.method} search finished in {result.wall_time_s:.1f} s: {format_madds(madds)}, "
          f"architecture {result.config.arch_hash()}")
    print(f"wrote {args.out / 'branch_config.json'}" + (f" and {result.log_path}" if result.log_path else ""))
    return 0
