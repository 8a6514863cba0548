"""The trial pipeline without Ray: baselines, Δm, MAdds before retraining, retrain dedup, NaN failures."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest

from branchsweep.arch import BranchConfig
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.errors import ConfigError
from branchsweep.pipeline import SweepCaches, TrialConfig, compute_delta_m, run_trial
from branchsweep.train import NonFiniteLossError

DATA = DataConfig(dataset="ltb-synthetic", train_samples=64, val_samples=16, tasks=["bent_0", "square_0", "sinc_0"])
MODEL = ModelConfig(backbone="mlp", width=0.16)  # tasks own block 4 (ltb-synthetic defaults to mlp_select)
TRAIN = TrainConfig(iterations=8, batch_size=16, eval_batch_size=16, progress=False)


def trial(method: str, **kw) -> TrialConfig:
    return TrialConfig(method=method, data=DATA, model=MODEL, train=TRAIN, **kw)


def test_baselines_delta_m_and_retrain_dedup(tmp_path):
    caches = SweepCaches(tmp_path / "cache")
    phases = []
    single = run_trial(trial("single", label="Single", is_baseline=True), tmp_path / "a", caches,
                       on_phase=lambda phase, row: phases.append((phase, row["madds"], "delta_m" in row)))
    assert phases == [("priced", single["madds"], False)]  # MAdds known before the retrain
    assert single["delta_m"] == 0.0 and not single["retrain_cached"] and single["retrain_time_s"] > 0
    shared = run_trial(trial("shared"), tmp_path / "b", caches)
    assert shared["madds"] < single["madds"] and shared["params"] < single["params"]
    assert math.isfinite(shared["delta_m"])
    # Same architecture and retrain settings under another label: metrics reused, and the log says so.
    again = run_trial(trial("shared", label="shared again", hp={"note": 1}), tmp_path / "c", caches)
    assert again["retrain_cached"] and again["retrain_time_s"] == 0.0
    assert again["bent_0/mse"] == shared["bent_0/mse"] and again["hp/note"] == 1
    assert "retrain seed 0 skipped" in (tmp_path / "c" / "trial.log").read_text()
    assert "trained by 'shared'" in (tmp_path / "c" / "trial.log").read_text()
    # Other retrain settings are another cache entry.
    longer = TrialConfig(method="shared", data=DATA, model=MODEL, train=TrainConfig(iterations=9, batch_size=16,
                                                                                  progress=False))
    assert not run_trial(longer, tmp_path / "d", caches)["retrain_cached"]


def test_delta_m_from_driver_given_baseline_metrics_on_a_worker_with_an_empty_cache(tmp_path):
    """A worker whose cache never saw the Single baseline (another node) still gets a finite Δm: the
    driver hands it the Single metrics; without them Δm is NaN. Progress reaches ``on_step``."""
    single = run_trial(trial("single", label="Single", is_baseline=True), tmp_path / "a", SweepCaches(tmp_path / "c1"))
    reference = {k: v for k, v in single.items() if k.endswith("/mse")}
    steps = []
    shared = run_trial(trial("shared"), tmp_path / "b", SweepCaches(tmp_path / "empty"), baseline_metrics=reference,
                       on_step=lambda stage, it, info: steps.append((stage, it, info["checkpoint"])))
    assert math.isfinite(shared["delta_m"])
    assert shared["delta_m"] == compute_delta_m(shared, reference, {k: "min" for k in reference})
    assert [s[:2] for s in steps] == [("retrain", i) for i in range(1, TRAIN.iterations + 1)]  # every step on a CPU
    blind = run_trial(trial("shared", label="blind"), tmp_path / "d", SweepCaches(tmp_path / "empty2"))
    assert math.isnan(blind["delta_m"])
    assert set(json.loads(shared["metric_spec"])["primary"]) == set(reference)  # what the driver writes to metrics.json


def test_search_trial_resumes_from_exported_architecture(tmp_path):
    """A resumed trial whose architecture is already exported does not search again: it retrains
    exactly what ``branch_config.json`` holds. The test swaps that file for another tree, which no
    rerun of the seeded search could reproduce, and drops the retrain (as if killed before it)."""
    caches = SweepCaches(tmp_path / "cache")
    cfg = trial("ltb", search={"iterations": 6, "batch_size": 16})
    work = tmp_path / "t"
    first = run_trial(cfg, work, caches)
    assert first["search_time_s"] > 0 and first["method"] == "ltb"
    tasks = ["bent_0", "square_0", "sinc_0"]
    other = BranchConfig.from_groups(tasks, [[tasks]] * 2 + [[["bent_0"], ["square_0", "sinc_0"]]]
                                     + [[[t] for t in tasks]])
    assert other.arch_hash() != first["arch_hash"]
    other.save(work / "branch_config.json")
    search_files = {p: p.stat().st_mtime_ns for p in (work / "search").iterdir()}
    shutil.rmtree(tmp_path / "cache" / "retrain")  # as if killed before the retrain:
    shutil.rmtree(work / "retrain")  # no cached metrics, no retrain checkpoint
    second = run_trial(cfg, work, caches, resume=True)
    assert second["arch_hash"] == other.arch_hash() != first["arch_hash"]
    assert second["madds"] != first["madds"] and not second["retrain_cached"]
    assert second["search_time_s"] == first["search_time_s"]  # from search_info.json, not a new search
    assert {p: p.stat().st_mtime_ns for p in (work / "search").iterdir()} == search_files  # untouched
    log = (work / "trial.log").read_text()
    assert log.count("] search ltb") == 1 and log.count("already exported by an earlier attempt") == 1


def test_nan_loss_raises(tmp_path):
    bad = TrialConfig(method="shared", data=DATA, model=MODEL,
                      train=TrainConfig(iterations=8, batch_size=16, lr=1e30, momentum=0.0, progress=False))
    with pytest.raises(NonFiniteLossError):
        run_trial(bad, tmp_path / "x", SweepCaches(tmp_path / "cache"))


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown trial method 'nope'"):
        trial("nope").validate()
    with pytest.raises(ConfigError, match="unknown option 'bogus'"):
        trial("ltb", search={"bogus": 1}).validate()
    with pytest.raises(ConfigError, match="needs arch="):
        trial("fixed").validate()
    assert TrialConfig.from_dict(trial("single").to_dict()) == trial("single")


def test_compute_delta_m_formula():
    # (+10 % on a max metric, −20 % on a min metric) / 2
    assert compute_delta_m({"a/acc": 55.0, "b/err": 12.0}, {"a/acc": 50.0, "b/err": 10.0},
                           {"a/acc": "max", "b/err": "min"}) == pytest.approx(-5.0)


TRIAL_PROCESS = """
import dataclasses, json, os, sys, time
from pathlib import Path
from torch.utils.data import Dataset
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.data import DATASETS
from branchsweep.pipeline import SweepCaches, TrialConfig, run_trial

