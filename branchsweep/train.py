"""Retrain and evaluate a branched network (BMTAS supplement A defaults).

SGD (momentum 0.9, weight decay 1e-4, lr 0.005) with a poly schedule ``lr · (1 - it/iters)^0.9``
(or another named decay, e.g. Learning to Branch's step decay), per-task loss weights, and optionally
the learning rate of each shared block divided by the number of tasks sharing it (those blocks receive
an update from every task; a BMTAS convention that Learning-to-Branch trials turn off). Training is seeded and resumable:
the batch order of every epoch is a function of ``(seed, epoch)``, and a checkpoint stores the model,
optimiser, schedule, RNG state and iteration, so a resumed run takes the same next step as an
uninterrupted one. The step itself is :class:`branchsweep.loop.TrainStep`, shared with the searches.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from branchsweep.atomic import load_state
from branchsweep.config import TrainConfig
from branchsweep.data.base import MultiTaskData
from branchsweep.errors import ConfigError
from branchsweep.loop import (
    Checkpoint,
    NonFiniteLossError,
    ResumableLoop,
    Runtime,
    TrainStep,
    lr_schedule,
    to_floats,
)
from branchsweep.network import BranchedNetwork
from branchsweep.tasks import Task

__all__ = ["CHECKPOINT_NAME", "NonFiniteLossError", "TrainResult", "evaluate_network", "load_checkpoint",
           "make_optimizer", "metric_values", "retrain_checkpoint", "runtime_of", "train_network"]

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    iterations: int
    losses: list[float]
    wall_time_s: float
    checkpoint: Path | None = None
    task_losses: dict[str, float] = field(default_factory=dict)


def runtime_of(cfg: TrainConfig, data: MultiTaskData) -> Runtime:
    """The :class:`~branchsweep.loop.Runtime` of a retrain or evaluation: ``cfg``'s device, AMP and
    memory format, ``data``'s loader workers."""
    return Runtime(cfg.device, cfg.amp, cfg.channels_last, data.num_workers)


def make_optimizer(model: BranchedNetwork, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or Adam over ``model``'s parameter groups (shared blocks' lr divided by their task count when
    ``cfg.divide_lr_by_sharing`` is true or None: a trial resolves None to its method's convention)."""
    groups = model.parameter_groups(cfg.lr, cfg.divide_lr_by_sharing is not False)
    # The multi-tensor (foreach) update: PyTorch's default on CUDA only, the same arithmetic on a CPU
    # at a third to half of the per-step cost for the many small tensors of a branched network.
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)


def load_checkpoint(path: Path) -> dict:
    """A retrain checkpoint (``model``, ``optimizer``, ``scheduler``, ``iteration``, ``losses``, ``rng``)."""
    return load_state(path, "checkpoint")


