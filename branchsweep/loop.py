"""One training loop: what retraining and the weight phases of both searches share.

A loop here is a few pieces, each written once:

* :class:`Runtime` — *how* to run, not what to compute: the device, mixed precision
  (``amp``: ``off``/``bf16``/``fp16``), ``channels_last``, data-loader workers with pinned memory,
  ``cudnn.benchmark``, and how often the host synchronises with the device (loss values and the
  finite-loss check are read every ``sync_every`` steps: every step on a CPU, where it costs nothing,
  every 25 on a GPU, where a per-step ``.item()`` stalls the pipeline);
* :func:`epoch_batches` — an endless stream of shuffled batches whose order depends only on
  ``(seed, epoch)``, so a resumed run consumes exactly the batches an uninterrupted one would;
* :func:`weighted_loss` — ``Σ_t w_t · L_t`` and the per-task losses (as tensors: no sync);
* :class:`TrainStep` — one weight update: forward (all tasks at once, or one task after the other
  with gradients accumulated: the BMTAS supplement's "we update the supergraph sequentially for
  each task", which keeps one task's graph alive at a time), weighted loss, finite check, backward
  (scaled under fp16), optimizer step(s), learning-rate schedule;
* :data:`LR_SCHEDULES` — learning-rate decays by name (:func:`lr_schedule`): ``poly`` (BMTAS:
  ``lr · (1 − it/iterations)^power``), ``exponential`` (Learning to Branch search: × ``gamma`` every
  ``every_epochs`` epochs, staircase), ``step`` (Learning to Branch retrain: × ``gamma`` every
  ``every_epochs`` whole epochs), ``constant``.

* :class:`Checkpoint` and :class:`ResumableLoop` — the frame around every loop, written once: resume
  from a checkpoint that must match the run's settings, the iterations with a progress bar, progress
  callbacks (``on_step``) on the host-synchronisation cadence, a checkpoint every ``checkpoint_every``
  iterations, ``stop_at`` (checkpoint and pause) and the final checkpoint. Retraining
  (:func:`branchsweep.train.train_network`), fused retraining (:mod:`branchsweep.fused_train`) and
  both searches run inside it.

A search method adds only what is its own (BMTAS: the α step and the alternation; Learning to
Branch: the logits step) around a :class:`TrainStep`, inside a :class:`ResumableLoop`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from branchsweep.atomic import load_state, save_state
from branchsweep.errors import BranchsweepError, ConfigError
from branchsweep.registry import Registry

AMP_MODES = ("off", "bf16", "fp16")
#: Host synchronisations on CUDA: one per this many steps (finite check, loss values for logs).
CUDA_SYNC_EVERY = 25


class NonFiniteLossError(BranchsweepError, RuntimeError):
    """A training loss became NaN or infinite: the run stops (one line: usually a too large lr)."""


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


def check_amp(amp: str) -> str:
    if amp not in AMP_MODES:
        raise ConfigError(f"--amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    return amp


class Runtime:
    """Device placement, mixed precision, memory format and data loading for one run.

    ``amp="fp16"`` needs CUDA (a :class:`torch.amp.GradScaler` keeps small gradients representable);
    ``bf16`` autocasts on CPU and GPU alike. ``sync_every`` 0 means 1 on CPU and
    :data:`CUDA_SYNC_EVERY` on CUDA.
    """

    def __init__(self, device: str = "cpu", amp: str = "off", channels_last: bool = False, num_workers: int = 0,
                 sync_every: int = 0) -> None:
        self.device = resolve_device(device)
        self.amp = check_amp(amp)
        if amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("--amp fp16 needs a CUDA device (use --amp bf16 on a CPU)")
        if num_workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {num_workers}")
        self.channels_last = channels_last
        self.num_workers = num_workers
        self.pin_memory = self.device.type == "cuda"
        self.sync_every = sync_every or (CUDA_SYNC_EVERY if self.device.type == "cuda" else 1)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move ``model`` to the device (and to channels-last memory format when asked)."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Tensors of ``batch`` on the device (asynchronous from pinned memory); 4-D images channels-last."""
        out = {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
        image = out.get("image")
        if self.channels_last and torch.is_tensor(image) and image.dim() == 4:
            out["image"] = image.contiguous(memory_format=torch.channels_last)
        return out

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for the forward pass and loss (a no-op with ``amp="off"``)."""
        if self.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def loader(self, dataset: Dataset, batch_size: int, shuffle: bool = False) -> DataLoader:
        """An evaluation loader with this run's workers and pinning."""
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=False)

    def batches(self, dataset: Dataset, batch_size: int, seed: int, start: int = 0) -> Iterator[dict]:
        """:func:`epoch_batches` with this run's workers and pinning."""
        return epoch_batches(dataset, batch_size, seed, start, self.num_workers, self.pin_memory)


