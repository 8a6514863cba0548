"""What a sweep's trials share on disk: the retrain cache (with its locks), the MAdds tables, and one
folder per search method for its per-sweep state (e.g. the BMTAS warm-up)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.atomic import file_lock, write_json
from branchsweep.config import to_dict
from branchsweep.pipeline.config import TrialConfig

CACHE_VERSION = 1
#: TrainConfig fields that do not change the retrained weights or metrics (left out of cache keys).
_NON_RESULT_TRAIN_FIELDS = ("progress", "device", "checkpoint_every", "eval_batch_size", "channels_last", "compile")
#: Retrain settings added after caches existed, with the value earlier runs implicitly used.
_LATER_TRAIN_DEFAULTS = {"lr_schedule": "poly", "epochs": None, "eval_split": "val"}


def retrain_key(cfg: TrialConfig, config: BranchConfig, spec_key: Any) -> str:
    """Hash of what a retrained network's metrics depend on: architecture, data, backbone, tasks, settings.

    Search hyperparameters are *not* part of it: two searches that export the same tree share a retrain.
    """
    train = {k: v for k, v in to_dict(cfg.train).items() if k not in _NON_RESULT_TRAIN_FIELDS}
    if train.get("amp") == "off":
        del train["amp"]  # full precision: the key of runs made before mixed precision existed
    for name, default in _LATER_TRAIN_DEFAULTS.items():
        if train.get(name, default) == default:
            train.pop(name, None)  # settings added later, at their defaults: the keys of earlier runs
    if train.get("lr_schedule", "poly") in ("poly", "constant"):
        train.pop("lr_gamma", None)  # no step decay: its factor and interval do not matter
        train.pop("lr_every_epochs", None)
    data = {k: v for k, v in to_dict(cfg.data).items() if k != "num_workers"}
    key = {
        "arch": config.arch_hash(), "tasks": list(config.tasks), "data": data, "model": to_dict(cfg.model),
        "spec": spec_key, "train": train, "seed": cfg.seed, "version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


class RetrainCache:
    """Retrain outcomes (metrics, parameters, time) on disk, one JSON file per :func:`retrain_key`.

    Shared by every trial of a sweep (and by later sweeps pointed at the same folder). On a multi-node
    cluster the folder must be on shared storage, otherwise each node keeps its own cache.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        write_json(self.path(key), entry)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` (a second trial with the same architecture waits here)."""
        with file_lock(self.root / f"{key}.lock"):
            yield


@dataclass
class SweepCaches:
    """The folders a sweep's trials share: retrain cache, MAdds tables, one folder per search method."""

    root: Path

    @property
    def retrain(self) -> RetrainCache:
        return RetrainCache(self.root / "retrain")

    @property
    def madds(self) -> Path:
        return self.root

    def method_dir(self, method: str) -> Path:
        """Where search method ``method`` keeps its per-sweep shared state."""
        return self.root / method