def train_network(
    model: BranchedNetwork,
    data: MultiTaskData,
    tasks: Sequence[Task],
    cfg: TrainConfig,
    out_dir: Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data``'s train split for ``cfg.iterations`` iterations (``cfg.epochs`` epochs
    when set), the lr following ``cfg.lr_schedule``.

    With ``out_dir``, a checkpoint is written every ``cfg.checkpoint_every`` iterations and at the
    end; ``resume`` continues from ``out_dir/checkpoint.pt``. ``on_step(iteration, info)`` is called
    on every host synchronisation (every step on a CPU) for progress reporting by callers such as Ray
    trials; ``info["checkpoint"]`` is True right after a checkpoint was written (a Ray trial then
    persists it).
    """
    weights = dict(cfg.loss_weights)
    unknown = sorted(set(weights) - {t.name for t in tasks})
    if unknown:
        raise ConfigError(f"loss weight given for unknown task {unknown[0]!r}")
    runtime = runtime_of(cfg, data)
    train_set = data.split("train", train=True)
    per_epoch = data.iterations_per_epoch(cfg.batch_size, len(train_set))  # type: ignore[arg-type]
    if cfg.epochs is not None:
        cfg = dataclasses.replace(cfg, iterations=max(1, round(cfg.epochs * per_epoch)))
    torch.manual_seed(cfg.seed)
    runtime.prepare(model).train()
    forward = torch.compile(model) if cfg.compile else model
    optimizer = make_optimizer(model, cfg)
    scheduler = lr_schedule(optimizer, cfg.lr_schedule, cfg.iterations, per_epoch, power=cfg.poly_power,
                            gamma=cfg.lr_gamma, every_epochs=cfg.lr_every_epochs)
    losses: list[float] = []
    pending: list[torch.Tensor] = []
    start = 0
    ckpt = retrain_checkpoint(out_dir, model, tasks, cfg) if out_dir is not None else None
    if resume:
        if ckpt is None:
            raise ConfigError("resume needs an output directory holding a checkpoint")
        state = ckpt.load()
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, losses = int(state["iteration"]), list(state["losses"])
        torch.set_rng_state(state["rng"])

    def save(iteration: int) -> None:
        ckpt.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),  # type: ignore[union-attr]
                   "scheduler": scheduler.state_dict(), "iteration": iteration, "losses": sync_losses(),
                   "rng": torch.get_rng_state()})

    def sync_losses() -> list[float]:
        if pending:
            losses.extend(torch.stack(pending).tolist())
            pending.clear()
        return losses

    step = TrainStep([optimizer], tasks, runtime, schedulers=[scheduler], weights=weights)
    batches = runtime.batches(train_set, cfg.batch_size, cfg.seed, start)
    parts: dict = {}

    def one_step(it: int) -> None:
        nonlocal parts
        loss, parts = step(forward, runtime.batch(next(batches)), f"at iteration {it}")
        pending.append(loss)

    def report(done: int) -> dict:
        return {"loss": sync_losses()[-1], **{f"loss/{k}": v for k, v in parts.items()}}

    t0 = time.perf_counter()
    loop = ResumableLoop(cfg.iterations, save=save if ckpt is not None else None, desc="train",
                         progress=cfg.progress, checkpoint_every=cfg.checkpoint_every,
                         report_every=runtime.sync_every, on_step=on_step, report=report,
                         flush=lambda end: (step.flush(f"before iteration {end}"), sync_losses()))
    loop.run(start, one_step)
    return TrainResult(cfg.iterations, sync_losses(), time.perf_counter() - t0, ckpt.path if ckpt else None,
                       to_floats(parts))


def retrain_checkpoint(out_dir: Path, model: nn.Module, tasks: Sequence[Task], cfg: TrainConfig) -> Checkpoint:
    """The retrain checkpoint in ``out_dir``: it belongs to one tree, task list, seed and recipe length."""
    config = getattr(model, "config", None)
    return Checkpoint(Path(out_dir) / CHECKPOINT_NAME, "retrain", {
        "tasks": [t.name for t in tasks], "arch": config.arch_hash() if config is not None else None,
        "seed": cfg.seed, "iterations": cfg.iterations, "batch_size": cfg.batch_size})


@torch.no_grad()
def evaluate_network(
    model: nn.Module, data: MultiTaskData, tasks: Sequence[Task], cfg: TrainConfig, split: str = "val"
) -> dict[str, float]:
    """Every task's metrics over the whole ``split`` (accumulated, not averaged per batch).

    Returns ``{"<task>/<metric>": value}`` (NaN where a metric is undefined).
    """
    runtime = runtime_of(cfg, data)
    runtime.prepare(model).eval()
    metrics = {t.name: t.make_metric() for t in tasks}
    loader = runtime.loader(data.split(split, train=False), cfg.eval_batch_size)
    for batch in tqdm(loader, desc=f"evaluate {split}", disable=not cfg.progress, leave=False, mininterval=1.0):
        batch = runtime.batch(batch)
        with runtime.autocast():
            outputs = model(batch["image"])
        for task in tasks:
            pred = outputs[task.name]
            metrics[task.name].update(pred.float() if runtime.amp != "off" else pred, batch[task.name])
    return metric_values(metrics)


def metric_values(metrics: dict) -> dict[str, float]:
    """``{"<task>/<metric>": value}`` of accumulated task metrics (NaN where undefined)."""
    result = {}
    for name, metric in metrics.items():
        for key, value in metric.compute().items():
            result[f"{name}/{key}"] = float(value) if value is not None and not math.isnan(value) else math.nan
    return result