class _EpochBatches:
    """Batch sampler over endless epochs: epoch ``e`` is ``randperm(n, seed·1000003 + e)`` cut into
    batches, incomplete last batches dropped, starting ``start`` batches in."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int) -> None:
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start

    def __iter__(self) -> Iterator[list[int]]:
        per_epoch = self.n // self.batch_size
        epoch, offset = divmod(self.start, per_epoch)
        while True:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.n, generator=g)[offset * self.batch_size: per_epoch * self.batch_size].tolist()
            for i in range(0, len(order), self.batch_size):
                yield order[i: i + self.batch_size]
            epoch, offset = epoch + 1, 0


def epoch_batches(dataset: Dataset, batch_size: int, seed: int, start: int = 0, num_workers: int = 0,
                 pin_memory: bool = False) -> Iterator[dict]:
    """An endless stream of shuffled batches whose order depends only on ``(seed, epoch)``.

    Incomplete last batches are dropped (BatchNorm needs > 1 sample). Starting at ``start`` skips
    exactly the batches an uninterrupted run would have consumed, without loading them. One
    :class:`~torch.utils.data.DataLoader` serves every epoch, so worker processes start once.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if n // batch_size == 0:
        raise ConfigError(f"batch size {batch_size} is larger than the training set ({n} samples)")
    # A loader-local generator: creating the iterator must not consume the global RNG (dropout,
    # augmentation), or a resumed run would diverge from an uninterrupted one.
    loader = DataLoader(dataset, batch_sampler=_EpochBatches(n, batch_size, seed, start), num_workers=num_workers,
                        pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed * 1_000_003 + 1))
    return iter(loader)