class Gated(Dataset):
    '''The training split, whose first item waits until the test creates the gate file.'''
    def __init__(self, inner, folder):
        self.inner, self.folder = inner, folder
    def __len__(self):
        return len(self.inner)
    def __getitem__(self, index):
        (self.folder / "retraining").touch()
        while not (self.folder / "gate").exists():
            time.sleep(0.02)
        return self.inner[index]

@DATASETS.register("ltb-gated")
def ltb_gated(cfg):
    data = DATASETS.get("ltb-synthetic")(cfg)
    folder = os.environ.get("GATE_DIR")
    if folder:
        inner = data.make_split
        data.make_split = lambda split, train: Gated(inner(split, train), Path(folder)) if split == "train" \\
            else inner(split, train)
    return data

data = DataConfig(dataset="ltb-gated", train_samples=64, val_samples=16, tasks=["bent_0", "square_0", "sinc_0"])
cfg = TrialConfig(method="shared", data=data, model=ModelConfig(width=0.16), label=sys.argv[1],
                  train=TrainConfig(iterations=8, batch_size=16, eval_batch_size=16, progress=False))
row = run_trial(cfg, Path(sys.argv[2]), SweepCaches(Path(sys.argv[3])))
print("ROW " + json.dumps(row))
"""


def _waiting_on(lock: Path, pid: int) -> bool:
    """Whether process ``pid`` is blocked in flock() on ``lock`` (a ``->`` line of /proc/locks)."""
    inode = lock.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields:
            rest = fields[fields.index("FLOCK"):]
            if int(rest[3]) == pid and int(rest[4].split(":")[-1]) == inode:
                return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="needs Linux /proc/locks to see a waiting flock")
def test_concurrent_trials_with_one_architecture_retrain_it_once(tmp_path):
    """Two trials export the same architecture at the same time: the first claims it under the cache
    lock and retrains it after letting go of the lock; the second finds the claim and waits for the
    result without holding or queueing on the lock (seen in /proc/locks, not guessed from timing),
    then reuses the first one's metrics instead of training again."""
    import subprocess
    import sys
    import time

    caches = tmp_path / "cache"
    gate = tmp_path / "gate-a"
    gate.mkdir()
    env = dict(os.environ)

    def start(label: str, gated: bool) -> subprocess.Popen:
        extra = {"GATE_DIR": str(gate)} if gated else {}
        return subprocess.Popen([sys.executable, "-c", TRIAL_PROCESS, label, str(tmp_path / label), str(caches)],
                                env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for(condition, what: str, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 240
        while not condition():
            assert proc.poll() is None, f"{what}: the trial exited early\n{proc.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    first = start("A", gated=True)
    second = None
    try:
        wait_for(lambda: (gate / "retraining").exists(), "A starts retraining", first)
        locks = list((caches / "retrain").glob("*.lock"))
        assert len(locks) == 1
        assert len(list((caches / "retrain").glob("*.claim"))) == 1  # A claimed the key, then let go of the lock
        second = start("B", gated=False)
        log_b = tmp_path / "B" / "trial.log"
        wait_for(lambda: log_b.is_file() and "waiting for its result" in log_b.read_text(), "B waits for A", second)
        # B waits for A's result without holding or queueing on the lock: the lock is only for check-and-claim.
        assert not _waiting_on(locks[0], second.pid)
        assert not list((caches / "retrain").glob("*.json"))  # nothing cached while A trains
        (gate / "gate").touch()
        outs = [p.communicate(timeout=240) for p in (first, second)]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert first.returncode == 0 and second.returncode == 0, outs[0][1][-2000:] + outs[1][1][-2000:]
    a, b = (json.loads(next(x for x in out.splitlines() if x.startswith("ROW "))[4:]) for out, _ in outs)
    assert not a["retrain_cached"] and a["retrain_time_s"] > 0
    assert b["retrain_cached"] and b["retrain_time_s"] == 0.0
    assert a["arch_hash"] == b["arch_hash"] and a["retrain_key"] == b["retrain_key"]
    assert {k: v for k, v in b.items() if k.endswith("/mse")} == {k: v for k, v in a.items() if k.endswith("/mse")}
    log_b = (tmp_path / "B" / "trial.log").read_text()
    assert "retrain seed 0 skipped" in log_b and "trained by 'A'" in log_b and "retraining " not in log_b
    assert not (tmp_path / "B" / "retrain").exists()
    assert len(list((caches / "retrain").glob("*.json"))) == 1


def _retrain_keys(cfg: TrialConfig) -> list[str]:
    """The retrain keys of ``cfg``'s seeds (a baseline method), as :func:`run_trial` computes them."""
    from branchsweep.data import create_data
    from branchsweep.factory import build_spec
    from branchsweep.pipeline import BASELINES, retrain_key
    from branchsweep.pipeline.config import with_method_conventions

    data = create_data(cfg.data)
    spec = build_spec(cfg.model, data)
    config = BASELINES.get(cfg.method)([t.name for t in data.select_tasks(cfg.data.tasks)], spec.num_layers)
    return [retrain_key(with_method_conventions(cfg), config, spec.cache_key(), s) for s in cfg.retrain_seeds()]


def _claim(caches: SweepCaches, key: str, owner: str) -> None:
    from branchsweep.atomic import write_json

    write_json(caches.retrain.root / f"{key}.claim", {"owner": owner, "time": 0})


def test_claims_are_read_without_the_lock_and_stale_ones_are_taken_over(tmp_path):
    from branchsweep.pipeline.caches import RetrainClaimed

    cache = SweepCaches(tmp_path / "cache").retrain
    _claim(SweepCaches(tmp_path / "cache"), "k", "A")
    assert cache.claimant("k") == "A"
    with pytest.raises(RetrainClaimed) as err:
        cache.get_or_claim("k", owner="B", wait=False)
    assert (err.value.key, err.value.holder) == ("k", "A") and "claimed by trial A" in str(err.value)
    assert cache.get_or_claim("k", owner="A", wait=False) is None  # its own claim (a retried trial)
    old = cache.path("k").with_suffix(".claim").stat().st_mtime - 2 * cache.claim_stale_s
    os.utime(cache.path("k").with_suffix(".claim"), (old, old))  # A died: no heartbeat for too long
    assert cache.claimant("k") is None
    assert cache.wait_for("k", owner="B") is None  # nothing to wait for: B claims it itself
    assert cache.get_or_claim("k", owner="B", wait=False) is None and cache.claimant("k") == "B"
    cache.put("k", {"metrics": {}})
    assert cache.wait_for("k", owner="C") == {"metrics": {}}


def test_deferred_trial_resumes_to_the_row_it_would_have_reported_by_waiting(tmp_path, monkeypatch):
    """Trial B retrains 2 seeds; seed 1 is claimed by a live trial A. Waiting in place (the default), B
    polls until A's entry appears. With ``defer_claimed`` B instead raises ``RetrainClaimed`` after
    seed 0 (kept in its folder), and run again with ``resume=True`` once A has cached seed 1, it reports
    the row waiting gave: seed 0 trained by B, seed 1 reused, the same metrics, nothing retrained twice.
    (Run in two cache folders, one per way; CPU retrains with the same seed give the same numbers.)"""
    import threading

    from branchsweep.pipeline import RetrainCache
    from branchsweep.pipeline.caches import RetrainClaimed

    monkeypatch.setattr(RetrainCache, "poll_s", 0.05)
    cfg_b, cfg_a = trial("shared", label="B", replicates=2), trial("shared", label="A", replicates=2)
    k0, k1 = _retrain_keys(cfg_b)
    rows = {}
    for way in ("wait", "defer"):
        caches, root = SweepCaches(tmp_path / way / "cache"), tmp_path / way
        _claim(caches, k1, "A")  # A is retraining seed 1 (a fresh claim: live)
        log_b = root / "B" / "trial.log"
        if way == "wait":
            waiter = threading.Thread(target=lambda work, c: rows.setdefault("wait", run_trial(cfg_b, work, c)),
                                      args=(root / "B", caches))
            waiter.start()
            deadline = time.monotonic() + 120
            while not (log_b.is_file() and "waiting for its result" in log_b.read_text()) and waiter.is_alive():
                assert time.monotonic() < deadline, "B never waited for A"
                time.sleep(0.05)
            assert waiter.is_alive()
        else:
            with pytest.raises(RetrainClaimed) as err:
                run_trial(cfg_b, root / "B", caches, defer_claimed=True)
            assert (err.value.key, err.value.holder) == (k1, "A")
            assert "claimed by trial A: waiting for its result without holding the worker" in log_b.read_text()
            assert caches.retrain.claimant(k1) == "A" and caches.retrain.claimant(k0) is None  # B let go of seed 0
            assert caches.retrain.get(k0)["trained_by"] == "B" and caches.retrain.get(k1) is None
            assert json.loads((root / "B" / "deferred.json").read_text())["retrain_key"] == k1
        a = run_trial(cfg_a, root / "A", caches)  # A takes over its own claim, reuses B's seed 0
        assert [r["retrain_cached"] for r in json.loads(a["replicates_json"])] == [True, False]
        if way == "wait":
            waiter.join(timeout=120)
            assert "wait" in rows
        else:
            assert caches.retrain.wait_for(k1, owner="B")["trained_by"] == "A"
            rows["defer"] = run_trial(cfg_b, root / "B", caches, resume=True, defer_claimed=True)
            assert not (root / "B" / "deferred.json").exists()
        text = log_b.read_text()
        assert text.count("retraining ") == 1 and "retrain seed 1 skipped" in text and "trained by 'A'" in text
        assert text.count(" done: ") == 1
        assert len(list(caches.retrain.root.glob("*.json"))) == 2 and not list(caches.retrain.root.glob("*.claim"))

    def content(row: dict) -> str:  # the row without the wall-clock measurements
        reps = [{k: v for k, v in r.items() if k != "retrain_time_s"} for r in json.loads(row["replicates_json"])]
        rest = {k: v for k, v in row.items() if k not in ("trial_time_s", "retrain_time_s", "replicates_json")}
        return json.dumps({**rest, "replicates": reps}, sort_keys=True)

    waited, deferred = rows["wait"], rows["defer"]
    assert [r["retrain_cached"] for r in json.loads(deferred["replicates_json"])] == [False, True]
    assert not deferred["retrain_cached"] and deferred["retrain_time_s"] > 0
    assert content(deferred) == content(waited)
