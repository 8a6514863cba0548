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

from branchsweep.atomic import load_state, save_state
from branchsweep.config import TrainConfig
from branchsweep.data.base import MultiTaskData
from branchsweep.errors import ConfigError
from branchsweep.loop import NonFiniteLossError, Runtime, TrainStep, lr_schedule, to_floats
from branchsweep.network import BranchedNetwork
from branchsweep.tasks import Task

__all__ = ["CHECKPOINT_NAME", "NonFiniteLossError", "TrainResult", "evaluate_network", "load_checkpoint",
           "make_optimizer", "runtime_of", "train_network"]

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
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


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
    per_epoch = max(1, len(train_set) // cfg.batch_size)
    if cfg.epochs is not None:
        cfg = dataclasses.replace(cfg, iterations=max(1, round(cfg.epochs * per_epoch)))
    torch.manual_seed(cfg.seed)
    runtime.prepare(model).train()
    forward = torch.compile(model) if cfg.compile else model
    optimizer = make_optimizer(model, cfg)
    scheduler = lr_schedule(optimizer, cfg.lr_schedule, cfg.iterations, per_epoch, power=cfg.poly_power,
                            gamma=cfg.lr_gamma, every_epochs=cfg.lr_every_epochs)
    losses: list[float] = []
    start = 0
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if resume:
        if ckpt_path is None:
            raise ConfigError("resume needs an output directory holding a checkpoint")
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, losses = int(state["iteration"]), list(state["losses"])
        torch.set_rng_state(state["rng"])

    def save(iteration: int) -> None:
        save_state(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "iteration": iteration, "losses": losses,
                               "rng": torch.get_rng_state()})

    step = TrainStep([optimizer], tasks, runtime, schedulers=[scheduler], weights=weights)
    t0 = time.perf_counter()
    batches = runtime.batches(train_set, cfg.batch_size, cfg.seed, start)
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="train",
               disable=not cfg.progress, leave=False, mininterval=1.0)
    pending: list[torch.Tensor] = []
    parts: dict = {}
    for it in bar:
        loss, parts = step(forward, runtime.batch(next(batches)), f"at iteration {it}")
        pending.append(loss)
        done = it + 1
        checkpoint = ckpt_path is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0
        if checkpoint or done % runtime.sync_every == 0 or done == cfg.iterations:
            losses += torch.stack(pending).tolist()
            pending = []
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            if checkpoint:
                save(done)
            if on_step is not None:
                on_step(done, {"loss": losses[-1], "checkpoint": bool(checkpoint),
                               **{f"loss/{k}": v for k, v in to_floats(parts).items()}})
    bar.close()
    step.flush(f"before iteration {cfg.iterations}")
    if ckpt_path is not None:
        save(cfg.iterations)
    return TrainResult(cfg.iterations, losses, time.perf_counter() - t0, ckpt_path, to_floats(parts))


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
    result = {}
    for name, metric in metrics.items():
        for key, value in metric.compute().items():
            result[f"{name}/{key}"] = float(value) if value is not None and not math.isnan(value) else math.nan
    return result
