"""``branchsweep evaluate``: score a trained run folder (from ``branchsweep train --out``) on a split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from branchsweep.arch import BranchConfig
from branchsweep.commands._common import format_metrics
from branchsweep.config import DataConfig, ModelConfig, TrainConfig, from_mapping
from branchsweep.data import create_data
from branchsweep.factory import build_model, build_spec
from branchsweep.runs import RUN_FILE, read_run_info
from branchsweep.train import CHECKPOINT_NAME, evaluate_network, load_checkpoint

NAME = "evaluate"
HELP = "evaluate a trained run folder and write metrics_<split>.json into it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="run folder written by `branchsweep train --out`")
    p.add_argument("--split", default="val")
    p.add_argument("--root", default=None, help="data root, if it moved since training")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: as trained)")


def run(args: argparse.Namespace) -> int:
    run_file = args.run / RUN_FILE
    info = read_run_info(args.run)
    dcfg = from_mapping(DataConfig, info["data"])
    if args.root:
        dcfg.root = args.root
    mcfg = from_mapping(ModelConfig, info["model"])
    tcfg = from_mapping(TrainConfig, info["train"])
    if args.device:
        tcfg.device = args.device
    data = create_data(dcfg)
    tasks = data.select_tasks(dcfg.tasks)
    spec = build_spec(mcfg, data)
    config = BranchConfig.from_dict(info["arch"], source=str(run_file))
    model = build_model(spec, tasks, config, tcfg.seed)
    model.load_state_dict(load_checkpoint(args.run / CHECKPOINT_NAME)["model"])
    metrics = evaluate_network(model, data, tasks, tcfg, split=args.split)
    print(f"{args.split} metrics:")
    print(format_metrics(metrics))
    out = args.run / f"metrics_{args.split}.json"
    out.write_text(json.dumps(metrics, indent=1))
    print(f"wrote {out}")
    return 0
