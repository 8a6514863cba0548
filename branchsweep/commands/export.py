"""``branchsweep export``: a retrained branched network as one ONNX or TorchScript graph, checked against PyTorch.

``RUN`` is a retrain folder (``branchsweep train --out``) or a sweep folder with ``--trial ID`` or
``--front-point K`` (1 = the front point with the fewest MAdds) and optionally ``--seed S``. The file
has one input and one output per task (named after the task); the batch axis is dynamic, the image
size too with ``--dynamic-size`` where the backbone allows it. After writing, the file is checked
(``onnx.checker``; then onnxruntime on the CPU, or ``torch.jit.load``, against PyTorch on a batch of
the validation split, tolerance in :mod:`branchsweep.export`) and a sidecar ``FILE.json`` records the
tasks, outputs, input shape, branch config, MAdds, source run and check results.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from branchsweep.errors import ConfigError

NAME = "export"
HELP = "export a retrained branched network (retrain folder or sweep trial) as one ONNX/TorchScript graph"
SIDECAR_SUFFIX = ".json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"], help="graph format (default onnx)")
    p.add_argument("--out", type=Path, required=True, help="file to write (a sidecar FILE.json is written beside it)")
    p.add_argument("--dynamic-size", action="store_true",
                   help="dynamic image height and width (backbones without size-dependent layers)")
    p.add_argument("--check-batch", type=int, default=8, help="validation samples the outputs are compared on (default 8)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """RUN and the flags choosing a sweep trial (shared with ``branchsweep latency``)."""
    p.add_argument("run", type=Path, metavar="RUN", help="retrain folder (branchsweep train --out) or sweep folder")
    p.add_argument("--trial", default=None, help="sweep folder: the trial id (results.parquet's trial_id)")
    p.add_argument("--front-point", type=int, default=None, metavar="K",
                   help="sweep folder: the K-th point of the front by MAdds (1 = fewest MAdds)")
    p.add_argument("--seed", type=int, default=None, help="sweep folder: the retrain seed (default: the trial's first)")
    p.add_argument("--root", default=None, help="data root, if it moved since training")


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + SIDECAR_SUFFIX)


def _check_writable(out: Path) -> None:
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name")
    if not folder.is_dir():
        raise ConfigError(f"--out {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(f"--out {out}: not writable")


def run(args: argparse.Namespace) -> int:
    from branchsweep.export import export
    from branchsweep.madds import format_madds
    from branchsweep.runs import load_run

    _check_writable(args.out)
    if args.check_batch < 1:
        raise ConfigError(f"--check-batch must be >= 1, got {args.check_batch}")
    loaded = load_run(args.run, trial=args.trial, front_point=args.front_point, seed=args.seed, root=args.root,
                      batch=args.check_batch)
    meta = loaded.metadata
    what = f"trial {meta['trial_id']} ({meta['label']}), seed {meta['seed']}" if meta["kind"] == "sweep" else "retrain"
    print(f"{meta['source']}: {what}; {meta['backbone']}, tasks {', '.join(meta['tasks'])}, "
          f"{format_madds(meta['madds'])}, tree {meta['arch_hash']}")
    print(loaded.config.draw(loaded.spec.layer_names))
    try:
        result = export(loaded.model, loaded.example, args.out, args.format, dynamic_size=args.dynamic_size)
    except OSError as err:
        raise ConfigError(f"--out {args.out}: cannot write ({err.strerror or err})") from None
    graph, checks = result["graph"], result["checks"]
    for check in checks:
        size = "x".join(map(str, check.input_shape[2:])) or f"{check.input_shape[-1]} features"
        print(f"check vs PyTorch ({size}): {check.summary()}")
    input_shape = ["batch", *meta["input_shape"]]
    if args.dynamic_size:
        input_shape[2:4] = ["height", "width"]
    sidecar = {
        "format": args.format, "file": args.out.name, "exporter": graph["exporter"], "opset": graph["opset"],
        "input": {"name": graph["input"], "shape": input_shape, "dtype": "float32"},
        "outputs": graph["outputs"], "tasks": meta["tasks"], "dynamic_axes": graph["dynamic_axes"],
        "backbone": meta["backbone"], "madds": meta["madds"], "arch_hash": meta["arch_hash"],
        "branch_config": meta["branch_config"],
        "source": {k: meta[k] for k in ("source", "kind", "trial_id", "label", "method", "front_point", "seed",
                                        "checkpoint", "delta_m") if k in meta},
        "data": meta["data"], "model": meta["model"],
        "check": {"passed": all(c.passed for c in checks), "runtime": "onnxruntime CPU" if args.format == "onnx"
                  else "torch.jit.load", "split": "val", "results": [c.to_dict() for c in checks]},
    }
    side = sidecar_path(args.out)
    side.write_text(json.dumps(sidecar, indent=1) + "\n")
    failed = [c for c in checks if not c.passed]
    if failed:
        raise ConfigError(f"{args.out}: the exported outputs differ from PyTorch's beyond the tolerance "
                          f"({failed[0].summary()}); details in {side}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) and {side}")
    return 0
