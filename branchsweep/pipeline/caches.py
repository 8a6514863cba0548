"""What a sweep's trials share on disk: the retrain cache (with its locks), the MAdds tables, and one
folder per search method for its per-sweep state (e.g. the BMTAS warm-up)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.atomic import file_lock, write_json
from branchsweep.config import DataConfig, ModelConfig, TrainConfig, to_dict
from branchsweep.pipeline.config import TrialConfig

CACHE_VERSION = 2
#: TrainConfig fields that do not change the retrained weights or metrics (left out of cache keys);
#: the seed is keyed separately (one entry per retrain seed).
_NON_RESULT_TRAIN_FIELDS = ("progress", "device", "checkpoint_every", "eval_batch_size", "channels_last", "compile",
                            "seed")
#: Retrain settings added after caches existed, with the value earlier runs implicitly used.
_LATER_TRAIN_DEFAULTS = {"lr_schedule": "poly", "epochs": None, "eval_split": "val"}


def result_settings(data: DataConfig, model: ModelConfig, train: TrainConfig) -> dict[str, Any]:
    """The data, backbone and retraining settings a retrain's metrics depend on (run settings such as
    the device or progress left out; settings added later dropped at their defaults, so earlier keys hold)."""
    train = {k: v for k, v in to_dict(train).items() if k not in _NON_RESULT_TRAIN_FIELDS}
    if train.get("amp") == "off":
        del train["amp"]  # full precision: the key of runs made before mixed precision existed
    for name, default in _LATER_TRAIN_DEFAULTS.items():
        if train.get(name, default) == default:
            train.pop(name, None)  # settings added later, at their defaults: the keys of earlier runs
    if train.get("lr_schedule", "poly") in ("poly", "constant"):
        train.pop("lr_gamma", None)  # no step decay: its factor and interval do not matter
        train.pop("lr_every_epochs", None)
    return {"data": {k: v for k, v in to_dict(data).items() if k != "num_workers"}, "model": to_dict(model),
            "train": train}


def retrain_key(cfg: TrialConfig, config: BranchConfig, spec_key: Any, seed: int) -> str:
    """Hash of what one retrain's metrics depend on: architecture, data, backbone, tasks, settings and
    the retrain ``seed`` (one cache entry per replicate).

    Search hyperparameters and the search seed are *not* part of it: two searches that export the same
    tree share its retrains.
    """
    key = {
        "arch": config.arch_hash(), "tasks": list(config.tasks), **result_settings(cfg.data, cfg.model, cfg.train),
        "spec": spec_key, "seed": int(seed), "version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


class RetrainClaimed(Exception):
    """Another live trial claims retrain ``key`` (``holder``: its owner), raised by
    :meth:`RetrainCache.get_or_claim` with ``wait=False``."""

    def __init__(self, key: str, holder: str) -> None:
        super().__init__(key, holder)  # the constructor's arguments: pickles like any exception
        self.key, self.holder = key, holder

    def __str__(self) -> str:
        return f"retrain {self.key} is claimed by trial {self.holder}"


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

    #: A claim not refreshed for this long is taken over (its trial died without releasing it).
    claim_stale_s: float = 900.0
    #: How often a trial waiting for another trial's retrain of the same key looks for the entry.
    poll_s: float = 2.0

    def _claim_path(self, key: str) -> Path:
        return self.root / f"{key}.claim"

    def claimant(self, key: str) -> str | None:
        """The owner of a live claim on ``key``; None when there is none or it is stale (read without the lock)."""
        holder, age = self._holder(key)
        return holder if holder is not None and age <= self.claim_stale_s else None

    def _holder(self, key: str) -> tuple[str | None, float]:
        claim = self._claim_path(key)
        try:
            return json.loads(claim.read_text()).get("owner"), time.time() - claim.stat().st_mtime
        except (FileNotFoundError, json.JSONDecodeError):
            return None, 0.0

    def get_or_claim(self, key: str, owner: str, say: Callable[[str], None] | None = None,
                     wait: bool = True) -> dict[str, Any] | None:
        """The cached entry of ``key``, or None after claiming ``key`` for ``owner`` (who must retrain it,
        then :meth:`put` and :meth:`release`).

        The file lock is held only while checking and claiming. While another live owner holds the
        claim, this waits (polling, holding no lock) for its entry, or with ``wait=False`` raises
        :class:`RetrainClaimed` at once (the caller waits elsewhere, e.g. without holding a GPU, and
        asks again: :meth:`wait_for`). A claim older than :attr:`claim_stale_s` without a heartbeat, or
        one of ``owner`` itself (a retried trial), is taken over.
        """
        waited = False
        while True:
            with self.lock(key):
                entry = self.get(key)
                if entry is not None:
                    return entry
                holder, age = self._holder(key)
                if holder is None or holder == owner or age > self.claim_stale_s:
                    write_json(self._claim_path(key), {"owner": owner, "time": time.time()})
                    return None
            if not wait:
                raise RetrainClaimed(key, str(holder))
            if not waited and say is not None:
                say(f"retrain of {key} claimed by trial {holder}: waiting for its result")
            waited = True
            time.sleep(self.poll_s)

    def wait_for(self, key: str, owner: str) -> dict[str, Any] | None:
        """Wait (polling, holding no lock) while a live owner other than ``owner`` claims ``key``: its
        entry once :meth:`put`, or None when the claim went without one (released after a failed
        retrain) or went stale; :meth:`get_or_claim` then claims it."""
        while True:
            entry = self.get(key)
            if entry is not None:
                return entry
            holder = self.claimant(key)
            if holder is None or holder == owner:
                return self.get(key)  # put just before the release
            time.sleep(self.poll_s)

    def heartbeat(self, key: str, owner: str, on_step: Callable[[str, int, dict], None] | None = None,
                  every_s: float = 30.0) -> Callable[[str, int, dict], None]:
        """An ``on_step`` hook that refreshes ``owner``'s claim on ``key`` (at most every ``every_s``) and
        then calls ``on_step``."""
        last = [time.monotonic()]

        def hook(stage: str, iteration: int, info: dict) -> None:
            if time.monotonic() - last[0] >= every_s:
                last[0] = time.monotonic()
                with contextlib.suppress(FileNotFoundError):
                    os.utime(self._claim_path(key))
            if on_step is not None:
                on_step(stage, iteration, info)

        return hook

    def release(self, key: str, owner: str) -> None:
        """Drop ``owner``'s claim on ``key`` (after :meth:`put`, or when its retrain failed)."""
        with self.lock(key):
            claim = self._claim_path(key)
            try:
                if json.loads(claim.read_text()).get("owner") == owner:
                    claim.unlink()
            except (FileNotFoundError, json.JSONDecodeError):
                pass

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` (short: only to check and claim, see :meth:`get_or_claim`)."""
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
