"""``branchsweep latency``: measured latency and memory of a branched network beside Single and Shared.

``RUN_OR_FILE`` is a retrain folder, a sweep folder (with ``--trial``/``--front-point``) or a file
written by ``branchsweep export`` (its sidecar ``FILE.json`` names the data, backbone and tree). The
tree, Single and Shared networks are measured at the same settings (:mod:`branchsweep.latency`):
the tree with its trained weights (from the run, or the exported file itself), Single and Shared built
from the same backbone and tasks with untrained weights, which do not change the time of a forward
pass. With a file, a runtime the file is not in runs the tree rebuilt from its branch config (also
untrained).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from branchsweep.commands.export import add_run_arguments, sidecar_path
from branchsweep.errors import ConfigError

NAME = "latency"
HELP = "measure median/p90 latency and peak memory of a run's tree and of Single and Shared"
_FILE_RUNTIME = {"onnx": "onnxruntime", "torchscript": "torch"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--batch", type=int, default=1, help="inputs per forward pass (default 1)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--repeats", type=int, default=30, help="timed forward passes (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed forward passes first (default 5)")
    p.add_argument("--runtime", default="both", choices=["torch", "onnxruntime", "both"],
                   help="plain PyTorch, onnxruntime or both (default both)")
    p.add_argument("--json", type=Path, default=None, help="also write the table and settings to this JSON file")


def _networks(args: argparse.Namespace) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """``({name: (network, exported file or None, file format)}, example input, source info)``."""
    from branchsweep.arch import BranchConfig
    from branchsweep.config import DataConfig, ModelConfig, from_mapping
    from branchsweep.factory import build_model
    from branchsweep.runs import build_network, load_run, validation_batch

    if args.run.is_file():
        if args.trial is not None or args.front_point is not None or args.seed is not None:
            raise ConfigError(f"{args.run} is an exported file: --trial, --front-point and --seed select a sweep trial")
        side = sidecar_path(args.run)
        try:
            info = json.loads(side.read_text())
            dcfg = from_mapping(DataConfig, info["data"])
            mcfg = from_mapping(ModelConfig, info["model"])
            config = BranchConfig.from_dict(info["branch_config"], source=str(side))
            fmt = info["format"]
        except FileNotFoundError:
            raise ConfigError(f"{args.run} has no sidecar {side.name}: measure a file written by `branchsweep export`") from None
        except (ValueError, KeyError) as err:
            raise ConfigError(f"{side}: not an export sidecar ({err})") from None
        data, tasks, spec, tree = build_network(dcfg, mcfg, config, root=args.root)
        example = validation_batch(data, 1)
        source = {"source": str(args.run.resolve()), "kind": "file", "format": fmt}
        trained_file = (args.run, fmt)
    else:
        loaded = load_run(args.run, trial=args.trial, front_point=args.front_point, seed=args.seed, root=args.root,
                          batch=1)
        spec, tasks, config, tree, example = loaded.spec, loaded.tasks, loaded.config, loaded.model, loaded.example
        source = {k: v for k, v in loaded.metadata.items() if k in ("source", "kind", "trial_id", "label", "seed")}
        trained_file = None
    names = [t.name for t in tasks]
    nets = {"tree": (tree, config, trained_file)}
    for name, make in (("Single", BranchConfig.single), ("Shared", BranchConfig.shared)):
        base = make(names, spec.num_layers)
        nets[name] = (build_model(spec, tasks, base, seed=0), base, None)
    return nets, example, {**source, "backbone": spec.name, "tasks": names, "spec": spec, "task_objs": tasks}


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from branchsweep.latency import LatencySettings, measure
    from branchsweep.madds import madds_table

    runtimes = ["torch", "onnxruntime"] if args.runtime == "both" else [args.runtime]
    settings = [LatencySettings(device=args.device, batch=args.batch, threads=args.threads, warmup=args.warmup,
                                repeats=args.repeats, runtime=r) for r in runtimes]
    for s in settings:
        s.check_available()
    if args.json is not None and not args.json.parent.is_dir():
        raise ConfigError(f"--json {args.json}: folder {args.json.parent} does not exist")
    nets, example, source = _networks(args)
    spec, tasks = source.pop("spec"), source.pop("task_objs")
    table = madds_table(spec, tasks)
    rows = []
    for name, (net, config, trained_file) in nets.items():
        for s in settings:
            onnx_path = None
            model = net
            weights = "trained" if name == "tree" else "untrained"
            if trained_file is not None:
                path, fmt = trained_file
                if _FILE_RUNTIME[fmt] == s.runtime:
                    weights = f"file {path.name}"
                    if fmt == "onnx":
                        onnx_path = path
                    else:
                        import torch

                        model = torch.jit.load(str(path), map_location="cpu")  # returns the task tuple
                else:
                    weights = "untrained (rebuilt)"
            result = measure(model, example, s, onnx_path=onnx_path)
            rows.append({"model": name, "runtime": s.runtime, "MMAdds": table.madds(config) / 1e6,
                         "median_ms": result.median_ms, "p90_ms": result.p90_ms, "peak_mem_mb": result.peak_mem_mb,
                         "weights": weights, "memory": result.memory})
    df = pd.DataFrame(rows)
    memory = "; ".join(f"{r}: {m}" for r, m in dict(zip(df["runtime"], df["memory"])).items())
    s0 = settings[0]
    print(f"{source['source']}: {source['backbone']}, tasks {', '.join(source['tasks'])}")
    print(f"device {s0.device}, batch {s0.batch}, threads {s0.threads}, {s0.warmup} warm-up + {s0.repeats} timed "
          f"passes; peak_mem_mb = working memory during the passes, weights excluded ({memory})")
    print(df.drop(columns="memory").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json is not None:
        settings_json = {k: v for k, v in dataclasses.asdict(s0).items() if k != "runtime"}
        payload = {"settings": {**settings_json, "runtimes": runtimes}, "source": source, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
