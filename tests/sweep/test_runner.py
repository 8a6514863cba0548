"""Sweeps through Tune + Optuna on the direct backend: failures stay isolated, duplicates reuse retrains,
a crashed trial is retried from its Ray checkpoint, the BMTAS warm-up is computed once, and a sweep whose
driver is killed resumes without rerunning finished trials, on a Ray of its own beside a ``ray start``
cluster."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import HERE, kill_tree, process_tree, tiny_base

from branchsweep.sweep import SearchSpace, SweepConfig, run_sweep

pytestmark = pytest.mark.ray

LTB_POINT = {"method": "ltb", "ltb.child_nodes": 2, "ltb.schedule": "inverse_sqrt", "ltb.tau0": 50.0}
BMTAS_POINT = {"method": "bmtas", "bmtas.lambda": 0.1, "bmtas.schedule": "linear", "bmtas.tau0": 5.0}


def _config(out: Path, **kw) -> SweepConfig:
    defaults = dict(name="t", out=out, base=tiny_base(), space=SearchSpace(), num_trials=2, concurrency=2,
                    cpus_per_trial=1.0, backend="direct", max_failures=0, report=False, verbose=False)
    return SweepConfig(**{**defaults, **kw})


def _log(folder: Path) -> str:
    return (folder / "trial.log").read_text()


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
    assert failed.trial_id.str.fullmatch(r"[0-9a-f]{8}").all()  # failed before reporting: id from its folder
    ok = df[(df.status == "ok") & ~df.is_baseline]
    assert len(ok) == 2 and ok.arch_hash.nunique() == 1
    assert sorted(ok.retrain_cached.tolist()) == [False, True]  # the identical second trial reused the first
    assert ok.madds.notna().all() and ok.delta_m.notna().all()
    log = (outcome.run_dir / "sweep.log").read_text()
    assert "retrain dedup: 1 of 4 trials reused a cached retrain" in log
    assert "failed 1" in log
    spec = json.loads((outcome.run_dir / "metrics.json").read_text())  # what the report reads
    metric_columns = {c for c in df.columns if "/" in c and not c.startswith(("hp/", "delta_m")) and not c.endswith("/se")}
    assert set(spec["primary"]) <= metric_columns <= set(spec["directions"])


@pytest.fixture(scope="module")
def bmtas_sweep(ray_local, tmp_path_factory):
    """Three BMTAS trials with different λ and schedules, one at a time, ``max_failures=1``; the first
    search trial crashes once right after reporting its exported architecture (sweep_hooks)."""
    hooks = ray_local / "hooks"
    for name in ("warmup-saves.log", "warmup-loads.log"):
        (hooks / name).unlink(missing_ok=True)
    run = tmp_path_factory.mktemp("bmtas-sweep") / "run"
    (hooks / "crash-after-export").write_text(str(run.resolve()))
    points = [BMTAS_POINT, {**BMTAS_POINT, "bmtas.lambda": 1.0, "bmtas.schedule": "exponential"},
              {**BMTAS_POINT, "bmtas.lambda": 0.5, "bmtas.schedule": "constant", "bmtas.tau0": 2.0}]
    try:
        outcome = run_sweep(_config(run, num_trials=3, concurrency=1, max_failures=1, baselines=("single",),
                                    space=SearchSpace(methods=("bmtas",)), points=points))
    finally:
        (hooks / "crash-after-export").unlink(missing_ok=True)
    saves, loads = ((hooks / f"warmup-{k}.log").read_text().splitlines() if (hooks / f"warmup-{k}.log").exists()
                    else [] for k in ("saves", "loads"))
    cache = str(run.resolve() / "cache")
    return outcome, [s for s in saves if cache in s], [s for s in loads if cache in s]


def test_crashed_trial_is_retried_from_its_checkpoint_without_searching_again(bmtas_sweep):
    outcome, _, _ = bmtas_sweep
    df = pd.read_parquet(outcome.results_path)
    search = df[~df.is_baseline]
    assert len(search) == 3 and (search.status == "ok").all(), search.to_dict("records")
    logs = {t: _log(outcome.run_dir / "trials" / t) for t in search.trial_id}
    retried = [t for t, text in logs.items() if "already exported by an earlier attempt" in text]
    assert len(retried) == 1, logs  # exactly the trial that crashed
    text = logs[retried[0]]
    # One search, then the retry restored the export from the Ray checkpoint (the crash deleted the
    # trial folder's copy and the search checkpoints) and went straight to the retrain.
    assert text.count("] search bmtas") == 1 and text.count(" done: ") == 1, text
    assert text.index("priced before retraining") < text.index("already exported") < text.index("retraining ")
    work = outcome.run_dir / "trials" / retried[0]
    assert not (work / "search").exists()
    assert (work / "branch_config.json").is_file() and (work / "search_info.json").is_file()
    row = search[search.trial_id == retried[0]].iloc[0]
    assert row.search_time_s > 0  # from the checkpointed search_info.json, not a new search
    for other in set(logs) - set(retried):
        assert "already exported" not in logs[other] and logs[other].count("] search bmtas") == 1


def test_bmtas_warmup_is_computed_once_per_sweep(bmtas_sweep):
    outcome, saves, loads = bmtas_sweep
    warm = sorted((outcome.run_dir / "cache" / "bmtas" / "warmup").glob("*.pt"))
    assert len(warm) == 1
    # The first trial warmed up and saved; the others loaded that file instead (the crashed trial's
    # retry never reached its search). Counted in the worker processes by sweep_hooks.
    assert len(saves) == 1, saves
    assert len(loads) == 2 and all(line.endswith(str(warm[0])) for line in loads), loads
    log = (outcome.run_dir / "sweep.log").read_text()
    assert "warm-up: 1 warmed-up supergraph(s)" in log and "shared by 3 BMTAS trial(s)" in log


# ------------------------------------------------------------------------------- which Ray a driver joins
PROBE = """
import json
import ray
from branchsweep.sweep import connect_ray
started = connect_ray(num_cpus=1, local={local})
print("PROBE " + json.dumps({{"started": started, "address": ray.get_runtime_context().gcs_address}}))
ray.shutdown()
"""


def _probe(env: dict[str, str], local: bool) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(local=local)], env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PROBE "))
    return json.loads(line[len("PROBE "):]), proc.stdout


def test_retrain_retried_from_its_last_checkpoint_after_losing_its_scratch(ray_local, tmp_path, monkeypatch):
    """A search trial crashes right after its retrain reported the checkpoint of iteration 4, and its
    node-local scratch is gone (as on a reclaimed node): the retry restores the Ray checkpoint and
    continues at iteration 5; iterations 1-4 and the search are not run again. Progress reports reach
    Ray's MLflow logger (a local file store), several per trial."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    hooks, scratch = ray_local / "hooks", tmp_path / "scratch"
    (hooks / "crash-mid-retrain").write_text(str(scratch))
    base = tiny_base()
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, checkpoint_every=4))
    try:
        outcome = run_sweep(_config(tmp_path / "run", base=base, num_trials=1, concurrency=1, max_failures=1,
                                    baselines=("single",), points=[LTB_POINT], scratch=str(scratch),
                                    progress_every_s=0.0, mlflow_uri=f"file://{tmp_path / 'mlruns'}"))
    finally:
        (hooks / "crash-mid-retrain").unlink(missing_ok=True)
    df = pd.read_parquet(outcome.results_path)
    search = df[~df.is_baseline]
    assert len(search) == 1 and (search.status == "ok").all(), search.to_dict("records")
    text = _log(outcome.run_dir / "trials" / search.trial_id.iloc[0])
    first = re.findall(r"retrain: first step this attempt is iteration (\d+) \(node \w+\)", text)
    assert first == ["1", "5"], text  # the retry resumed after the checkpoint of iteration 4
    assert text.count("] search ltb") == 1 and "already exported by an earlier attempt" in text, text
    assert text.count(" done: ") == 1
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"file://{tmp_path / 'mlruns'}")
    experiment = client.get_experiment_by_name("t")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) >= 2  # the Single baseline and the search trial
    history = max((client.get_metric_history(r.info.run_id, "retrain/loss") for r in runs), key=len)
    assert len(history) >= 5 and all(math.isfinite(m.value) for m in history)