def weighted_loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any], tasks: Sequence,
                  weights: Mapping[str, float] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Σ_t w_t · L_t(pred_t, label_t)`` (``w_t``: ``weights[t]`` or the task's own weight) and the
    unweighted per-task losses, detached (tensors: reading them is left to the caller's cadence).

    >>> from branchsweep.tasks import create_task
    >>> tasks = [create_task("regression", name="a", out_channels=1), create_task("regression", name="b", out_channels=1)]
    >>> out = {"a": torch.zeros(2, 1), "b": torch.ones(2, 1)}
    >>> batch = {"a": torch.ones(2, 1), "b": torch.ones(2, 1)}
    >>> total, parts = weighted_loss(out, batch, tasks, {"a": 2.0})
    >>> float(total), {k: float(v) for k, v in parts.items()}
    (2.0, {'a': 1.0, 'b': 0.0})
    """
    weights = weights or {}
    total: Any = 0.0
    parts: dict[str, torch.Tensor] = {}
    for task in tasks:
        loss = task.loss(outputs[task.name], batch[task.name])
        parts[task.name] = loss.detach()
        total = total + weights.get(task.name, task.weight) * loss
    return total, parts


def to_floats(obj: Any) -> Any:
    """``obj`` with every tensor (a loss, a log value) replaced by Python floats (lists for non-scalars)."""
    if torch.is_tensor(obj):
        return obj.item() if obj.dim() == 0 else obj.tolist()
    if isinstance(obj, dict):
        return {k: to_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_floats(v) for v in obj)
    return obj


def poly_schedule(optimizer: torch.optim.Optimizer, iterations: int, power: float):
    """The 'poly' policy: each group's lr times ``(1 - it / iterations) ** power``."""
    return lr_schedule(optimizer, "poly", iterations, 1, power=power)


#: Learning-rate factor by name: ``fn(it, iterations, per_epoch, power, gamma, every_epochs) -> factor``
#: (``it``: finished iterations; ``per_epoch``: iterations per epoch of the training split).
LR_SCHEDULES: Registry[Callable[[int, int, int, float, float, float], float]] = Registry("learning-rate schedule")
LR_SCHEDULES.register("poly", lambda it, n, e, power, gamma, every: max(0.0, 1.0 - it / max(n, 1)) ** power,
                      help="(1 − it/iterations)^power (BMTAS)")
LR_SCHEDULES.register("exponential", lambda it, n, e, power, gamma, every: gamma ** (it // max(1.0, every * e)),
                      help="× gamma every every_epochs epochs, staircase (Learning to Branch search: 0.97 / 2.4)")
LR_SCHEDULES.register("step", lambda it, n, e, power, gamma, every: gamma ** ((it // e) // max(1, round(every))),
                      help="× gamma every every_epochs whole epochs (Learning to Branch retrain: 0.5 / 10 or 15)")
LR_SCHEDULES.register("constant", lambda it, n, e, power, gamma, every: 1.0, help="the base learning rate throughout")


def lr_factor(name: str, it: int, iterations: int, per_epoch: int, power: float = 0.9, gamma: float = 1.0,
              every_epochs: float = 1.0) -> float:
    """The factor schedule ``name`` applies to the base lr after ``it`` iterations.

    >>> lr_factor("exponential", 239, 1000, 100, gamma=0.97, every_epochs=2.4), lr_factor("exponential", 240, 1000, 100, gamma=0.97, every_epochs=2.4)
    (1.0, 0.97)
    >>> [lr_factor("step", it, 3000, 100, gamma=0.5, every_epochs=10) for it in (999, 1000, 2000)]
    [1.0, 0.5, 0.25]
    """
    return float(LR_SCHEDULES.get(name)(it, iterations, max(1, per_epoch), power, gamma, every_epochs))


def check_lr_schedule(name: str, gamma: float, every_epochs: float) -> None:
    """Raise :class:`ConfigError` for an unknown schedule or a decay that is not in (0, 1] / not > 0."""
    LR_SCHEDULES.get(name)
    if not 0 < gamma <= 1:
        raise ConfigError(f"lr decay factor (gamma) must be in (0, 1], got {gamma}")
    if not every_epochs > 0:
        raise ConfigError(f"lr decay interval (every_epochs) must be > 0, got {every_epochs}")


def lr_schedule(optimizer: torch.optim.Optimizer, name: str, iterations: int, per_epoch: int, power: float = 0.9,
                gamma: float = 1.0, every_epochs: float = 1.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A :class:`~torch.optim.lr_scheduler.LambdaLR` of schedule ``name`` (stepped once per iteration)."""
    fn = LR_SCHEDULES.get(name)
    e = max(1, per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: float(fn(it, iterations, e, power, gamma, every_epochs)))


Forward = Callable[..., Any]
#: ``loss(outputs, batch, tasks, weights) -> (loss, parts)``: :func:`weighted_loss` unless a step is
#: given another (fused retraining sums the losses of K networks).
LossFn = Callable[[Any, Mapping[str, Any], Sequence, Mapping[str, float]], tuple[torch.Tensor, dict]]


class TrainStep:
    """One weight update, shared by every training loop (see the module docstring).

    ``optimizers``: zeroed every step and stepped (unless a call names a subset in ``update``);
    ``loss``: how outputs and batch make the loss (default :func:`weighted_loss`);
    ``schedulers``: stepped after them. ``per_task``: forward and backward one task at a time
    (``forward(images, tasks=[name])``), accumulating gradients — equal to the joint gradient, with
    one task's activations alive at a time. The loss is checked for NaN/inf every
    ``runtime.sync_every`` steps (every step on a CPU: before anything is updated).
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], tasks: Sequence, runtime: Runtime,
                 schedulers: Sequence[Any] = (), weights: Mapping[str, float] | None = None,
                 per_task: bool = False, loss: LossFn | None = None) -> None:
        self.loss = loss or weighted_loss
        self.optimizers = list(optimizers)
        self.schedulers = list(schedulers)
        self.tasks = list(tasks)
        self.runtime = runtime
        self.weights = dict(weights or {})
        self.per_task = per_task
        self.scaler = torch.amp.GradScaler(runtime.device.type) if runtime.amp == "fp16" else None
        self.steps = 0
        self._bad: torch.Tensor | None = None

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def __call__(self, forward: Forward, batch: Mapping[str, Any], where: str = "",
                 update: Sequence[torch.optim.Optimizer] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward ``batch`` (already on the device), update, and return ``(loss, task losses)`` detached."""
        images = batch["image"]
        if not self.per_task:
            with self.runtime.autocast():
                loss, parts = self.loss(forward(images), batch, self.tasks, self.weights)
            self._check(loss.detach(), parts, where)
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            self._backward(loss)
            total = loss.detach()
        else:
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            total, parts = None, {}
            for task in self.tasks:
                with self.runtime.autocast():
                    term, part = self.loss(forward(images, tasks=[task.name]), batch, [task], self.weights)
                self._backward(term)
                parts.update(part)
                total = term.detach() if total is None else total + term.detach()
            self._check(total, parts, where)
        for opt in (self.optimizers if update is None else update):
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()
        for sched in self.schedulers:
            sched.step()
        self.steps += 1
        return total, parts

    def _check(self, loss: torch.Tensor, parts: Mapping[str, torch.Tensor], where: str) -> None:
        """Raise :class:`NonFiniteLossError` when the loss is NaN/inf (read on the sync cadence)."""
        if self.runtime.sync_every == 1:
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"loss is {float(loss)} {where} (task losses: {to_floats(dict(parts))}); "
                                         "lower the learning rate")
            return
        bad = ~torch.isfinite(loss)
        self._bad = bad if self._bad is None else (self._bad | bad)
        if (self.steps + 1) % self.runtime.sync_every == 0:
            self.flush(where)

    def flush(self, where: str = "") -> None:
        """Synchronise now: raise if any loss since the last check was not finite."""
        if self._bad is not None and bool(self._bad):
            raise NonFiniteLossError(f"loss became NaN or infinite {where} (at or before; checked every "
                                     f"{self.runtime.sync_every} steps); lower the learning rate")
        self._bad = None


# ------------------------------------------------------------------------------ the resumable frame
#: The key under which a checkpoint records the settings it must match on resume.
SETTINGS_KEY = "settings"


class Checkpoint:
    """One resumable checkpoint file: saved atomically with the run's ``settings``, loaded back only
    into a run with the same settings.

    ``settings`` holds what makes a checkpoint belong to a run (seed, tasks, iterations, a tree's hash,
    child nodes …): resuming with other settings would silently continue another experiment, so it is
    a :class:`ConfigError` naming the first difference. Checkpoints written before settings were
    recorded load without the check.
    """

    def __init__(self, path: str | Path, what: str, settings: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.what = what
        # Compared as JSON: tuples and lists, ints and floats of a config compare as they are written.
        self.settings = json.loads(json.dumps(dict(settings or {}), default=str))

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self, map_location: Any = "cpu") -> dict:
        """The saved state; a missing file or one of other settings is a one-line :class:`ConfigError`."""
        if not self.path.is_file():
            raise ConfigError(f"--resume: no {self.what} checkpoint {self.path} to continue from")
        state = load_state(self.path, f"{self.what} checkpoint", map_location=map_location)
        saved = state.get(SETTINGS_KEY)
        if saved is not None:
            for key in sorted(set(saved) | set(self.settings)):
                if saved.get(key) != self.settings.get(key):
                    raise ConfigError(f"{self.path}: the checkpoint is for {key}={saved.get(key)!r}, this run has "
                                      f"{key}={self.settings.get(key)!r}; resume with its settings or use a new --out")
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        save_state(self.path, {**state, SETTINGS_KEY: self.settings})


class ResumableLoop:
    """The frame around a training loop: progress bar, ``on_step``, checkpoints, ``stop_at``.

    ``run(start, step)`` calls ``step(it)`` for ``it`` in ``[start, end)`` (``end``: ``iterations``, or
    ``stop_at`` when smaller). After step ``it`` (``done = it + 1``):

    * at ``end`` first ``flush(end)`` (e.g. :meth:`TrainStep.flush`: a NaN loss is never saved);
    * every ``checkpoint_every`` iterations (0: never; before the last) and at ``end``, ``save(done)``
      writes a checkpoint;
    * every ``report_every`` iterations, at a checkpoint and at ``end``, the ``info`` dict that ``step``
      returned, updated with ``report(done)`` when given, is read to floats (a host synchronisation:
      ``report_every`` is the sync cadence), its ``postfix`` keys shown on the bar, and
      ``on_step(done, {**info, "checkpoint": periodic})`` called — ``checkpoint`` is True after a
      periodic checkpoint (a caller such as a Ray trial persists it), not after the quiet one at ``end``.

    ``run`` returns True when all ``iterations`` are done, False when it paused at ``stop_at`` (the
    checkpoint lets a resumed run take exactly the step an uninterrupted one would have taken).
    """

    def __init__(self, iterations: int, *, save: Callable[[int], None] | None = None, desc: str = "train",
                 progress: bool = False, checkpoint_every: int = 0, report_every: int = 1,
                 on_step: Callable[[int, dict], None] | None = None, flush: Callable[[int], None] | None = None,
                 report: Callable[[int], Mapping[str, Any]] | None = None, postfix: Sequence[str] = ("loss",)) -> None:
        self.iterations = iterations
        self.save = save
        self.desc = desc
        self.progress = progress
        self.checkpoint_every = checkpoint_every if save is not None else 0
        self.report_every = max(1, report_every)
        self.on_step = on_step
        self.flush = flush
        self.report = report
        self.postfix = tuple(postfix)

    def run(self, start: int, step: Callable[[int], Mapping[str, Any] | None], stop_at: int | None = None) -> bool:
        end = self.iterations if stop_at is None else min(stop_at, self.iterations)
        bar = tqdm(range(start, end), initial=start, total=self.iterations, desc=self.desc,
                   disable=not self.progress, leave=False, mininterval=1.0)
        for it in bar:
            info = step(it)
            done = it + 1
            last = done == end
            # A periodic checkpoint is announced (on_step: a Ray trial persists it); the one at the end
            # of the run is written quietly (what follows, an export or an evaluation, reports itself).
            checkpoint = bool(self.checkpoint_every) and done % self.checkpoint_every == 0 and done < self.iterations
            if last and self.flush is not None:
                self.flush(end)
            if self.save is not None and (checkpoint or last):
                self.save(done)
            if checkpoint or last or done % self.report_every == 0:
                values = to_floats({**(info or {}), **(self.report(done) if self.report is not None else {})})
                shown = {k: f"{values[k]:.4g}" for k in self.postfix if isinstance(values.get(k), float)}
                if shown:
                    bar.set_postfix(shown, refresh=False)
                if self.on_step is not None:
                    self.on_step(done, {**values, "checkpoint": checkpoint})
        bar.close()
        return end >= self.iterations
