"""A sweep on a multi-node Ray cluster (``ray.cluster_utils.Cluster``: one raylet per node, all on this
machine) whose head, the driver's node, runs no trial (0 CPUs), and whose two worker nodes each have
their own scratch root and cannot see the driver's run folder (Python file operations on it are refused
in every Ray worker, :mod:`sweep_hooks`). A search trial's node is killed in the middle of its retrain;
the retry, on the other node, resumes from the trial's last Ray checkpoint (iterations 1-4 and the
search are not run again) with nothing from the dead node's scratch or the driver's disk.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import free_port, hooked_runtime_env, ray_env, restore_env, short_tmp, tiny_base

from branchsweep.sweep import SearchSpace, SweepConfig, run_sweep

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LTB_POINT = {"method": "ltb", "ltb.child_nodes": 2, "ltb.schedule": "inverse_sqrt", "ltb.tau0": 50.0}


@dataclasses.dataclass
class FakeCluster:
    cluster: object
    #: Ray node id -> (the node's handle, its scratch root) for the two worker nodes.
    workers: dict[str, tuple[object, Path]]
    hooks: Path
    tmp: Path
    #: The driver's run folder, hidden from every Ray worker.
    driver_disk: Path


@pytest.fixture
def fake_cluster():
    """Head with 0 CPUs plus two 1-CPU worker nodes, each with its own ``BRANCHSWEEP_SCRATCH``; every
    port on 127.0.0.1 and free; Ray's files under a tmp folder; stopped through the cluster's handle."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    tmp = short_tmp("bsm")
    hooks, driver_disk = tmp / "hooks", tmp / "driver"
    hooks.mkdir()
    (hooks / "hidden").write_text(str(driver_disk))  # read by each worker process when it starts
    saved = {k: os.environ.get(k) for k in ray_env(tmp)}
    os.environ.update(ray_env(tmp))  # raylets inherit this environment: Ray's files stay under tmp

    def ports() -> dict[str, int]:  # instead of the fixed defaults (8265, 52365) another Ray may hold
        return {"dashboard_agent_listen_port": free_port(), "dashboard_port": free_port()}

    common = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}
    made = None
    try:
        made = Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args={
            **common, **ports(), "num_cpus": 0, "gcs_server_port": free_port(), "include_dashboard": False,
            "env_vars": {"BRANCHSWEEP_SCRATCH": str(tmp / "scratch-head")}})
        workers = {}
        for name in ("a", "b"):
            scratch = tmp / f"scratch-{name}"
            node = made.add_node(**common, **ports(), num_cpus=1, env_vars={"BRANCHSWEEP_SCRATCH": str(scratch)})
            workers[node.node_id] = (node, scratch)
        made.wait_for_nodes()
        ray.init(address=made.address, log_to_driver=False, runtime_env=hooked_runtime_env(hooks))
        assert ray.get_runtime_context().get_node_id() == made.head_node.node_id  # the driver is on the head
        yield FakeCluster(made, workers, hooks, tmp, driver_disk)
    finally:
        (hooks / "release").touch()  # a trial still held gives up
        ray.shutdown()
        if made is not None:
            made.shutdown()  # every node's processes, head last
        shutil.rmtree(tmp, ignore_errors=True)
        restore_env(saved)


def _kill_held_node(fake: FakeCluster, killed: list[str], errors: list[Exception],
                    stop: threading.Event) -> None:
    """Kill (SIGKILL, no grace) the worker node whose trial is held in its retrain, once."""
    while not stop.is_set():
        held = list(fake.hooks.glob("held-*"))
        if held:
            node_id = held[0].name.removeprefix("held-")
            try:
                fake.cluster.remove_node(fake.workers[node_id][0], allow_graceful=False)
                killed.append(node_id)
            except Exception as err:  # reported by the test
                errors.append(err)
                (fake.hooks / "release").touch()
            return
        stop.wait(0.1)


def test_node_killed_mid_retrain_resumes_on_another_node_from_its_checkpoint(fake_cluster):
    fake = fake_cluster
    (fake.hooks / "hold-mid-retrain").touch()
    killed: list[str] = []
    errors: list[Exception] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_held_node, args=(fake, killed, errors, stop), daemon=True)
    killer.start()
    base = tiny_base()
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, checkpoint_every=4))
    shared = fake.tmp / "shared"  # the sweep's storage: a folder every node sees (as a shared mount)
    cfg = SweepConfig(name="mn", out=fake.driver_disk, storage_path=str(shared), base=base,
                      space=SearchSpace(methods=("ltb",)), num_trials=1, concurrency=1, cpus_per_trial=1.0,
                      backend="direct", max_failures=2, baselines=("single",), points=[LTB_POINT],
                      report=False, verbose=False)
    try:
        outcome = run_sweep(cfg)
    finally:
        stop.set()
        killer.join(timeout=60)
    assert not errors, errors
    assert len(killed) == 1, "no search trial was held in its retrain on a worker node"
    assert not (fake.hooks / "hidden-access.log").exists(), (fake.hooks / "hidden-access.log").read_text()

    prefix = Path(cfg.prefix)
    df = pd.read_parquet(prefix / "results.parquet")
    search = df[~df.is_baseline]
    assert len(search) == 1 and (search.status == "ok").all(), search.to_dict("records")
    row = search.iloc[0]
    assert pd.notna(row.delta_m) and pd.notna(row.madds) and all(pd.notna(row[c]) for c in df.columns
                                                                 if c.endswith("/mse"))
    trial_id = row.trial_id
    text = (prefix / "trials" / trial_id / "trial.log").read_text()
    first = re.findall(r"retrain: first step this attempt is iteration (\d+) \(node (\w+)\)", text)
    # The first attempt retrained on the node that was killed; the retry, on the other worker node,
    # continued after the checkpoint of iteration 4 instead of starting over, and did not search again.
    assert [int(i) for i, _ in first] == [1, 5], text
    assert first[0][1] == killed[0] and first[1][1] != killed[0] and first[1][1] in fake.workers, text
    assert text.count("] search ltb") == 1 and "already exported by an earlier attempt" in text, text
    assert text.count(" done: ") == 1, text

    # The driver's disk holds only what the driver writes; trials wrote to storage and node scratch.
    assert not (fake.driver_disk / "trials").exists() and (fake.driver_disk / "results.parquet").is_file()
    assert not (fake.tmp / "scratch-head").exists()
    dead_scratch = fake.workers[killed[0]][1]
    survivor = next(s for n, (_, s) in fake.workers.items() if n != killed[0])
    # The dead node's copy of the checkpoint was left behind; the retry, which cannot see it, resumed
    # from the Ray checkpoint. Trials remove their working folders when they finish: the surviving node
    # ran the retry (and maybe the baseline) and keeps no file.
    assert list(dead_scratch.glob(f"*/{trial_id}/retrain/seed*/checkpoint.pt"))
    assert survivor.is_dir() and not [p for p in survivor.rglob("*") if p.is_file()]
    assert outcome.run_dir == fake.driver_disk
