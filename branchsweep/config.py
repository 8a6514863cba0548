"""Typed, validated configs: one place where flags, sweep search spaces and defaults meet.

Every command builds its config once at the edge (CLI flags or a sweep's search space) and validates
it there; library code trusts a config it is given. ``from_mapping`` accepts a plain dict (e.g. a
Ray Tune trial config) and rejects unknown keys by name, so a typo in a sweep script is an error,
not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from branchsweep.errors import ConfigError

C = TypeVar("C")


def from_mapping(cls: type[C], data: dict[str, Any], what: str | None = None) -> C:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and validating the result."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{what or cls.__name__}: unknown option {unknown[0]!r} (known: {', '.join(sorted(names))})")
    obj = cls(**data)
    validate = getattr(obj, "validate", None)
    if validate:
        validate()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (paths become strings)."""
    out = dataclasses.asdict(obj)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclass
class DataConfig:
    """Which data set, where, at which resolution, and which of its tasks.

    ``root`` None means the embedded synthetic data. ``size`` is the square input resolution for
    image data sets (None: the data set's default). ``options`` holds data-set-specific settings
    (e.g. ``activations`` for ``ltb-synthetic``), validated by the data set itself.
    """

    dataset: str = "synthetic-dense"
    root: str | None = None
    tasks: list[str] | None = None
    size: int | None = None
    train_samples: int | None = None
    val_samples: int | None = None
    seed: int = 0
    num_workers: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.size is not None:
            _positive("size", self.size)
        for name in ("train_samples", "val_samples"):
            v = getattr(self, name)
            if v is not None:
                _positive(name, v)
        _positive("num_workers", self.num_workers, allow_zero=True)


@dataclass
class ModelConfig:
    """Which backbone at which width; ``pretrained`` is None, ``"imagenet"`` or a checkpoint path."""

    backbone: str | None = None
    width: float = 1.0
    pretrained: str | None = None

    def validate(self) -> None:
        if not 0 < self.width <= 4:
            raise ConfigError(f"width must be in (0, 4], got {self.width}")


@dataclass
class TrainConfig:
    """Retraining a branched network: optimiser settings of BMTAS supplement A (SGD, momentum 0.9, wd 1e-4,
    lr 0.005, poly); ``iterations`` and ``batch_size`` are CPU-size defaults (the paper's per data set and
    backbone are in :mod:`branchsweep.paper`, which the ``train`` command and the paper presets use)."""

    iterations: int = 200
    batch_size: int = 8
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    optimizer: str = "sgd"
    #: Divide a shared block's lr by the number of tasks sharing it (a BMTAS convention). None: the
    #: convention of the method that found the architecture (BMTAS, baselines, fixed JSONs: yes;
    #: Learning to Branch: no), resolved by the trial; ``branchsweep train`` without a trial: yes.
    divide_lr_by_sharing: bool | None = None
    #: Learning-rate decay (:data:`branchsweep.loop.LR_SCHEDULES`): poly (uses ``poly_power``),
    #: exponential / step (× ``lr_gamma`` every ``lr_every_epochs`` epochs), constant.
    lr_schedule: str = "poly"
    lr_gamma: float = 0.5
    lr_every_epochs: float = 10.0
    #: Retrain length in epochs of the training split; when set it replaces ``iterations``.
    epochs: float | None = None
    #: The split the retrained network is evaluated on (val; test where a data set has one, e.g. CelebA).
    eval_split: str = "val"
    loss_weights: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 0
    eval_batch_size: int = 16
    progress: bool = True
    #: Mixed precision of forward and loss: off, bf16 (CPU or GPU) or fp16 (GPU, with a GradScaler).
    amp: str = "off"
    #: Channels-last memory format for model and images (faster convolutions on GPUs).
    channels_last: bool = False
    #: ``torch.compile`` the retrained network's forward pass.
    compile: bool = False

    def validate(self) -> None:
        from branchsweep.loop import check_amp

        check_amp(self.amp)
        _positive("iterations", self.iterations)
        _positive("batch_size", self.batch_size)
        if not math.isfinite(self.lr):
            raise ConfigError(f"lr must be a finite number, got {self.lr}")
        _positive("lr", self.lr)
        _positive("eval_batch_size", self.eval_batch_size)
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        _positive("checkpoint_every", self.checkpoint_every, allow_zero=True)
        from branchsweep.loop import check_lr_schedule

        check_lr_schedule(self.lr_schedule, self.lr_gamma, self.lr_every_epochs)
        if self.epochs is not None and not self.epochs > 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        if self.eval_split not in ("train", "val", "test"):
            raise ConfigError(f"eval_split must be train, val or test, got {self.eval_split!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        for task, w in self.loss_weights.items():
            if w < 0:
                raise ConfigError(f"loss weight of {task} must be >= 0, got {w}")
