"""Shared flags and start-up of the sweep entry scripts (``python sweeps/X.py`` or ``ray job submit``).

Each script defines a :class:`SweepPreset` (data set, backbone, sizes, search settings: every number
of that sweep in one place) plus a ``smoke`` variant, and calls :func:`main`. Flags override the
preset; the resulting :class:`~branchsweep.sweep.SweepConfig` is validated once before Ray starts.

Output folder: ``--out`` or ``$BRANCHSWEEP_RUNS/<name>-<timestamp>`` (``$BRANCHSWEEP_RUNS`` defaults
to ``~/branchsweep-runs``); the folder is printed at start and end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchsweep import paper
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.errors import BranchsweepError
from branchsweep.sweep import SearchSpace, SweepBase, SweepConfig, run_sweep
from branchsweep.tree_space import parse_branch_points


@dataclass
class SweepPreset:
    """Everything a sweep script fixes; flags override ``num_trials``, ``concurrency``, root and resources."""

    name: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    search_defaults: dict[str, dict[str, Any]]
    space: SearchSpace = field(default_factory=SearchSpace)
    num_trials: int = 8
    concurrency: int = 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    points: list[dict[str, Any]] = field(default_factory=list)
    #: Retrain seeds per architecture (results: mean ± standard error over them).
    replicates: int = 1
    #: Control trees per front point (permuted ×``permutations``, vanilla, random); () for none.
    controls: tuple[str, ...] = ()
    permutations: int = 2
    #: Layers at which searched and control trees may split (None: every layer); ``--branch-points``
    #: overrides it. A preset searching the space of an exhaustive table (branchsweep/truth.py) sets the
    #: table's, so that its report can look every tree up.
    branch_points: tuple[int, ...] | None = None
    #: After the report: export the searched front point with the highest Δm as one ONNX graph
    #: (``RUN_DIR/best.onnx``, :mod:`branchsweep.export`) and print how to time it.
    export_best: bool = False


def bmtas_paper_presets(name: str, data: DataConfig, model: ModelConfig, space: SearchSpace,
                        lambdas: list[float], iterations: int = 40000, warmup_iterations: int = 2000,
                        search: dict[str, Any] | None = None, num_trials: int = 32) -> tuple[SweepPreset, SweepPreset]:
    """``(PRESET, SMOKE)`` of a sweep at the BMTAS paper's scale (supplement A: ``iterations`` search and
    retrain iterations — 40k, halved on NYUD-v2 — after ``warmup_iterations`` warm-up iterations, batch 16
    for MobileNetV2 and 8 for ResNet-50 in search and retraining, ImageNet initialisation, one GPU per
    trial), starting from ``lambdas`` (λ of the resource loss ``search`` selects: the paper's grid with
    ``resource_estimator="paper"``, its mapping onto the exact loss otherwise, docs/fidelity.md). The data set is given at full resolution: the ``bmtas`` search reads it at the
    paper's reduced resolution and prices MAdds at full resolution. ``search``: further ``bmtas``
    settings (the Table 3 ablations).

    The smoke variant shrinks data, width and iterations so that it runs on a CPU in minutes.
    """
    batch = paper.BATCH[str(model.backbone)]
    bmtas = {"iterations": iterations, "warmup_iterations": warmup_iterations, "batch_size": batch,
             "checkpoint_every": 1000, **(search or {})}
    preset = SweepPreset(
        name=name, data=data, model=model,
        train=TrainConfig(iterations=iterations, batch_size=batch, checkpoint_every=1000, progress=False),
        search_defaults={"bmtas": bmtas, "ltb": {"iterations": iterations, "batch_size": batch, "checkpoint_every": 1000}},
        space=space, num_trials=num_trials, concurrency=4, cpus_per_trial=4.0, gpus_per_trial=1.0,
        points=[{"method": "bmtas", "bmtas.lambda": lam, "bmtas.schedule": "linear", "bmtas.tau0": 5.0}
                for lam in lambdas],
    )
    smoke = dataclasses.replace(
        preset, name=f"{name}-smoke",
        data=dataclasses.replace(data, size=64, train_samples=64, val_samples=16, num_workers=0),
        model=dataclasses.replace(model, pretrained=None, width=0.25),
        train=dataclasses.replace(preset.train, iterations=5, batch_size=4, checkpoint_every=0),
        search_defaults={"bmtas": {**bmtas, "iterations": 5, "warmup_iterations": 2, "batch_size": 4,
                                   "checkpoint_every": 0},
                         "ltb": {"iterations": 5, "batch_size": 4}},
        num_trials=min(2, num_trials), concurrency=1, cpus_per_trial=1.0, gpus_per_trial=0.0,
        points=preset.points[:1],
    )
    return preset, smoke


def default_out(name: str) -> Path:
    """``$BRANCHSWEEP_RUNS/<name>-<YYYYmmdd-HHMMSS>`` (``~/branchsweep-runs`` when unset)."""
    root = Path(os.environ.get("BRANCHSWEEP_RUNS") or Path.home() / "branchsweep-runs")
    return root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def parser(preset: SweepPreset, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=preset.data.root, help="data set folder (default: the preset's)")
    p.add_argument("--num-trials", type=int, default=None, help=f"search trials (default {preset.num_trials})")
    p.add_argument("--concurrency", type=int, default=None, help=f"trials at once (default {preset.concurrency})")
    p.add_argument("--cpus-per-trial", type=float, default=None, help=f"CPUs per trial (default {preset.cpus_per_trial})")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help=f"GPUs per trial; > 0 runs trials in a Ray Train TorchTrainer (default {preset.gpus_per_trial})")
    p.add_argument("--backend", choices=("auto", "train", "direct"), default="auto",
                   help="auto: Ray Train TorchTrainer for GPU trials, the plain Tune function on CPU-only runs")
    p.add_argument("--storage-path", default=None,
                   help="where the sweep lives: a shared folder or a cloud URI such as s3://bucket/sweeps; the sweep "
                        "writes under STORAGE/<name>-<run id>/ (printed at start; default: the run folder --out)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="retrain/warm-up/MAdds caches shared across sweeps (default OUT/cache)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default $BRANCHSWEEP_RUNS/<name>-<timestamp>, BRANCHSWEEP_RUNS=~/branchsweep-runs)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PREFIX",
                   help="continue an interrupted sweep: its prefix (e.g. s3://bucket/sweeps/<name>-<run id>) or "
                        "run folder; without a value, the sweep in --out (Tuner.restore)")
    p.add_argument("--optuna-storage", default=None, metavar="URL",
                   help="Optuna storage: a journal file or an RDB URL (default OUT/optuna/optuna.journal)")
    p.add_argument("--warm-start", nargs="?", const="", default=None, metavar="SOURCE",
                   help="start Optuna from the finished trials of earlier sweeps with the same data, backbone, "
                        "tasks and settings: in SOURCE (an earlier sweep's folder or prefix, a journal file, an "
                        "RDB URL) or, without a value, in --optuna-storage")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="start no new trial this many seconds after the driver started; running trials finish")
    p.add_argument("--allow-changes", action="store_true",
                   help="--resume with other --num-trials, --concurrency, --time-budget or --cache-dir than the "
                        "recorded sweep (settings that change no trial's result; any other difference is refused)")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="also log every trial's results to MLflow at this tracking URI (Ray's MLflow logger)")
    p.add_argument("--smoke", action="store_true", help="seconds-scale run: tiny data, 2 trials")
    p.add_argument("--replicates", type=int, default=None,
                   help=f"retrain seeds per architecture; results are mean ± s.e. over them (default {preset.replicates})")
    p.add_argument("--search-seed", type=int, default=0,
                   help="seed of every search of the sweep (a different search seed is a different sweep; default 0)")
    p.add_argument("--branch-points", type=parse_branch_points, default=None, metavar="L1,L2,...",
                   help="layer indices at which searched and control trees may split (0: the input; 'all': every "
                        f"layer; default: the preset's, {','.join(map(str, preset.branch_points)) if preset.branch_points else 'every layer'})")
    p.add_argument("--permutations", type=int, default=None,
                   help=f"permuted trees per front point (default {preset.permutations})")
    p.add_argument("--controls", default=None, metavar="KINDS",
                   help="comma-separated control trees per front point: permuted, vanilla, random, or none "
                        f"(default {','.join(preset.controls) or 'none'})")
    p.add_argument("--max-failures", type=int, default=1, help="retries of a failing trial from its last checkpoint")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by this script (default all)")
    p.add_argument("--local", action="store_true",
                   help="start a private Ray instance even if `ray start` runs a cluster on this machine "
                        "(default: join RAY_ADDRESS or that cluster, else start a private one)")
    p.add_argument("--no-report", action="store_true", help="skip the analysis report")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import a module registering extra search methods, tasks or data sets (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--cost", choices=("madds", "latency", "both"), default="madds",
                   help="the front's cost axis: MAdds (default), the latency measured on the node that retrains, "
                        "or both (Optuna minimises each)")
    p.add_argument("--latency-device", default=None, help="--cost latency/both: cpu or cuda (default cpu)")
    p.add_argument("--latency-batch", type=int, default=None, help="--cost latency/both: batch size (default 1)")
    p.add_argument("--latency-threads", type=int, default=None,
                   help="--cost latency/both: CPU threads while timing (default 1)")
    p.add_argument("--latency-runtime", choices=("torch", "onnxruntime"), default=None,
                   help="--cost latency/both: what runs the tree (default torch)")
    return p


def latency_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--latency-*`` flags given, as :class:`branchsweep.latency.LatencySettings` fields; one without
    ``--cost latency|both`` is an error (it would be silently ignored)."""
    given = {name: getattr(args, f"latency_{name}") for name in ("device", "batch", "threads", "runtime")
             if getattr(args, f"latency_{name}") is not None}
    if given and args.cost == "madds":
        raise BranchsweepError(f"--latency-{next(iter(given))} needs --cost latency or --cost both")
    return given


