"""A trained branched network back from disk: a retrain folder or one trial of a sweep folder.

* a **retrain folder** (``branchsweep train --out DIR``): ``run.json`` (data, model, train, arch) and
  ``checkpoint.pt``;
* a **sweep folder** (``results.parquet`` and ``sweep.json``): a trial chosen by its ``trial_id`` or as
  the K-th point of the front (1 = fewest MAdds, as ``branchsweep report`` computes the front), and one
  of its retrain seeds (default: the first). Every trial of a sweep shares the data and backbone of
  ``sweep.json``; the tree is the row's ``arch_json``. The retrain checkpoint is looked for in
  ``trials/<id>/retrain/seed<S>/`` and in the trials' Ray checkpoints (``tune/``, ``ray_train/``)
  whose ``result.json`` lists the retrain key: a trial that reused a cached retrain finds the
  checkpoint of the trial that trained it. Each candidate is checked against the tree, the seed and
  the recipe's iteration count before it is used.

:func:`load_run` returns the network in eval mode on the CPU, a batch of the validation split and
JSON-friendly metadata (what :mod:`branchsweep.export` writes into its sidecar file).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from branchsweep.arch import BranchConfig
from branchsweep.config import DataConfig, ModelConfig, TrainConfig, from_mapping, to_dict
from branchsweep.errors import ConfigError

RUN_FILE = "run.json"
#: Validation samples in the example batch (fewer when the split is smaller).
EXAMPLE_BATCH = 8


@dataclass
class LoadedRun:
    """A rebuilt network with trained weights and what it came from."""

    model: torch.nn.Module
    example: torch.Tensor
    spec: Any
    tasks: list
    config: BranchConfig
    data: DataConfig
    model_config: ModelConfig
    metadata: dict[str, Any]


def read_run_info(folder: Path) -> dict[str, Any]:
    """``run.json`` of a retrain folder; a one-line ConfigError when it is missing or malformed."""
    run_file = Path(folder) / RUN_FILE
    try:
        return json.loads(run_file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{run_file} not found: is {folder} a folder written by `branchsweep train --out`?") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{run_file}: malformed JSON ({err.msg})") from None


def build_network(data_cfg: DataConfig, model_cfg: ModelConfig, config: BranchConfig, seed: int = 0,
                  root: str | None = None):
    """``(data, tasks, spec, network)`` for ``config`` with seeded random weights.

    ImageNet initialisation is skipped (a checkpoint replaces every weight, and latency does not
    depend on them), so nothing is downloaded.
    """
    from branchsweep.data import create_data
    from branchsweep.factory import build_model, build_spec

    if root:
        data_cfg = dataclasses.replace(data_cfg, root=root)
    data = create_data(data_cfg)
    tasks = data.select_tasks(data_cfg.tasks)
    spec = build_spec(dataclasses.replace(model_cfg, pretrained=None), data)
    config.check_tasks([t.name for t in tasks], spec.num_layers)
    return data, tasks, spec, build_model(spec, tasks, config, seed)


def validation_batch(data, batch: int = EXAMPLE_BATCH) -> torch.Tensor:
    """The inputs of the first ``batch`` samples of the validation split, stacked."""
    split = data.split("val", train=False)
    n = min(batch, len(split))
    if n == 0:
        raise ConfigError("the validation split is empty: nothing to check the export on")
    return torch.stack([split[i]["image"] for i in range(n)])


def load_run(path: str | Path, trial: str | None = None, front_point: int | None = None, seed: int | None = None,
             root: str | None = None, batch: int = EXAMPLE_BATCH) -> LoadedRun:
    """The trained network of a retrain folder, or of a sweep trial (``trial`` id or ``front_point`` K,
    1-based by MAdds; retrain ``seed``, default the trial's first). ``root``: the data root, if it moved."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder (a retrain folder of `branchsweep train --out` or a sweep folder)")
    if (path / RUN_FILE).is_file():
        if trial is not None or front_point is not None or seed is not None:
            raise ConfigError(f"{path} is a retrain folder: --trial, --front-point and --seed select a trial of a sweep")
        return _retrain_folder(path, root, batch)
    from analysis.tables import RESULTS_NAMES

    if any((path / name).is_file() for name in RESULTS_NAMES):
        return _sweep_trial(path, trial, front_point, seed, root, batch)
    raise ConfigError(f"{path} is neither a retrain folder ({RUN_FILE}) nor a sweep folder (results.parquet)")


def _checkpoint_state(path: Path, arch_hash: str, seed: int | None = None) -> dict:
    """The checkpoint's state, checked to be a finished retrain of ``arch_hash`` (and ``seed``)."""
    from branchsweep.loop import SETTINGS_KEY
    from branchsweep.train import load_checkpoint

    state = load_checkpoint(path)
    settings = state.get(SETTINGS_KEY) or {}
    if "model" not in state:
        raise ConfigError(f"{path} is not a retrain checkpoint (no model weights)")
    if settings.get("arch") not in (None, arch_hash):
        raise ConfigError(f"{path} holds tree {settings['arch']}, the run's tree is {arch_hash}")
    if seed is not None and settings.get("seed") not in (None, seed):
        raise ConfigError(f"{path} was trained with seed {settings['seed']}, not {seed}")
    iterations = settings.get("iterations")
    if iterations is not None and int(state.get("iteration", iterations)) < int(iterations):
        raise ConfigError(f"{path} stopped at iteration {state['iteration']} of {iterations}: the retrain did not finish")
    return state


def _finish(data, tasks, spec, model, config: BranchConfig, state: dict, batch: int, meta: dict) -> LoadedRun:
    from branchsweep.madds import madds_table

    model.load_state_dict(state["model"])
    model.eval()
    example = validation_batch(data, batch)
    meta = {**meta, "backbone": spec.name, "tasks": [t.name for t in tasks], "arch_hash": config.arch_hash(),
            "branch_config": config.to_dict(), "madds": int(madds_table(spec, tasks).madds(config)),
            "input_shape": list(spec.input_shape)}
    return LoadedRun(model, example, spec, list(tasks), config, meta.pop("_data"), meta.pop("_model"), meta)


def _retrain_folder(folder: Path, root: str | None, batch: int) -> LoadedRun:
    from branchsweep.train import CHECKPOINT_NAME

    info = read_run_info(folder)
    try:
        dcfg = from_mapping(DataConfig, info["data"])
        mcfg = from_mapping(ModelConfig, info["model"])
        seed = int(from_mapping(TrainConfig, info["train"]).seed)
        config = BranchConfig.from_dict(info["arch"], source=str(folder / RUN_FILE))
    except KeyError as err:
        raise ConfigError(f"{folder / RUN_FILE}: no {err.args[0]!r} entry") from None
    checkpoint = folder / CHECKPOINT_NAME
    if not checkpoint.is_file():
        raise ConfigError(f"{folder} has no {CHECKPOINT_NAME}: the run was not trained (or not with --out)")
    state = _checkpoint_state(checkpoint, config.arch_hash())
    data, tasks, spec, model = build_network(dcfg, mcfg, config, seed, root)
    meta = {"source": str(folder.resolve()), "kind": "retrain", "checkpoint": str(checkpoint.resolve()),
            "seed": seed, "data": to_dict(dcfg), "model": to_dict(mcfg), "_data": dcfg, "_model": mcfg}
    return _finish(data, tasks, spec, model, config, state, batch, meta)


# ------------------------------------------------------------------------------------------- sweeps
def _results(run_dir: Path):
    import analysis

    try:
        return analysis.load_results(analysis.find_results_file(run_dir))
    except analysis.AnalysisError as err:
        raise ConfigError(str(err)) from None


def sweep_report(run_dir: Path):
    """The sweep's :class:`analysis.Report` (Δm and the front over the sweep's recorded ``--cost``),
    computed as ``branchsweep report RUN_DIR`` does."""
    import analysis
    from branchsweep.commands.report import sweep_cost
    from branchsweep.tasks import metric_directions, primary_metrics

    try:
        primary, recorded = analysis.read_metric_spec(run_dir)
        return analysis.build_report(_results(run_dir), metrics=primary, directions=recorded,
                                     known=metric_directions(), primaries=primary_metrics(),
                                     cost=sweep_cost(run_dir))
    except analysis.AnalysisError as err:
        raise ConfigError(f"{run_dir}: cannot compute the front ({err})") from None


def sweep_front(run_dir: Path):
    """The sweep's front rows sorted by MAdds (:func:`sweep_report`)."""
    return sweep_report(run_dir).front.reset_index(drop=True)


def _pick_row(run_dir: Path, trial: str | None, front_point: int | None):
    if (trial is None) == (front_point is None):
        raise ConfigError(f"{run_dir} is a sweep folder: choose a trial with --trial ID or --front-point K (not both)")
    if trial is not None:
        results = _results(run_dir)
        rows = results[results["trial_id"].astype(str) == str(trial)]
        if rows.empty:
            ids = ", ".join(results["trial_id"].astype(str).head(8))
            raise ConfigError(f"no trial {trial!r} in {run_dir} (trial ids: {ids}{', …' if len(results) > 8 else ''})")
        row = rows.iloc[0]
    else:
        front = sweep_front(run_dir)
        if not 1 <= front_point <= len(front):
            raise ConfigError(f"--front-point {front_point} is out of range: the front of {run_dir} has "
                              f"{len(front)} point(s), numbered 1..{len(front)} by MAdds")
        row = front.iloc[front_point - 1]
    if str(row.get("status", "ok")) != "ok":
        raise ConfigError(f"trial {row['trial_id']} ({row['label']}) failed: it has no retrained network")
    return row


def _json_field(row, name: str, default: Any) -> Any:
    value = row.get(name)
    if value is None or (isinstance(value, float) and value != value):
        return default
    return json.loads(value) if isinstance(value, str) else value


def find_checkpoint(run_dir: Path, trial_id: str, key: str | None, seed: int) -> Path | None:
    """The retrain checkpoint of retrain ``key`` and ``seed``: the trial's own folder first, then any
    trial folder or Ray checkpoint under ``run_dir`` whose ``result.json`` lists ``key``."""
    from branchsweep.train import CHECKPOINT_NAME

    tail = Path("retrain") / f"seed{seed}" / CHECKPOINT_NAME
    own = run_dir / "trials" / str(trial_id) / tail
    if own.is_file():
        return own
    if key is None:
        return None
    found = []
    for ckpt in run_dir.rglob(str(tail)):
        result = ckpt.parents[2] / "result.json"
        try:
            keys = _json_field(json.loads(result.read_text()), "retrain_keys", [])
        except (OSError, ValueError):
            continue
        if key in keys:
            found.append(ckpt)
    # The newest snapshot (a retried trial may leave an older one beside it).
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _sweep_trial(run_dir: Path, trial: str | None, front_point: int | None, seed: int | None, root: str | None,
                 batch: int) -> LoadedRun:
    from branchsweep.commands.report import sweep_recipe

    row = _pick_row(run_dir, trial, front_point)
    recipe = sweep_recipe(run_dir)
    if recipe is None:
        raise ConfigError(f"{run_dir} has no readable sweep.json: the data and backbone of its trials are unknown")
    dcfg, mcfg, _ = recipe
    config = BranchConfig.from_json(str(row["arch_json"]), source=f"trial {row['trial_id']}")
    seeds = [int(r["retrain_seed"]) for r in _json_field(row, "replicates_json", [])]
    keys = _json_field(row, "retrain_keys", [row.get("retrain_key")])
    if seed is None:
        seed = seeds[0] if seeds else 0
    if seeds and seed not in seeds:
        raise ConfigError(f"trial {row['trial_id']} was retrained with seed(s) {', '.join(map(str, seeds))}, not {seed}")
    key = keys[seeds.index(seed)] if seeds and len(keys) == len(seeds) else keys[0]
    trial_id = str(row["trial_id"])
    checkpoint = find_checkpoint(run_dir, trial_id, key, seed)
    if checkpoint is None:
        raise ConfigError(f"no retrain checkpoint of trial {trial_id} (seed {seed}) under {run_dir}: looked in "
                          f"trials/{trial_id}/retrain/seed{seed}/ and the Ray checkpoints (a sweep with "
                          "--storage-path keeps them under its storage prefix: pass that folder)")
    state = _checkpoint_state(checkpoint, config.arch_hash(), seed)
    data, tasks, spec, model = build_network(dcfg, mcfg, config, seed, root)
    meta = {"source": str(run_dir.resolve()), "kind": "sweep", "trial_id": trial_id, "label": str(row["label"]),
            "method": str(row.get("method", "")), "front_point": front_point, "seed": seed,
            "checkpoint": str(checkpoint.resolve()), "data": to_dict(dcfg), "model": to_dict(mcfg),
            "_data": dcfg, "_model": mcfg}
    if "delta_m" in row and row["delta_m"] == row["delta_m"]:
        meta["delta_m"] = float(row["delta_m"])
    return _finish(data, tasks, spec, model, config, state, batch, meta)
