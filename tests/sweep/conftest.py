"""Ray for the sweep tests, always bound to 127.0.0.1 with its files under tmp paths.

* ``ray_local``: a module-scoped Ray started in the test process (2 CPUs, no dashboard) whose workers
  load :mod:`sweep_hooks` (inert until a test arms a hook in ``ray_local / "hooks"``);
* ``foreign_cluster``: a real ``ray start --head`` cluster, the kind a developer leaves running, with its
  own ``RAY_TMPDIR``/``HOME``; a driver that used Ray's "join what is running" convention in that
  ``RAY_TMPDIR`` would join it. It is stopped by the ids of its own processes, never with ``ray stop``
  (which stops every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.sweep import SweepBase

HERE = Path(__file__).resolve().parent
SWEEPS = HERE.parents[1] / "sweeps"

#: Tiny problem: 3 regression tasks of ltb-synthetic on a 4-layer MLP of 16 units; seconds per trial.
TINY_DATA = DataConfig(dataset="ltb-synthetic", train_samples=64, val_samples=16, tasks=["bent_0", "square_0", "sinc_0"])
TINY_MODEL = ModelConfig(backbone="mlp", width=0.16)
TINY_TRAIN = TrainConfig(iterations=10, batch_size=16, eval_batch_size=16, progress=False)
TINY_SEARCH = {"ltb": {"iterations": 10, "batch_size": 16},
               "bmtas": {"iterations": 10, "warmup_iterations": 4, "batch_size": 8, "checkpoint_every": 0}}


def tiny_base(**search_overrides: dict) -> SweepBase:
    search = {m: {**v, **search_overrides.get(m, {})} for m, v in TINY_SEARCH.items()}
    return SweepBase(data=TINY_DATA, model=TINY_MODEL, train=TINY_TRAIN, search_defaults=search)


def ray_env(tmp: Path) -> dict[str, str]:
    """Environment keeping Ray's files out of /tmp/ray, ~/.ray and ~/ray_results (short socket paths)."""
    return {"RAY_TMPDIR": str(tmp / "r"), "HOME": str(tmp / "home"), "RAY_AUTH_MODE": "disabled",
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}


def short_tmp(prefix: str) -> Path:
    """A fresh folder under /tmp (Ray's socket paths must stay short), with ``r/`` and ``home/`` inside."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    for sub in ("r", "home"):
        (tmp / sub).mkdir()
    return tmp


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time)`` of a live process from /proc, None when it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, ...
    return None if fields[0] in ("Z", "X") else (int(fields[1]), int(fields[19]))


def process_tree(pid: int) -> list[tuple[int, int]]:
    """``pid`` and all its descendants as ``(pid, start time)`` pairs (empty if it is gone), read from
    /proc while the parents live (an orphan is re-parented and no longer found)."""
    stats = {int(d.name): _stat(int(d.name)) for d in Path("/proc").iterdir() if d.name.isdigit()}
    children: dict[int, list[int]] = {}
    for child, stat in stats.items():
        if stat is not None:
            children.setdefault(stat[0], []).append(child)
    if stats.get(pid) is None:
        return []
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        if stats.get(current) is not None:
            tree.append((current, stats[current][1]))
            todo.extend(children.get(current, []))
    return tree


def kill_tree(procs: list[tuple[int, int]]) -> None:
    """SIGKILL the processes of :func:`process_tree`, by id, each only if it is still the same process
    (same start time: an id reused since is left alone), and wait until they are gone."""
    for pid, start in procs:
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    for pid, start in procs:
        while time.monotonic() < deadline:
            stat = _stat(pid)
            if stat is None or stat[1] != start:
                break
            try:  # reap our own children; others are reaped by their parent or init
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)


@pytest.fixture(scope="module")
def ray_local():
    """Start Ray once per module (≈4 s) and shut it down after (≈1.3 s); yields its tmp folder, whose
    ``hooks`` subfolder arms :mod:`sweep_hooks` in its workers."""
    ray = pytest.importorskip("ray")
    tmp = short_tmp("bsr")
    (tmp / "hooks").mkdir()
    saved = {k: os.environ.get(k) for k in ray_env(tmp)}
    os.environ.update(ray_env(tmp))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                 runtime_env=hooked_runtime_env(tmp / "hooks"))
        yield tmp
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        restore_env(saved)


def hooked_runtime_env(hooks: Path) -> dict:
    """The ``runtime_env`` of a test's Ray: :mod:`sweep_hooks` installed in every worker, armed from
    ``hooks``; fast Train health checks; one OpenMP thread; this folder importable."""
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {"worker_process_setup_hook": "sweep_hooks.install",
            "env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "OMP_NUM_THREADS": "1",
                         "BRANCHSWEEP_TEST_HOOKS": str(hooks), "PYTHONPATH": pythonpath}}


def restore_env(saved: dict[str, str | None]) -> None:
    """Put back the environment variables ``saved`` (None: the variable was not set)."""
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def sweep_scripts(*names: str):
    """The scripts ``names`` of ``sweeps/`` imported as modules (``{name: module}``), with the folder on
    ``sys.path`` while they are in use."""
    sys.path.insert(0, str(SWEEPS))
    try:
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(SWEEPS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def foreign_cluster():
    """``ray start --head`` on 127.0.0.1 (1 CPU), yielding ``(address, env)``: ``env`` is the environment
    in which Ray's convention (``ray.init()``, ``address="auto"``) finds this cluster."""
    pytest.importorskip("ray")
    tmp = short_tmp("bsf")
    env = {**os.environ, **ray_env(tmp)}
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [str(ray_cli) if ray_cli.exists() else "ray", "start", "--head", "--block", f"--port={free_port()}",
           "--node-ip-address=127.0.0.1", "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats",
           "--object-store-memory=100000000",
           # free ports instead of the fixed defaults (8265, 10001, 52365) a developer's cluster holds
           f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}",
           f"--dashboard-agent-listen-port={free_port()}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    address_file = tmp / "r" / "ray" / "ray_current_cluster"
    try:
        deadline = time.monotonic() + 120
        while not address_file.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not address_file.is_file():
            pytest.fail(f"`ray start` did not come up (exit code {proc.poll()})")
        time.sleep(1.0)  # the file is written once the head node is up; let the raylet register
        yield address_file.read_text().strip(), env
    finally:
        kill_tree(process_tree(proc.pid))
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