def build_config(preset: SweepPreset, args: argparse.Namespace) -> SweepConfig:
    """The validated sweep config for ``preset`` with flags applied."""
    if args.resume == "" and args.out is None:
        raise BranchsweepError("--resume needs the sweep's prefix or run folder (--resume PREFIX, or --out RUN_DIR)")
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if args.local and address not in ("", "local"):
        raise BranchsweepError(f"--local starts a private Ray instance, but RAY_ADDRESS={address} names a "
                               "cluster to join; unset one of them")
    data = dataclasses.replace(preset.data, root=args.root)
    out = args.out or default_out(preset.name)

    def pick(flag: Any, default: Any) -> Any:
        return default if flag is None else flag

    controls = preset.controls if args.controls is None else tuple(
        k.strip() for k in args.controls.split(",") if k.strip() and k.strip() != "none")
    cfg = SweepConfig(
        name=preset.name, out=out,
        base=SweepBase(data=data, model=preset.model, train=preset.train, search_defaults=preset.search_defaults,
                       replicates=pick(args.replicates, preset.replicates), search_seed=args.search_seed,
                       branch_points=tuple(pick(args.branch_points, preset.branch_points) or ()) or None,
                       cost=args.cost, latency=latency_settings(args)),
        controls=controls, permutations=pick(args.permutations, preset.permutations),
        space=preset.space, num_trials=pick(args.num_trials, preset.num_trials),
        concurrency=pick(args.concurrency, preset.concurrency),
        cpus_per_trial=pick(args.cpus_per_trial, preset.cpus_per_trial),
        gpus_per_trial=pick(args.gpus_per_trial, preset.gpus_per_trial), backend=args.backend,
        storage_path=args.storage_path, cache_dir=args.cache_dir, resume=args.resume is not None,
        resume_from=args.resume or None, max_failures=args.max_failures,
        optuna_storage=args.optuna_storage, warm_start=args.warm_start, time_budget_s=args.time_budget,
        mlflow_uri=args.mlflow,
        points=preset.points, num_cpus=args.num_cpus, local=args.local, report=not args.no_report,
        verbose=not args.quiet, plugins=tuple(args.plugin), allow_changes=args.allow_changes,
    )
    cfg.validate()
    return cfg


