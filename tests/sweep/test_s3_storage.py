"""Sweeps whose storage is S3, against moto's S3 server on 127.0.0.1 started by the test.

The driver is killed mid-sweep; its folder and scratch are deleted, and a second driver, in a fresh
temporary home (its own HOME, Ray temp folder, run folder and scratch: nothing of the first driver's
disk), resumes from the S3 prefix it printed: no finished trial runs again, no result is lost, the Optuna
journal in the prefix (synced as the first driver ran) continues with a trial suggested after the
restore, and sweep.log keeps both drivers' lines. Another sweep run into the same bucket prefix meanwhile
gets its own prefix, and neither sweep sees the other's files. Keys that would escape the folder they
are downloaded to are refused.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import HERE, free_port, kill_tree, process_tree, ray_env, short_tmp

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BUCKET = "sweeps"

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
          {{**point, "ltb.child_nodes": 2, "ltb.schedule": "gate"}}][:{num_points}]
cfg = SweepConfig(name="s3", out=Path({out!r}), base=tiny_base(), storage_path={storage!r}, resume_from={resume!r},
                  space=SearchSpace(methods=("ltb",), ranges={{"ltb": {{"schedules": ("inverse_sqrt", "gate")}}}}),
                  num_trials={num_trials}, concurrency=1, backend="direct", report=False, verbose=True, num_cpus=2,
                  local=True, baselines=("single",), points=points)
run_sweep(cfg)
"""


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free port of 127.0.0.1 with one bucket; yields ``(client, env)``."""
    pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_EC2_METADATA_DISABLED": "true"}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client, env
    finally:
        server.stop()


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _get(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _finished(client, prefix: str) -> dict[str, dict]:
    """``trial id -> result.json`` of every finished search trial persisted under ``prefix``."""
    out = {}
    for key in _keys(client, f"{prefix}/trials/"):
        if key.endswith("/result.json"):
            row = json.loads(_get(client, key))
            if not row["is_baseline"]:
                out[key.split("/")[-2]] = row
    return out


def _driver(log: Path, env: dict, **kw) -> subprocess.Popen:
    code = DRIVER.format(here=str(HERE), **kw)
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True, stdout=handle,
                                stderr=subprocess.STDOUT)


def _journal(client, prefix: str, tmp: Path):
    """The Optuna trials of the journal stored under ``prefix`` (one study)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = tmp / f"journal-{time.monotonic_ns()}"
    path.write_bytes(_get(client, f"{prefix}/optuna/optuna.journal"))
    storage = JournalStorage(JournalFileBackend(str(path)))
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)


def test_download_refuses_keys_that_escape_the_target_folder(s3, tmp_path, monkeypatch):
    from branchsweep.errors import ConfigError
    from branchsweep.sweep import storage

    client, s3_env = s3
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    client.put_object(Bucket=BUCKET, Key="evil/optuna/optuna.journal", Body=b"ok")
    client.put_object(Bucket=BUCKET, Key="evil/optuna/../../escape.txt", Body=b"pwned")
    with pytest.raises(ConfigError, match=r"evil/optuna/\.\./\.\./escape\.txt: refusing to download a key"):
        storage.download(f"s3://{BUCKET}/evil/optuna", tmp_path / "a" / "b")
    assert not list(tmp_path.rglob("*.txt")) and not (tmp_path / "a" / "b" / "optuna.journal").exists()
    client.delete_object(Bucket=BUCKET, Key="evil/optuna/../../escape.txt")
    client.put_object(Bucket=BUCKET, Key="evil/optuna//root.txt", Body=b"pwned")  # "/root.txt" below the prefix
    with pytest.raises(ConfigError, match="refusing to download"):
        storage.download(f"s3://{BUCKET}/evil/optuna", tmp_path / "a" / "b")
    client.delete_object(Bucket=BUCKET, Key="evil/optuna//root.txt")
    assert storage.download(f"s3://{BUCKET}/evil/optuna", tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / "optuna.journal").read_bytes() == b"ok"


