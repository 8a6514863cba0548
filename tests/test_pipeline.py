"""The trial pipeline without Ray: baselines, Δm, MAdds before retraining, retrain dedup, NaN failures."""

from __future__ import annotations

import json
import math
import os
import shutil
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
