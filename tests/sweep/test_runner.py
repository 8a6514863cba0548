"""Sweeps through Tune + Optuna on the direct backend: failures stay isolated, duplicates reuse retrains,
and a sweep whose driver is killed resumes without rerunning finished trials."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ray_env, tiny_base

from branchsweep.errors import ConfigError
from branchsweep.sweep import SearchSpace, SweepConfig, run_sweep
from branchsweep.sweep.runner import finished_trial_results

pytestmark = pytest.mark.ray

LTB_POINT = {"method": "ltb", "seed": 0, "ltb.child_nodes": 2, "ltb.schedule": "inverse_sqrt", "ltb.tau0": 50.0}
BMTAS_POINT = {"method": "bmtas", "seed": 0, "bmtas.lambda": 0.1, "bmtas.schedule": "linear", "bmtas.tau0": 5.0}


def _config(out: Path, **kw) -> SweepConfig:
    defaults = dict(name="t", out=out, base=tiny_base(), space=SearchSpace(), num_trials=2, concurrency=2,
                    cpus_per_trial=1.0, backend="direct", max_failures=0, report=False, verbose=False)
    return SweepConfig(**{**defaults, **kw})


def test_failing_trial_is_recorded_and_duplicates_reuse_the_retrain(ray_local, tmp_path):
    # LTB with a huge learning rate diverges (NaN search loss): those trials must fail alone.
    cfg = _config(tmp_path / "run", base=tiny_base(ltb={"lr": 1e30}), num_trials=3,
                  points=[BMTAS_POINT, LTB_POINT, BMTAS_POINT])
    outcome = run_sweep(cfg)
    df = pd.read_parquet(outcome.results_path)
    assert len(df) == 5  # Single + Shared + 3 search trials
    base = df[df.is_baseline]
    assert sorted(base.label) == ["Shared", "Single"] and (base.status == "ok").all()
    failed = df[df.status == "failed"]
    assert list(failed.method) == ["ltb"] and "nan" in failed.error.iloc[0].lower()
    ok = df[(df.status == "ok") & ~df.is_baseline]
    assert len(ok) == 2 and ok.arch_hash.nunique() == 1
    assert sorted(ok.retrain_cached.tolist()) == [False, True]  # the identical second trial reused the first
    assert ok.madds.notna().all() and ok.delta_m.notna().all()
    log = (outcome.run_dir / "sweep.log").read_text()
    assert "retrain dedup: 1 of 4 trials reused a cached retrain" in log
    assert "failed 1" in log
    spec = json.loads((outcome.run_dir / "metrics.json").read_text())  # what the report reads
    metric_columns = {c for c in df.columns if "/" in c and not c.startswith("hp/")}
    assert set(spec["primary"]) <= metric_columns <= set(spec["directions"])


def test_resume_without_unfinished_sweep_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="holds no sweep to resume"):
        _config(tmp_path / "nothing", resume=True).validate()


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import tiny_base
from branchsweep.sweep import SearchSpace, SweepConfig, run_sweep
cfg = SweepConfig(name="r", out=Path({out!r}), base=tiny_base(), space=SearchSpace(methods=("ltb",)),
                  num_trials=4, concurrency=1, backend="direct", report=False, verbose=True, num_cpus=2,
                  resume={resume}, baselines=("single",))
run_sweep(cfg)
"""


def _driver(out: Path, tmp: Path, resume: bool) -> subprocess.Popen:
    env = {**os.environ, **ray_env(tmp)}
    (tmp / "r").mkdir(parents=True, exist_ok=True)
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    code = DRIVER.format(tests=str(Path(__file__).parent), out=str(out), resume=resume)
    return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path):
    out = tmp_path / "run"
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bsk{os.getpid()}"
    proc = _driver(out, tmp, resume=False)
    deadline = time.monotonic() + 150
    # Kill the driver once two search trials (besides the Single baseline) have finished.
    while time.monotonic() < deadline and proc.poll() is None:
        done = [r for r in finished_trial_results(out) if not r["is_baseline"]]
        if len(done) >= 2:
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["label"]: r for r in finished_trial_results(out) if not r["is_baseline"]}
    assert 2 <= len(before) < 4
    finished_dirs = [p.parent for p in (out / "trials").glob("*/result.json")
                     if not json.loads(p.read_text())["is_baseline"]]
    time.sleep(2)  # let the killed session's Ray processes notice their parent is gone

    proc = _driver(out, tmp, resume=True)
    try:
        log, _ = proc.communicate(timeout=240)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, log[-3000:]
    df = pd.read_parquet(out / "results.parquet")
    search = df[~df.is_baseline]
    assert len(search) == 4 and (search.status == "ok").all()
    # Every trial that had finished before the kill is in the results and was not run again.
    for folder in finished_dirs:
        text = (folder / "trial.log").read_text()
        assert text.count(" done: ") == 1, text
    assert {d.name for d in finished_dirs} <= set(search.trial_id)
    for label, row in before.items():
        assert int(search.loc[search.label == label, "madds"].iloc[0]) == row["madds"]
