"""What a sweep's trials share on disk: the retrain cache (with its locks), the MAdds tables, and one
folder per search method for its per-sweep state (e.g. the BMTAS warm-up)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from branchsweep.arch import BranchConfig
from branchsweep.atomic import file_lock, write_json
from branchsweep.config import DataConfig, ModelConfig, TrainConfig, to_dict
from branchsweep.pipeline.config import TrialConfig

log = logging.getLogger(__name__)

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


class ClaimLost(RuntimeError):
    """This attempt no longer owns the claim on retrain ``key``: another attempt (``holder``) took it over
    (this one's heartbeat stopped for longer than :attr:`RetrainCache.claim_stale_s`). Raised by
    :meth:`RetrainCache.put` and by a :class:`ClaimHeartbeat`'s step guard; the entry is not written."""

    def __init__(self, key: str, holder: str | None) -> None:
        super().__init__(key, holder)
        self.key, self.holder = key, holder

    def __str__(self) -> str:
        who = f"trial {self.holder}" if self.holder else "nobody (it was released)"
        return f"lost the claim on retrain {self.key}: now held by {who}; this attempt's result is not cached"


class RetrainCache:
    """Retrain outcomes (metrics, parameters, time) on disk, one JSON file per :func:`retrain_key`.

    Shared by every trial of a sweep (and by later sweeps pointed at the same folder). On a multi-node
    cluster the folder must be on shared storage, otherwise each node keeps its own cache.

    Claims have owners: a claim file ``<key>.claim`` names the trial (``owner``) and the attempt
    (``attempt``, unique per :class:`RetrainCache` instance, i.e. per attempt of a trial: a retry, a
    resumed driver's run of the same trial or a second driver on the same prefix each get their own).
    The owning attempt keeps the claim's modification time fresh from a thread (:meth:`holding`) for the
    whole retrain and evaluation; :meth:`put` writes only while this attempt still owns the claim. Ages
    are measured on the storage's clock: the claim's mtime against the mtime of a file touched just
    before (``.clock``; on NFS both are set by the file server), never against this machine's clock.
    """

    #: A claim not refreshed for this long is taken over (its attempt died without releasing it).
    claim_stale_s: float = 900.0
    #: How often the owning attempt's heartbeat thread refreshes its claims (well below claim_stale_s).
    heartbeat_s: float = 30.0
    #: How often a trial waiting for another trial's retrain of the same key looks for the entry.
    poll_s: float = 2.0

    def __init__(self, root: str | Path, attempt: str | None = None) -> None:
        self.root = Path(root)
        self.attempt = attempt or uuid.uuid4().hex[:12]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Cache ``entry`` under ``key`` if this attempt still owns the claim on ``key``; returns the entry
        the cache holds afterwards. An attempt that lost its claim does not overwrite: when the new owner
        already cached its entry, that entry is returned (every row of the key then agrees), otherwise
        :class:`ClaimLost` is raised."""
        with self.lock(key):
            holder, attempt, _ = self._holder(key)
            if attempt == self.attempt:
                write_json(self.path(key), entry)
                return entry
            existing = self.get(key)
            if existing is not None:
                log.warning("retrain %s: this attempt lost its claim to trial %s, which cached its result "
                            "first; using that result", key, existing.get("trained_by", holder))
                return existing
            raise ClaimLost(key, holder)

    def _claim_path(self, key: str) -> Path:
        return self.root / f"{key}.claim"

    def storage_now(self) -> float:
        """The storage's current time: the mtime of ``.clock`` in the cache folder, touched now."""
        clock = self.root / ".clock"
        clock.parent.mkdir(parents=True, exist_ok=True)
        with open(clock, "a"):
            pass
        os.utime(clock)  # no explicit time: the file system sets its own (NFS: the server's clock)
        return clock.stat().st_mtime

    def claimant(self, key: str) -> str | None:
        """The owner of a live claim on ``key``; None when there is none or it is stale (read without the lock)."""
        holder, _, age = self._holder(key)
        return holder if holder is not None and age <= self.claim_stale_s else None

    def _holder(self, key: str) -> tuple[str | None, str | None, float]:
        """``(owner, attempt, age in seconds on the storage's clock)`` of the claim on ``key``."""
        claim = self._claim_path(key)
        try:
            data = json.loads(claim.read_text())
            mtime = claim.stat().st_mtime
        except (FileNotFoundError, json.JSONDecodeError):
            return None, None, 0.0
        return data.get("owner"), data.get("attempt"), max(0.0, self.storage_now() - mtime)

    def get_or_claim(self, key: str, owner: str, say: Callable[[str], None] | None = None,
                     wait: bool = True) -> dict[str, Any] | None:
        """The cached entry of ``key``, or None after claiming ``key`` for ``owner`` and this attempt (who
        must retrain it while :meth:`holding` the claim, then :meth:`put` and :meth:`release`).

        The file lock is held only while checking and claiming. While another live owner holds the
        claim, this waits (polling, holding no lock) for its entry, or with ``wait=False`` raises
        :class:`RetrainClaimed` at once (the caller waits elsewhere, e.g. without holding a GPU, and
        asks again: :meth:`wait_for`). A claim not refreshed for :attr:`claim_stale_s` (its attempt
        died), or one of ``owner`` itself (an earlier attempt of the same trial: a retry, or the same
        trial run by a resumed driver), is taken over; the attempt that held it then finds it lost
        (its heartbeat stops refreshing it, its :meth:`put` does not write).
        """
        waited = False
        while True:
            with self.lock(key):
                entry = self.get(key)
                if entry is not None:
                    return entry
                holder, _, age = self._holder(key)
                if holder is None or holder == owner or age > self.claim_stale_s:
                    if holder is not None and holder != owner:
                        log.warning("retrain %s: taking over the claim of trial %s, not refreshed for %.0f s",
                                    key, holder, age)
                    write_json(self._claim_path(key), {"owner": owner, "attempt": self.attempt, "time": time.time()})
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

    def holding(self, keys: list[str], every_s: float | None = None) -> ClaimHeartbeat:
        """A context manager whose thread refreshes this attempt's claims on ``keys`` every ``every_s``
        (default :attr:`heartbeat_s`) while the block runs (the whole retrain and evaluation), whatever
        the training loop does; see :class:`ClaimHeartbeat`."""
        return ClaimHeartbeat(self, keys, self.heartbeat_s if every_s is None else every_s)

    def _refresh(self, key: str) -> tuple[bool, str | None]:
        """Touch the claim on ``key`` if this attempt owns it: ``(True, None)``; else ``(False, owner)``
        (``owner`` None: no claim at all)."""
        claim = self._claim_path(key)
        try:
            data = json.loads(claim.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False, None
        if data.get("attempt") != self.attempt:
            return False, data.get("owner")
        with contextlib.suppress(FileNotFoundError):
            os.utime(claim)  # the storage's clock, as in storage_now
        return True, None

    def release(self, key: str, owner: str) -> None:
        """Drop this attempt's claim on ``key`` (after :meth:`put`, or when its retrain failed); a claim
        taken over by another attempt is left alone."""
        with self.lock(key):
            claim = self._claim_path(key)
            try:
                data = json.loads(claim.read_text())
                if data.get("owner") == owner and data.get("attempt") == self.attempt:
                    claim.unlink()
            except (FileNotFoundError, json.JSONDecodeError):
                pass

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` (short: only to check and claim, see :meth:`get_or_claim`)."""
        with file_lock(self.root / f"{key}.lock"):
            yield


class ClaimHeartbeat:
    """Keeps an attempt's retrain claims fresh from a daemon thread (``with cache.holding(keys) as beat``).

    The thread touches each claim every ``every_s`` seconds from the moment the block is entered until it
    is left, independent of training steps (model building, compilation, the first steps, evaluation
    all count). A claim found owned by another attempt is recorded in :attr:`lost` and no longer
    touched; :meth:`guard` wraps a step hook so that the retrain stops at its next step (raising
    :class:`ClaimLost`) instead of training on for a result it may not cache.
    """

    def __init__(self, cache: RetrainCache, keys: list[str], every_s: float) -> None:
        self.cache, self.keys, self.every_s = cache, list(keys), float(every_s)
        self.lost: dict[str, str | None] = {}
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"claim-heartbeat-{cache.attempt}", daemon=True)

    def __enter__(self) -> ClaimHeartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.beat()

    def beat(self) -> None:
        """Refresh every claim still owned (once)."""
        for key in self.keys:
            if key in self.lost:
                continue
            try:
                owned, holder = self.cache._refresh(key)
            except OSError as err:  # a storage hiccup: the next beat tries again
                log.warning("retrain %s: heartbeat failed (%s); retrying in %.0f s", key, err, self.every_s)
                continue
            if not owned:
                self.lost[key] = holder
                log.warning("retrain %s: claim lost to %s", key, f"trial {holder}" if holder else "nobody")
        self.beats += 1

    def check(self) -> None:
        """Raise :class:`ClaimLost` when a claim of this attempt was found taken over."""
        for key, holder in self.lost.items():
            raise ClaimLost(key, holder)

    def guard(self, on_step: Callable[[str, int, dict], None] | None) -> Callable[[str, int, dict], None]:
        """``on_step`` preceded by :meth:`check` (a step hook for the retrain)."""

        def hook(stage: str, iteration: int, info: dict) -> None:
            self.check()
            if on_step is not None:
                on_step(stage, iteration, info)

        return hook


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
