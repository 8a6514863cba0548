"""``branchsweep train``: train a branched network (single, shared or a searched config) and evaluate it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from branchsweep.commands._common import (
    add_data_arguments,
    add_model_arguments,
    add_runtime_arguments,
    add_train_arguments,
    data_config,
    format_metrics,
    model_config,
    train_config,
)
from branchsweep.config import to_dict
from branchsweep.data import create_data
from branchsweep.errors import ConfigError
from branchsweep.factory import build_model, build_spec, resolve_arch
from branchsweep.loop import Runtime
from branchsweep.madds import format_madds, madds_table
from branchsweep.network import count_parameters
from branchsweep.train import CHECKPOINT_NAME, evaluate_network, train_network

NAME = "train"
HELP = "train a branched network (--arch single|shared|PATH.json) and print its metrics and MAdds"
RUN_FILE = "run.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="single", help="single, shared or PATH to a branch_config.json")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder for checkpoint, metrics.json and run.json (default: write nothing)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add_data_arguments(p)
    add_model_arguments(p)
    add_train_arguments(p)
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    dcfg, mcfg = data_config(args), model_config(args)
    tcfg = train_config(args, mcfg.backbone)
    Runtime(tcfg.device, tcfg.amp, tcfg.channels_last)  # a bad device or precision fails before any work
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out (the run folder to continue)")
    if args.resume and not (args.out / CHECKPOINT_NAME).is_file():
        raise ConfigError(f"--resume: no checkpoint in {args.out}")
    data = create_data(dcfg)
    tasks = data.select_tasks(dcfg.tasks)
    spec = build_spec(mcfg, data)
    if mcfg.backbone is None:  # the paper's batch size follows the data set's default backbone
        tcfg = train_config(args, spec.name)
    names = [t.name for t in tasks]
    config = resolve_arch(args.arch, names, spec.num_layers)
    model = build_model(spec, tasks, config, tcfg.seed)
    madds = madds_table(spec, tasks).madds(config)
    print(f"{data.name}: {len(names)} tasks ({', '.join(names)}), backbone {spec.name}, "
          f"{format_madds(madds)}, {count_parameters(model) / 1e6:.2f} M parameters")
    print(config.draw(spec.layer_names))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        run_info = {"data": to_dict(dcfg), "model": to_dict(mcfg), "train": to_dict(tcfg), "arch": config.to_dict()}
        (args.out / RUN_FILE).write_text(json.dumps(run_info, indent=1))
        config.save(args.out / "branch_config.json")
    result = train_network(model, data, tasks, tcfg, out_dir=args.out, resume=args.resume)
    metrics = evaluate_network(model, data, tasks, tcfg, split=tcfg.eval_split)
    print(f"trained {result.iterations} iterations in {result.wall_time_s:.1f} s, final loss {result.losses[-1]:.4f}")
    print({"val": "validation", "test": "test", "train": "training"}[tcfg.eval_split] + " metrics:")
    print(format_metrics(metrics))
    if args.out is not None:
        summary = {"arch_hash": config.arch_hash(), "madds": madds, "params": count_parameters(model),
                   "train_time_s": result.wall_time_s, "final_loss": result.losses[-1], "metrics": metrics}
        (args.out / "metrics.json").write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.out / 'metrics.json'}")
    return 0