def test_s3_sweep_killed_resumed_from_s3_and_a_second_sweep_beside_it(s3, tmp_path):
    client, s3_env = s3
    tmp = short_tmp("bs3")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    env = {**os.environ, **ray_env(tmp), **s3_env, "BRANCHSWEEP_TEST_HOOKS": str(hooks),
           "BRANCHSWEEP_SCRATCH": str(tmp_path / "scratch"), "RAY_RUNTIME_ENV_HOOK": "sweep_hooks.runtime_env_hook",
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)}
    storage = f"s3://{BUCKET}/team"
    drivers: list[subprocess.Popen] = []
    orphans: list = []
    try:
        first = _driver(tmp_path / "first.log", env, out=str(tmp_path / "first"), storage=storage, resume=None,
                        num_points=3, num_trials=4)
        drivers.append(first)
        deadline = time.monotonic() + 240
        while not list(hooks.glob("gate-blocked-*")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        first_log = (tmp_path / "first.log").read_text()
        assert first.poll() is None and list(hooks.glob("gate-blocked-*")), first_log[-3000:]
        # While the first sweep waits at the gate, a second sweep runs into the same bucket prefix.
        other = _driver(tmp_path / "other.log", env, out=str(tmp_path / "other"), storage=storage, resume=None,
                        num_points=1, num_trials=1)
        drivers.append(other)
        other.wait(timeout=300)
        other_log = (tmp_path / "other.log").read_text()
        assert other.returncode == 0, other_log[-3000:]
        orphans = process_tree(first.pid)
        kill_tree(orphans)
        first.wait(timeout=60)
        first_log = (tmp_path / "first.log").read_text()
        prefix_uri = re.search(r"\[sweep\] storage: (s3://\S+)", first_log).group(1)
        assert re.fullmatch(rf"{storage}/s3-\d{{8}}-\d{{6}}-[0-9a-f]{{4}}", prefix_uri)
        prefix = prefix_uri.removeprefix(f"s3://{BUCKET}/")
        before = _finished(client, prefix)
        assert len(before) == 2, first_log[-3000:]
        assert f"{prefix}/results.parquet" not in _keys(client, prefix)
        assert not (tmp_path / "first" / "trials").exists()  # trials work in scratch, persist to S3
        # The journal and sweep.log in S3 were written as the first driver ran, not at its end: two
        # search trials told, the gated one asked (RUNNING), no fourth asked.
        journal = _journal(client, prefix, tmp_path)
        assert sorted(t.state.name for t in journal) == ["COMPLETE", "COMPLETE", "RUNNING"], journal
        assert {t.user_attrs["tune_trial_id"] for t in journal if t.state.name == "COMPLETE"} == set(before)
        assert f"sweep s3 in {prefix_uri} (new)" in _get(client, f"{prefix}/sweep.log").decode()

        (hooks / "gate-open").touch()
        # A fresh home: nothing of the first driver's disk is left; the resumed driver has only the S3 prefix.
        shutil.rmtree(tmp_path / "first")
        shutil.rmtree(tmp_path / "scratch")
        home = short_tmp("bs4")
        fresh = {**env, **ray_env(home), "BRANCHSWEEP_SCRATCH": str(home / "scratch")}
        second = _driver(tmp_path / "second.log", fresh, out=str(home / "second"), storage=None, resume=prefix_uri,
                         num_points=3, num_trials=4)
        drivers.append(second)
        second.wait(timeout=300)
        log = (tmp_path / "second.log").read_text()
        assert second.returncode == 0, log[-3000:]
    finally:
        for driver in drivers:
            kill_tree(process_tree(driver.pid) + orphans)
            driver.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
        if "home" in locals():
            shutil.rmtree(home, ignore_errors=True)
    df = pd.read_parquet(io.BytesIO(_get(client, f"{prefix}/results.parquet")))
    search = df[~df.is_baseline]
    assert len(search) == 4 and (search.status == "ok").all(), search.to_dict("records")
    # The same study, continued: every search trial told once, the fourth asked by the resumed driver;
    # a RUNNING trial no Tune trial continued would have been told FAIL (none is left RUNNING).
    journal = _journal(client, prefix, tmp_path)
    complete = [t for t in journal if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and {t.user_attrs["tune_trial_id"] for t in complete} == set(search.trial_id)
    assert not [t for t in journal if t.state.name == "RUNNING"]
    sweep_log = _get(client, f"{prefix}/sweep.log").decode()
    zombies = [t for t in journal if t.state.name == "FAIL"]  # asked after Tune's last checkpoint, if any
    assert len(journal) == 4 + len(zombies) and (not zombies or "told FAIL" in sweep_log)
    assert f"sweep s3 in {prefix_uri} (new)" in sweep_log and "resumed by a new driver" in sweep_log
    assert "journal downloaded" in sweep_log
    assert df.delta_m.notna().all()
    assert set(before) <= set(search.trial_id)  # no result lost
    for trial_id, row in before.items():  # and no finished trial ran again
        text = _get(client, f"{prefix}/trials/{trial_id}/trial.log").decode()
        assert text.count(" done: ") == 1 and text.count("] search ltb") == 1, text
        assert int(search.loc[search.trial_id == trial_id, "madds"].iloc[0]) == row["madds"]
    assert len(list(hooks.glob("gate-blocked-*"))) == 1
    assert f"{prefix}/metrics.json" in _keys(client, prefix) and f"{prefix}/sweep.json" in _keys(client, prefix)

    # The sweep beside it in the same storage: its own prefix, results intact, no file of the other's.
    other_prefix = re.search(r"\[sweep\] storage: (s3://\S+)", other_log).group(1).removeprefix(f"s3://{BUCKET}/")
    assert other_prefix != prefix and other_prefix.startswith("team/s3-")
    other_df = pd.read_parquet(io.BytesIO(_get(client, f"{other_prefix}/results.parquet")))
    assert len(other_df) == 2 and (other_df.status == "ok").all()
    assert set(_finished(client, prefix)) == set(search.trial_id)
    assert not set(_finished(client, other_prefix)) & set(search.trial_id)
