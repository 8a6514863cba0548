"""Fused retraining: K independent networks of one backbone trained as one wide network.

Seeds are replicates, so every architecture is retrained R times, and the networks of the embedded
benchmark are so small that one of them leaves most of a CPU core (and nearly all of a GPU) idle.
Here K :class:`~branchsweep.network.BranchedNetwork` s — the R seeds of one tree, or different trees
of the same backbone and tasks — take one forward and one backward per step (horizontal fusion, as in
HFTA, Wang et al., MLSys 2021), with the kernels of :mod:`branchsweep.fused`:

* the blocks of layer ``l`` of all K networks (one per task group of each tree) are copies of one
  layer, evaluated as one wide call: block ``b`` reads channel block ``b`` of a *wide* tensor
  ``[B, N·C, …]``, gathered from its parent block's channels; convolutions become grouped ones,
  BatchNorm keeps per-block statistics over that network's own batch;
* network ``j`` reads its own images (channel block ``j`` of the wide input ``[B, K·3, H, W]``): its
  own data order, from its seed; its own global-RNG state for data augmentation, swapped in around
  its batch; its own initialisation (each network is built on its own, as its seed gives it alone);
* the loss is ``Σ_j L_j`` (the networks share no parameter, so each gets exactly its own gradient);
  each network keeps its own optimiser, learning-rate schedule, checkpoint (the format of
  :func:`branchsweep.train.train_network`, interchangeable with it) and metrics.

A fused run and K separate runs agree to floating-point summation order (tested). Networks fuse when
they share backbone, tasks and recipe (seeds aside) and start at the same iteration; settings that
cannot fuse train one at a time, and the log says why once: ``compile``, ``amp="fp16"`` (one gradient
scaler would couple the networks), random operations in training (dropout masks would come from one
random stream). Module types without a fused form run copy by copy inside the fused step (logged
once): still exact, only slower.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from branchsweep import fused
from branchsweep.config import TrainConfig
from branchsweep.data.base import MultiTaskData
from branchsweep.errors import ConfigError
from branchsweep.loop import ResumableLoop, TrainStep, lr_schedule, to_floats, weighted_loss
from branchsweep.network import BranchedNetwork
from branchsweep.tasks import Task
from branchsweep.train import (
    CHECKPOINT_NAME,
    TrainResult,
    load_checkpoint,
    make_optimizer,
    metric_values,
    retrain_checkpoint,
    runtime_of,
    train_network,
)

log = logging.getLogger(__name__)

__all__ = ["FusedNetworks", "Replicate", "cannot_fuse", "evaluate_networks", "train_replicates"]


@dataclass
class Replicate:
    """One network to retrain: its model (built from its seed), its settings (``cfg.seed`` included),
    where its checkpoint goes, whether to resume from it, and its progress callback."""

    model: BranchedNetwork
    cfg: TrainConfig
    out_dir: Path | None = None
    resume: bool = False
    on_step: Callable[[int, dict], None] | None = None


# ----------------------------------------------------------------------------------- the wide network
class FusedNetworks:
    """K :class:`BranchedNetwork` s of one backbone and task list, evaluated as one wide network.

    ``self(images)`` takes the K networks' images side by side along dimension 1 (``[B, K·3, H, W]``:
    network ``j`` reads block ``j``) and returns each network's outputs (``{task: tensor}`` per
    network); ``self(images, shared=True)`` gives every network the same ``images`` (evaluation).
    """

    def __init__(self, models: Sequence[BranchedNetwork]) -> None:
        if not models:
            raise ValueError("FusedNetworks needs at least one network")
        first = models[0]
        for m in models[1:]:
            if m.task_names != first.task_names or m.spec.layer_names != first.spec.layer_names \
                    or m.spec.cache_key() != first.spec.cache_key():
                raise ConfigError("fused networks must share backbone and tasks")
        self.models = list(models)
        self.task_names = list(first.task_names)
        self.skip_layers = tuple(first.spec.skip_layers)
        k = len(models)
        # index[l][(j, g)]: position of network j's group-g block among layer l's blocks.
        index: list[dict[tuple[int, int], int]] = []
        self.layers: list[tuple[list[torch.nn.Module], list[int]]] = []
        for layer in range(first.config.num_layers):
            mods, parents, pos = [], [], {}
            for j, m in enumerate(models):
                for g, block in enumerate(m.blocks[layer]):
                    pos[(j, g)] = len(mods)
                    mods.append(block)
                    parents.append(j if layer == 0 else index[layer - 1][(j, m.config.parent_group(layer, g))])
            index.append(pos)
            self.layers.append((mods, parents))
        last = first.config.num_layers - 1
        self.leaves = [[index[last][(j, m.config.group_of(last, t))] for j, m in enumerate(models)]
                       for t in range(len(self.task_names))]
        self.skips = {s: [[index[s][(j, m.config.group_of(s, t))] for j, m in enumerate(models)]
                          for t in range(len(self.task_names))] for s in self.skip_layers}
        self.k = k

    def unsupported(self) -> list[str]:
        """Module types of these networks that run copy by copy (no fused form)."""
        m = self.models[0]
        return sorted({name for part in (m.stem, m.blocks, m.heads) for name in fused.unsupported(part)})

    def __call__(self, images: torch.Tensor, shared: bool = False) -> list[dict[str, torch.Tensor]]:
        k = self.k
        out_size = tuple(images.shape[2:]) if images.dim() == 4 else None
        value = fused.run([m.stem for m in self.models], (images, shared))
        count = k  # blocks in ``value`` (network j's stem output is block j)
        kept: dict[int, tuple[torch.Tensor, int]] = {}
        for layer, (mods, parents) in enumerate(self.layers):
            x, is_shared = value
            if not is_shared:
                x = _gather(x, count, parents)
            value = fused.run(mods, (x, is_shared))
            count = len(mods)
            if layer in self.skips:
                kept[layer] = (fused.as_wide(value, count), count)
        final = fused.as_wide(value, count)
        outputs: list[dict[str, torch.Tensor]] = [{} for _ in range(k)]
        for t, name in enumerate(self.task_names):
            skips = [_gather(kept[s][0], kept[s][1], self.skips[s][t]) for s in self.skip_layers]
            y = fused.run_heads([m.heads[name] for m in self.models], _gather(final, count, self.leaves[t]),
                                skips, out_size)
            for j, part in enumerate(fused.split(y, k)):
                outputs[j][name] = part
        return outputs

    def train(self, mode: bool = True) -> FusedNetworks:
        for m in self.models:
            m.train(mode)
        return self


def _gather(x: torch.Tensor, count: int, index: Sequence[int]) -> torch.Tensor:
    """The wide tensor whose block ``i`` is block ``index[i]`` of ``x`` (``count`` blocks)."""
    if list(index) == list(range(count)):
        return x
    return x.unflatten(1, (count, -1))[:, list(index)].flatten(1, 2)


def fused_loss(outputs: Sequence[Mapping[str, torch.Tensor]], batch: Mapping[str, Any], tasks: Sequence,
               weights: Mapping[str, float]) -> tuple[torch.Tensor, dict]:
    """``Σ_j L_j`` over the K networks (``batch["members"][j]``: network ``j``'s labels); parts:
    ``{j: (L_j, {task: loss})}``, detached."""
    total: Any = 0.0
    parts: dict[int, tuple[torch.Tensor, dict]] = {}
    for j, (out, labels) in enumerate(zip(outputs, batch["members"])):
        loss, per_task = weighted_loss(out, labels, tasks, weights)
        parts[j] = (loss.detach(), per_task)
        total = total + loss
    return total, parts


# ----------------------------------------------------------------------------------- who can fuse
def cannot_fuse(replicate: Replicate) -> str | None:
    """Why ``replicate`` must train on its own (None: it can fuse)."""
    cfg = replicate.cfg
    if not isinstance(replicate.model, BranchedNetwork):
        return "not a BranchedNetwork"
    if cfg.compile:
        return "--compile (torch.compile of one network)"
    if cfg.amp == "fp16":
        return "--amp fp16 (one gradient scaler would couple the networks)"
    if fused.random_ops(replicate.model):
        return "random operations in training (dropout): their masks would come from one random stream"
    return None


def _recipe(cfg: TrainConfig) -> TrainConfig:
    """What fused networks must share: the recipe without the seed and the progress display."""
    return dataclasses.replace(cfg, seed=0, progress=False)


class _Batches:
    """Network ``j``'s batch stream, with its own global-RNG state swapped in while a batch is made
    (data augmentation draws from the global RNG, as in a run of its own)."""

    def __init__(self, stream: Iterator[dict], rng: torch.Tensor) -> None:
        self.stream, self.rng = stream, rng

    def next(self) -> dict:
        outer = torch.get_rng_state()
        torch.set_rng_state(self.rng)
        try:
            return next(self.stream)
        finally:
            self.rng = torch.get_rng_state()
            torch.set_rng_state(outer)


# ----------------------------------------------------------------------------------- training
def _train_fused(group: Sequence[Replicate], data: MultiTaskData, tasks: Sequence[Task]) -> list[TrainResult]:
    """Train ``group`` (fusable, same recipe, same start) as one wide network."""
    cfg = group[0].cfg
    weights = dict(cfg.loss_weights)
    runtime = runtime_of(cfg, data)
    train_set = data.split("train", train=True)
    per_epoch = data.iterations_per_epoch(cfg.batch_size, len(train_set))  # type: ignore[arg-type]
    if cfg.epochs is not None:
        group = [dataclasses.replace(r, cfg=dataclasses.replace(r.cfg, iterations=max(1, round(cfg.epochs * per_epoch))))
                 for r in group]
        cfg = group[0].cfg
    models = [runtime.prepare(r.model).train() for r in group]
    optimizers = [make_optimizer(m, r.cfg) for m, r in zip(models, group)]
    schedulers = [lr_schedule(o, cfg.lr_schedule, cfg.iterations, per_epoch, power=cfg.poly_power, gamma=cfg.lr_gamma,
                              every_epochs=cfg.lr_every_epochs) for o in optimizers]
    ckpts = [retrain_checkpoint(r.out_dir, m, tasks, r.cfg) if r.out_dir is not None else None
             for r, m in zip(group, models)]
    losses: list[list[float]] = [[] for _ in group]
    rngs = [torch.Generator().manual_seed(r.cfg.seed).get_state() for r in group]
    start = 0
    for j, r in enumerate(group):
        if r.resume:
            if ckpts[j] is None:
                raise ConfigError("resume needs an output directory holding a checkpoint")
            state = ckpts[j].load()  # type: ignore[union-attr]
            models[j].load_state_dict(state["model"])
            optimizers[j].load_state_dict(state["optimizer"])
            schedulers[j].load_state_dict(state["scheduler"])
            start, losses[j], rngs[j] = int(state["iteration"]), list(state["losses"]), state["rng"]
    streams = [_Batches(runtime.batches(train_set, cfg.batch_size, r.cfg.seed, start), rng)
               for r, rng in zip(group, rngs)]
    net = FusedNetworks(models)
    seeds = ", ".join(str(r.cfg.seed) for r in group)
    step = TrainStep(optimizers, tasks, runtime, schedulers=schedulers, weights=weights, loss=fused_loss)
    pending: list[torch.Tensor] = []
    parts: dict = {}

    def one_step(it: int) -> None:
        nonlocal parts
        batches = [s.next() for s in streams]
        batch = runtime.batch({"image": torch.cat([b["image"] for b in batches], dim=1)})
        batch["members"] = [runtime.batch({k: v for k, v in b.items() if k != "image"}) for b in batches]
        _, parts = step(net, batch, f"at iteration {it} (fused networks of seeds {seeds})")
        pending.append(torch.stack([parts[j][0] for j in range(len(group))]))

    def sync() -> None:
        if pending:
            for j, values in enumerate(torch.stack(pending).t().tolist()):
                losses[j].extend(values)
            pending.clear()

    def save(iteration: int) -> None:
        sync()
        for j, ckpt in enumerate(ckpts):
            if ckpt is not None:
                ckpt.save({"model": models[j].state_dict(), "optimizer": optimizers[j].state_dict(),
                           "scheduler": schedulers[j].state_dict(), "iteration": iteration, "losses": losses[j],
                           "rng": streams[j].rng})

    def report(done: int) -> dict:
        sync()
        return {"loss": sum(row[-1] for row in losses) / len(losses)}

    def on_step(done: int, info: dict) -> None:
        sync()
        for j, r in enumerate(group):
            if r.on_step is not None:
                r.on_step(done, {"loss": losses[j][-1], "checkpoint": info["checkpoint"],
                                 **{f"loss/{k}": v for k, v in to_floats(parts[j][1]).items()}})

    t0 = time.perf_counter()
    loop = ResumableLoop(cfg.iterations, save=save if any(c is not None for c in ckpts) else None,
                         desc=f"train ×{len(group)} fused", progress=any(r.cfg.progress for r in group),
                         checkpoint_every=cfg.checkpoint_every, report_every=runtime.sync_every, report=report,
                         on_step=on_step if any(r.on_step for r in group) else None,
                         flush=lambda end: (step.flush(f"before iteration {end} (fused networks of seeds {seeds})"), sync()))
    loop.run(start, one_step)
    sync()
    seconds = time.perf_counter() - t0
    return [TrainResult(cfg.iterations, losses[j], seconds / len(group), ckpts[j].path if ckpts[j] else None,
                        to_floats(parts[j][1]) if parts else {}) for j in range(len(group))]


def _start(r: Replicate) -> int:
    """The iteration ``r`` resumes at (0 when fresh)."""
    if not r.resume or r.out_dir is None:
        return 0
    path = Path(r.out_dir) / CHECKPOINT_NAME
    return int(load_checkpoint(path)["iteration"]) if path.is_file() else 0


def train_replicates(replicates: Sequence[Replicate], data: MultiTaskData, tasks: Sequence[Task],
                     max_fused: int = 0, say: Callable[[str], None] | None = None) -> list[TrainResult]:
    """Train every replicate (:func:`branchsweep.train.train_network`'s results, in order), fusing
    those that can (module docstring) into groups of at most ``max_fused`` networks (0: no limit).

    ``say``: where the one line about networks that train one at a time, or modules that run copy by
    copy, goes (default: this module's logger).
    """
    say = say or log.info
    weights = dict(replicates[0].cfg.loss_weights) if replicates else {}
    unknown = sorted(set(weights) - {t.name for t in tasks})
    if unknown:
        raise ConfigError(f"loss weight given for unknown task {unknown[0]!r}")
    results: list[TrainResult | None] = [None] * len(replicates)
    groups: dict[Any, list[int]] = {}
    alone: dict[str, list[int]] = {}
    for i, r in enumerate(replicates):
        reason = cannot_fuse(r)
        if reason is not None:
            alone.setdefault(reason, []).append(i)
            continue
        key = (repr(_recipe(r.cfg)), r.model.spec.name, repr(r.model.spec.cache_key()), tuple(r.model.task_names),
               _start(r))
        groups.setdefault(key, []).append(i)
    for reason, members in alone.items():
        if len(replicates) > 1:
            say(f"{len(members)} of {len(replicates)} networks train one at a time: {reason}")
        for i in members:
            r = replicates[i]
            results[i] = train_network(r.model, data, tasks, r.cfg, r.out_dir, r.resume, r.on_step)
    told = False
    for members in groups.values():
        size = max_fused or len(members)
        for lo in range(0, len(members), size):
            chunk = members[lo: lo + size]
            if len(chunk) == 1:
                r = replicates[chunk[0]]
                results[chunk[0]] = train_network(r.model, data, tasks, r.cfg, r.out_dir, r.resume, r.on_step)
                continue
            slow = FusedNetworks([replicates[chunk[0]].model]).unsupported()
            if slow and not told:
                say(f"fused training: {', '.join(slow)} have no fused form and run network by network")
                told = True
            for i, result in zip(chunk, _train_fused([replicates[i] for i in chunk], data, tasks)):
                results[i] = result
    return results  # type: ignore[return-value]


@torch.no_grad()
def evaluate_networks(models: Sequence[BranchedNetwork], data: MultiTaskData, tasks: Sequence[Task], cfg: TrainConfig,
                      split: str = "val") -> list[dict[str, float]]:
    """Every network's metrics over ``split`` (as :func:`branchsweep.train.evaluate_network` gives
    them), the K networks evaluated as one wide network on each batch."""
    runtime = runtime_of(cfg, data)
    for m in models:
        runtime.prepare(m).eval()
    net = FusedNetworks(models)
    metrics = [{t.name: t.make_metric() for t in tasks} for _ in models]
    for batch in runtime.loader(data.split(split, train=False), cfg.eval_batch_size):
        batch = runtime.batch(batch)
        with runtime.autocast():
            outputs = net(batch["image"], shared=True)
        for j, out in enumerate(outputs):
            for task in tasks:
                pred = out[task.name]
                metrics[j][task.name].update(pred.float() if runtime.amp != "off" else pred, batch[task.name])
    return [metric_values(m) for m in metrics]