def test_default_joins_a_ray_start_cluster_and_local_starts_a_private_one(foreign_cluster):
    address, env = foreign_cluster
    assert address.startswith("127.0.0.1:")  # tests keep Ray on the loopback interface (tests/conftest.py)
    joined, out = _probe(env, local=False)
    assert joined == {"started": False, "address": address}
    assert f"[sweep] Ray: joined the cluster from `ray start` (--local for a private instance): {address}, " \
           "1 node(s), 1 CPU, 0 GPU" in out
    private, out = _probe(env, local=True)
    assert private["started"] and private["address"] != address and private["address"].startswith("127.0.0.1:")
    assert f"[sweep] Ray: started a private instance: {private['address']}, 1 node(s), 1 CPU, 0 GPU" in out


# ----------------------------------------------------------------------------------- kill and resume
DRIVER = """
import sys
sys.path[:0] = [{here!r}]
from pathlib import Path
import sweep_hooks
sweep_hooks.register_gate()
from conftest import tiny_base
from branchsweep.sweep import SearchSpace, SweepConfig, run_sweep
point = {{"method": "ltb", "ltb.schedule": "inverse_sqrt", "ltb.tau0": 50.0}}
points = [{{**point, "ltb.child_nodes": 1}}, {{**point, "ltb.child_nodes": 2}},
          {{**point, "ltb.child_nodes": 2, "ltb.schedule": "gate"}}]
cfg = SweepConfig(name="r", out=Path({out!r}), base=tiny_base(),
                  space=SearchSpace(methods=("ltb",), ranges={{"ltb": {{"schedules": ("inverse_sqrt", "gate")}}}}),
                  num_trials=4, concurrency=1, backend="direct", report=False, verbose=True, num_cpus=2,
                  local=True, resume={resume}, resume_from={resume_from!r}, baselines=("single",), points=points)
run_sweep(cfg)
"""