def main(preset: SweepPreset, smoke: SweepPreset, doc: str | None = None, argv: list[str] | None = None) -> int:
    """Parse flags, run the sweep, print where the results and report are. Exit 2 on a user error."""
    args = parser(preset, doc).parse_args(argv)
    try:
        cfg = build_config(smoke if args.smoke else preset, args)
        print(f"[sweep] {cfg.name}: run folder {Path(cfg.out).resolve()}", flush=True)
        outcome = run_sweep(cfg)
    except BranchsweepError as err:
        from branchsweep.sweep.redact import redact

        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 2
    print(f"[sweep] results: {outcome.results_path}", flush=True)
    if preset.export_best and outcome.report_dir is not None:
        export_best(Path(outcome.run_dir))
    return 0


def export_best(run_dir: Path) -> Path | None:
    """Export the searched front point (no baseline, no control tree) with the highest Δm to
    ``run_dir/best.onnx`` with ``branchsweep export`` and print the command that times it; a tree that cannot be exported is one
    warning line (the sweep's results stand either way). Returns the file, or None."""
    from branchsweep.cli import main as cli_main
    from branchsweep.runs import sweep_front

    try:
        front = sweep_front(run_dir)
    except BranchsweepError as err:
        print(f"[sweep] warning: no export ({err})", flush=True)
        return None
    control = front["baseline_kind"].notna() if "baseline_kind" in front.columns else False
    searched = front[~front["is_baseline"].fillna(False).astype(bool) & ~control]
    if searched.empty:
        print("[sweep] no searched tree is on the front: nothing to export", flush=True)
        return None
    point = int(searched["delta_m"].astype(float).idxmax()) + 1  # front points are numbered from 1 by MAdds
    out = run_dir / "best.onnx"
    label = searched.loc[point - 1, "label"]
    print(f"[sweep] exporting front point {point} ({label}, the searched tree with the highest Δm)", flush=True)
    trial = str(searched.loc[point - 1, "trial_id"])  # by id: the front is not computed again
    if cli_main(["export", str(run_dir), "--trial", trial, "--format", "onnx", "--out", str(out)]) != 0:
        print("[sweep] warning: the export failed (above); the sweep's results are complete", flush=True)
        return None
    print(f"[sweep] run it: branchsweep latency {out} --device cpu --batch 1 --threads 1", flush=True)
    return out
