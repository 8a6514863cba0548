"""Retrain claims with owners (no Ray): a live owner that makes no training step for longer than the stale
age keeps its claim (a heartbeat thread, not step hooks, refreshes it), a killed owner's claim is taken over,
and an attempt that lost its claim cannot overwrite the new owner's entry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import tiny_base

from branchsweep.pipeline import RetrainCache, RetrainClaimed, SweepCaches, run_trial
from branchsweep.pipeline.caches import ClaimLost
from branchsweep.sweep import to_trial_config

STALE_S = 1.0

OWNER = """
import sys, time
from branchsweep.pipeline import RetrainCache
cache = RetrainCache(sys.argv[1])
assert cache.get_or_claim("k", owner="A", wait=False) is None
with cache.holding(["k"], every_s=0.1):
    print("CLAIMED " + cache.attempt, flush=True)
    time.sleep(float(sys.argv[2]))   # a slow build, compile or evaluation: no training step at all
    cache.put("k", {"metrics": {"x": 1.0}, "trained_by": "A"})
cache.release("k", "A")
print("DONE", flush=True)
"""


def _owner(root: Path, hold_s: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(root), str(hold_s)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("CLAIMED "), line
    return proc, line.split()[1]


def _waiter(root: Path) -> RetrainCache:
    cache = RetrainCache(root)
    cache.claim_stale_s = STALE_S
    return cache


def test_a_live_owner_without_training_steps_is_not_taken_over(tmp_path):
    owner, _ = _owner(tmp_path, hold_s=4 * STALE_S)
    try:
        waiter = _waiter(tmp_path)
        deadline = time.monotonic() + 3 * STALE_S
        while time.monotonic() < deadline:  # three stale ages long, the claim stays A's
            with pytest.raises(RetrainClaimed) as err:
                waiter.get_or_claim("k", owner="B", wait=False)
            assert err.value.holder == "A" and waiter.claimant("k") == "A"
            time.sleep(0.1)
        assert waiter.wait_for("k", owner="B") == {"metrics": {"x": 1.0}, "trained_by": "A"}
        assert owner.stdout.read().strip() == "DONE"
    finally:
        owner.kill()
        owner.wait()
    assert owner.returncode == 0
    assert not (tmp_path / "k.claim").exists()


def test_a_killed_owner_is_taken_over_and_cannot_overwrite_the_new_owners_entry(tmp_path):
    owner, attempt = _owner(tmp_path, hold_s=600)
    os.kill(owner.pid, signal.SIGKILL)  # its heartbeat thread dies with it
    owner.wait()
    waiter = _waiter(tmp_path)
    with pytest.raises(RetrainClaimed):  # fresh: not yet stale
        waiter.get_or_claim("k", owner="B", wait=False)
    time.sleep(STALE_S + 0.3)
    assert waiter.claimant("k") is None
    assert waiter.get_or_claim("k", owner="B", wait=False) is None and waiter.claimant("k") == "B"
    # The dead attempt (were it only frozen) finds its claim gone: its put neither writes nor overwrites.
    dead = RetrainCache(tmp_path, attempt=attempt)
    with pytest.raises(ClaimLost, match="now held by trial B"):
        dead.put("k", {"metrics": {"x": 0.0}, "trained_by": "A"})
    assert waiter.get("k") is None
    mine = {"metrics": {"x": 2.0}, "trained_by": "B"}
    assert waiter.put("k", mine) == mine
    assert dead.put("k", {"metrics": {"x": 0.0}, "trained_by": "A"}) == mine  # the cached entry wins
    assert json.loads((tmp_path / "k.json").read_text()) == mine
    with dead.holding(["k"], every_s=60) as beat:  # its heartbeat sees the loss and stops the retrain
        assert beat.lost == {"k": "B"}
        with pytest.raises(ClaimLost):
            beat.guard(None)("retrain", 1, {})
    waiter.release("k", "A")  # another trial's release leaves B's claim alone
    assert waiter.claimant("k") == "B"


def test_two_attempts_of_one_trial_do_not_share_a_claim(tmp_path):
    """A retry (or a second driver's run of the same trial) takes the claim over at once; the earlier
    attempt, still alive, loses it and does not write."""
    first, second = RetrainCache(tmp_path), RetrainCache(tmp_path)
    assert first.attempt != second.attempt
    assert first.get_or_claim("k", owner="t1") is None
    assert second.get_or_claim("k", owner="t1") is None
    with pytest.raises(ClaimLost):
        first.put("k", {"metrics": {}})
    first.release("k", "t1")
    assert second.claimant("k") == "t1"
    assert second.put("k", {"metrics": {"y": 1.0}}) == {"metrics": {"y": 1.0}}


def test_claim_age_is_measured_on_the_storages_clock(tmp_path, monkeypatch):
    """A waiter whose own clock runs an hour ahead of the file server does not see a fresh claim as stale."""
    owner = RetrainCache(tmp_path)
    assert owner.get_or_claim("k", owner="A") is None
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    waiter = _waiter(tmp_path)
    assert waiter.claimant("k") == "A"
    with pytest.raises(RetrainClaimed):
        waiter.get_or_claim("k", owner="B", wait=False)


def test_run_trial_keeps_its_claim_through_a_slow_evaluation(tmp_path, monkeypatch):
    """The retrain's evaluation makes no training step; it outlasts the stale age three times, and the
    claim stays the trial's throughout (the heartbeat runs for the whole retrain and evaluation)."""
    import branchsweep.fused_train as fused_train

    monkeypatch.setattr(RetrainCache, "heartbeat_s", 0.1)
    evaluating, real = threading.Event(), fused_train.evaluate_networks

    def slow_evaluation(*args, **kwargs):
        evaluating.set()
        time.sleep(3 * STALE_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(fused_train, "evaluate_networks", slow_evaluation)
    cfg = to_trial_config({"method": "shared"}, tiny_base(), baseline=True)
    caches = SweepCaches(tmp_path / "cache")
    rows: dict = {}
    worker = threading.Thread(target=lambda: rows.setdefault("row", run_trial(cfg, tmp_path / "t1", caches)))
    worker.start()
    try:
        assert evaluating.wait(120), "the retrain never reached its evaluation"
        claims = list(caches.retrain.root.glob("*.claim"))
        assert len(claims) == 1
        key = claims[0].name.removesuffix(".claim")
        intruder = _waiter(caches.retrain.root)
        while worker.is_alive() and not caches.retrain.get(key):
            with pytest.raises(RetrainClaimed):
                intruder.get_or_claim(key, owner="intruder", wait=False)
            time.sleep(0.1)
    finally:
        worker.join(120)
    row = rows["row"]
    assert not row["retrain_cached"] and caches.retrain.get(key)["trained_by"] == row["label"]
    assert not list(caches.retrain.root.glob("*.claim"))