def _driver(out: Path, env: dict[str, str], resume: bool, log: Path, resume_from: str | None = None) -> subprocess.Popen:
    code = DRIVER.format(here=str(HERE), out=str(out), resume=resume, resume_from=resume_from)
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                                stdout=handle, stderr=subprocess.STDOUT)


def _finished(out: Path) -> dict[str, dict]:
    """``trial folder name -> result.json`` of every finished search trial."""
    found = {}
    for path in sorted((out / "trials").glob("*/result.json")):
        row = json.loads(path.read_text())
        if not row["is_baseline"]:
            found[path.parent.name] = row
    return found


def _journal_trials(path: Path) -> list:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(path)))
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)


def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path, foreign_cluster):
    """The third search trial blocks on a gate (sweep_hooks) until the test opens it; the driver is
    killed while it waits, so exactly two search trials have finished, whatever the machine's speed.
    The second driver resumes the first one's run folder into another ``--out``: the study and
    ``sweep.log`` stay in the sweep's folder and are continued (a fourth trial is suggested after the
    restore), and the results are written to the new folder and copied to the sweep's.

    The drivers run where Ray's convention would join the ``ray start`` cluster (same ``RAY_TMPDIR``)
    and use ``local=True`` (``--local``): they must start and use a private instance."""
    foreign_address, foreign_env = foreign_cluster
    out, hooks = tmp_path / "run", tmp_path / "hooks"
    hooks.mkdir()
    env = {**foreign_env, "HOME": str(tmp_path), "BRANCHSWEEP_TEST_HOOKS": str(hooks),
           "RAY_RUNTIME_ENV_HOOK": "sweep_hooks.runtime_env_hook",
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)}
    drivers: list[subprocess.Popen] = []
    orphans: list = []  # a killed driver's Ray processes, collected while it lived
    try:
        first = _driver(out, env, resume=False, log=tmp_path / "first.log")
        drivers.append(first)
        deadline = time.monotonic() + 240
        while not list(hooks.glob("gate-blocked-*")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None and list(hooks.glob("gate-blocked-*")), \
            f"the gated trial never started (exit {first.poll()})"
        orphans = process_tree(first.pid)
        kill_tree(orphans)  # the driver, its private Ray and the trial waiting at the gate
        first.wait(timeout=60)
        first_log = (tmp_path / "first.log").read_text()
        before = _finished(out)
        assert len(before) == 2, first_log[-3000:]
        assert "[sweep] Ray: started a private instance" in first_log and foreign_address not in first_log
        journal = out / "optuna" / "optuna.journal"
        assert sorted(t.state.name for t in _journal_trials(journal)) == ["COMPLETE", "COMPLETE", "RUNNING"]
        first_lines = (out / "sweep.log").read_text()

        (hooks / "gate-open").touch()
        second = _driver(tmp_path / "second", env, resume=True, log=tmp_path / "second.log", resume_from=str(out))
        drivers.append(second)
        second.wait(timeout=240)
    finally:
        for driver in drivers:  # whatever still runs, by process id; then reap
            kill_tree(process_tree(driver.pid) + orphans)
            driver.wait(timeout=60)
    log = (tmp_path / "second.log").read_text()
    assert second.returncode == 0, log[-3000:]
    assert "[sweep] Ray: started a private instance" in log and foreign_address not in log
    assert len(list(hooks.glob("gate-blocked-*"))) == 1
    df = pd.read_parquet(tmp_path / "second" / "results.parquet")
    assert df.equals(pd.read_parquet(out / "results.parquet"))  # copied to the sweep's folder
    search = df[~df.is_baseline]
    assert len(search) == 4 and (search.status == "ok").all(), search.to_dict("records")
    # One study, continued in place: every search trial told once (the fourth asked after the restore).
    trials = _journal_trials(journal)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert {t.user_attrs["tune_trial_id"] for t in complete} == set(search.trial_id) and len(complete) == 4
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert not (tmp_path / "second" / "optuna").exists() and not (tmp_path / "second" / "sweep.log").exists()
    lines = (out / "sweep.log").read_text()
    assert lines.startswith(first_lines) and "resumed by a new driver" in lines and "[economy] trials: 5 ok" in lines
    # Every trial that had finished before the kill is in the results and was not run again.
    assert set(before) <= set(search.trial_id)
    for folder, row in before.items():
        text = _log(out / "trials" / folder)
        assert text.count(" done: ") == 1 and text.count("] search ltb") == 1, text
        assert int(search.loc[search.trial_id == folder, "madds"].iloc[0]) == row["madds"]
        assert search.loc[search.trial_id == folder, "arch_hash"].iloc[0] == row["arch_hash"]
    after = _finished(out)
    assert set(after) >= set(search.trial_id) and {k: after[k] for k in before} == before


@pytest.mark.slow
def test_time_budget_starts_no_new_trial_and_lets_the_running_one_finish(ray_local, tmp_path, monkeypatch):
    """The first search trial blocks on the gate; the driver's clock is moved past ``--time-budget``
    while it runs, then the gate opens: that trial finishes and is told, and no second trial starts
    (three were asked for). Tune's own ``time_budget_s`` would have stopped the running trial."""
    import threading

    import sweep_hooks

    from branchsweep.search.schedules import SCHEDULES
    from branchsweep.sweep import searcher

    hooks = ray_local / "hooks"
    sweep_hooks.register_gate()
    gated = {**LTB_POINT, "ltb.schedule": "gate"}
    cfg = _config(tmp_path / "run", num_trials=3, concurrency=1, baselines=("single",), points=[gated, LTB_POINT],
                  space=SearchSpace(methods=("ltb",), ranges={"ltb": {"schedules": ("inverse_sqrt", "gate")}}),
                  time_budget_s=600.0)
    done: dict = {}
    runner = threading.Thread(target=lambda: done.setdefault("outcome", run_sweep(cfg)))
    runner.start()
    try:
        deadline = time.monotonic() + 240
        while not list(hooks.glob("gate-blocked-*")) and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(hooks.glob("gate-blocked-*")), "the gated trial never started"
        real = searcher.clock
        monkeypatch.setattr(searcher, "clock", lambda: real() + 601.0)  # the budget ends while it runs
    finally:
        (hooks / "gate-open").touch()
        runner.join(300)
        for marker in [hooks / "gate-open", *hooks.glob("gate-blocked-*")]:
            marker.unlink(missing_ok=True)
        SCHEDULES.unregister(sweep_hooks.GATE)
    outcome = done["outcome"]
    df = pd.read_parquet(outcome.results_path)
    search = df[~df.is_baseline]
    assert len(search) == 1 and (search.status == "ok").all(), search.to_dict("records")
    assert "gate" in {v for k, v in search.iloc[0].items() if k.startswith("hp/")}  # the gated trial
    log = (outcome.run_dir / "sweep.log").read_text()
    assert "time budget reached: no new search trial (running ones finish)" in log
    trials = _journal_trials(outcome.run_dir / "optuna" / "optuna.journal")
    (trial,) = [t for t in trials if t.state.name != "WAITING"]  # the second point stays enqueued, never asked
    assert trial.state.name == "COMPLETE" and trial.user_attrs["tune_trial_id"] == search.trial_id.iloc[0]


def test_latency_cost_sweep_end_to_end(ray_local, tmp_path):
    """``--cost both``: every trial measures its tree's latency on the node that retrains it, Optuna
    minimises MAdds and latency and maximises Δm, and the report shows the latency front, the MAdds-vs-
    latency figure and the rank correlation."""
    import optuna

    from branchsweep.sweep import study

    base = dataclasses.replace(tiny_base(), cost="both", latency={"warmup": 1, "repeats": 3})
    outcome = run_sweep(_config(tmp_path / "run", base=base, num_trials=2, concurrency=1, report=True,
                                space=SearchSpace(methods=("ltb",)),
                                points=[LTB_POINT, {**LTB_POINT, "ltb.child_nodes": 1}]))
    df = pd.read_parquet(outcome.results_path)
    assert (df.status == "ok").all() and len(df) == 4
    assert (df.latency_ms > 0).all() and (df.latency_settings == "cpu, batch 1, 1 thread, torch").all()
    storage = study.open_storage(None, outcome.run_dir / "optuna")
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.directions == [optuna.study.StudyDirection.MINIMIZE] * 2 + [optuna.study.StudyDirection.MAXIMIZE]
    assert json.loads((outcome.run_dir / "sweep.json").read_text())["base"]["cost"] == "both"
    md = (outcome.report_dir / "report.md").read_text()
    assert "## Pareto front (MAdds ↓, latency ↓, Δm ↑)" in md and "latency [ms]" in md
    if df.arch_hash.nunique() >= 3:  # a rank correlation needs three architectures
        assert "MAdds vs measured latency: Spearman ρ" in md
        assert (outcome.report_dir / "madds_vs_latency.png").is_file()
