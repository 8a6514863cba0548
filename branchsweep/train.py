"""Retrain and evaluate a branched network (BMTAS supplement A defaults).

SGD (momentum 0.9, weight decay 1e-4, lr 0.005) with a poly schedule ``lr · (1 - it/iters)^0.9``,
per-task loss weights, and optionally the learning rate of each shared block divided by the number of
tasks sharing it (those blocks receive an update from every task). Training is seeded and resumable:
the batch order of every epoch is a function of ``(seed, epoch)``, and a checkpoint stores the model,
optimiser, schedule, RNG state and iteration, so a resumed run takes the same next step as an
uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from branchsweep.config import TrainConfig
from branchsweep.data.base import MultiTaskData
from branchsweep.errors import ConfigError
from branchsweep.network import BranchedNetwork
from branchsweep.tasks import Task

CHECKPOINT_NAME = "checkpoint.pt"


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite (the run cannot continue meaningfully)."""


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, where: str) -> None:
    """One weight update from ``loss`` (zero grads, backward, step, scheduler step).

    A NaN or infinite loss raises :class:`NonFiniteLossError` naming ``where`` before anything is
    updated: every training loop (retrain, BMTAS warm-up and weight steps) stops the same way, and a
    sweep records that trial as failed.
    """
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss is {float(loss.detach())} {where}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()


@dataclass
class TrainResult:
    iterations: int
    losses: list[float]
    wall_time_s: float
    checkpoint: Path | None = None
    task_losses: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available; an unavailable device is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return device


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def epoch_batches(
    dataset: Dataset, batch_size: int, seed: int, start_iteration: int = 0, num_workers: int = 0
) -> Iterator[dict]:
    """An endless stream of shuffled batches whose order depends only on ``(seed, epoch)``.

    Incomplete last batches are dropped (BatchNorm needs > 1 sample). Starting at ``start_iteration``
    skips exactly the batches an uninterrupted run would have consumed, without loading them.
    """
    n = len(dataset)
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ConfigError(f"batch size {batch_size} is larger than the training set ({n} samples)")
    epoch, offset = divmod(start_iteration, per_epoch)
    while True:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g)[offset * batch_size : per_epoch * batch_size].tolist()
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        # A loader-local generator: creating the iterator must not consume the global RNG (dropout,
        # augmentation), or a resumed run would diverge from an uninterrupted one.
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                            generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1))
        yield from loader
        epoch, offset = epoch + 1, 0


def multitask_loss(
    outputs: dict[str, torch.Tensor], batch: dict, tasks: Sequence[Task], weights: dict[str, float]
) -> tuple[torch.Tensor, dict[str, float]]:
    """``Σ_t w_t · L_t(pred_t, label_t)`` and the unweighted per-task losses."""
    total = 0.0
    parts: dict[str, float] = {}
    for task in tasks:
        loss = task.loss(outputs[task.name], batch[task.name])
        parts[task.name] = float(loss.detach())
        total = total + weights.get(task.name, task.weight) * loss
    return total, parts  # type: ignore[return-value]


def make_optimizer(model: BranchedNetwork, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = model.parameter_groups(cfg.lr, cfg.divide_lr_by_sharing)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def poly_schedule(optimizer: torch.optim.Optimizer, iterations: int, power: float):
    """The 'poly' policy: each group's lr times ``(1 - it / iterations) ** power``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: max(0.0, 1.0 - it / iterations) ** power
    )


def save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, iteration: int, losses: list[float]) -> Path:
    """Write atomically (a killed run never leaves a half-written checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "iteration": iteration,
            "losses": losses,
            "rng": torch.get_rng_state(),
        },
        tmp,
    )
    tmp.replace(path)
    return path


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint not found: {path}") from None
    except Exception as err:
        raise ConfigError(f"cannot read checkpoint {path}: {err}") from None


def train_network(
    model: BranchedNetwork,
    data: MultiTaskData,
    tasks: Sequence[Task],
    cfg: TrainConfig,
    out_dir: Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data``'s train split for ``cfg.iterations`` iterations.

    With ``out_dir``, a checkpoint is written every ``cfg.checkpoint_every`` iterations and at the
    end; ``resume`` continues from ``out_dir/checkpoint.pt``. ``on_step(iteration, info)`` is called
    after every step (for progress reporting by callers such as Ray trials).
    """
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    scheduler = poly_schedule(optimizer, cfg.iterations, cfg.poly_power)
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
    weights = dict(cfg.loss_weights)
    unknown = sorted(set(weights) - {t.name for t in tasks})
    if unknown:
        raise ConfigError(f"loss weight given for unknown task {unknown[0]!r}")
    t0 = time.perf_counter()
    batches = epoch_batches(data.split("train", train=True), cfg.batch_size, cfg.seed, start)
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="train",
               disable=not cfg.progress, leave=False, mininterval=1.0)
    parts: dict[str, float] = {}
    for it in bar:
        batch = to_device(next(batches), device)
        outputs = model(batch["image"])
        loss, parts = multitask_loss(outputs, batch, tasks, weights)
        optimizer_step(loss, optimizer, scheduler, f"at iteration {it} (task losses: {parts})")
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        if ckpt_path is not None and cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0:
            save_checkpoint(ckpt_path, model, optimizer, scheduler, it + 1, losses)
        if on_step is not None:
            on_step(it + 1, {"loss": losses[-1], **{f"loss/{k}": v for k, v in parts.items()}})
    bar.close()
    if ckpt_path is not None:
        save_checkpoint(ckpt_path, model, optimizer, scheduler, cfg.iterations, losses)
    return TrainResult(cfg.iterations, losses, time.perf_counter() - t0, ckpt_path, parts)


@torch.no_grad()
def evaluate_network(
    model: nn.Module, data: MultiTaskData, tasks: Sequence[Task], cfg: TrainConfig, split: str = "val"
) -> dict[str, float]:
    """Every task's metrics over the whole ``split`` (accumulated, not averaged per batch).

    Returns ``{"<task>/<metric>": value}``.
    """
    device = resolve_device(cfg.device)
    model.to(device).eval()
    metrics = {t.name: t.make_metric() for t in tasks}
    loader = DataLoader(data.split(split, train=False), batch_size=cfg.eval_batch_size, shuffle=False)
    for batch in tqdm(loader, desc=f"evaluate {split}", disable=not cfg.progress, leave=False, mininterval=1.0):
        batch = to_device(batch, device)
        outputs = model(batch["image"])
        for task in tasks:
            metrics[task.name].update(outputs[task.name], batch[task.name])
    result = {}
    for name, metric in metrics.items():
        for key, value in metric.compute().items():
            result[f"{name}/{key}"] = float(value) if value is not None and not math.isnan(value) else float("nan")
    return result
