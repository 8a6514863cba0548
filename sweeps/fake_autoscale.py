"""Prove the autoscaling logic locally: a fake multi-node cluster whose head cannot fit a trial.

Starts ``ray start --head`` with ``sweeps/fake_cluster.yaml`` (Ray's ``fake_multinode`` provider; the
head advertises 1 CPU), runs the smoke synthetic sweep with 2 CPUs per trial, prints the node count
while it runs (the autoscaler has to add ``cpu_worker`` nodes for the trials to start) and stops the
cluster at the end by signalling exactly the processes whose command line names its own ``--temp-dir``
(``ray stop`` would stop every Ray cluster of this user on the machine).

    python sweeps/fake_autoscale.py --out /tmp/fake-autoscale
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def watch_nodes(stop: threading.Event, seen: list[tuple[float, int]], t0: float) -> None:
    """Record (seconds, alive nodes) whenever the count changes."""
    import ray

    last = -1
    while not stop.is_set():
        alive = sum(1 for n in ray.nodes() if n.get("Alive"))
        if alive != last:
            seen.append((time.monotonic() - t0, alive))
            print(f"[autoscale] t={seen[-1][0]:5.1f}s alive nodes: {alive}", flush=True)
            last = alive
        stop.wait(1.0)


def own_processes(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (this cluster's temp dir), this process excluded."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def stop_cluster(temp_dir: str) -> None:
    """SIGTERM this cluster's processes, then SIGKILL what is left after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = own_processes(temp_dir)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while own_processes(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="run folder of the small sweep")
    args = p.parse_args()
    # This script starts (and stops) its own throw-away cluster on 127.0.0.1, so it turns token auth off
    # for it and for itself as a client; the library never does (a real cluster keeps its auth mode).
    print("[fake-autoscale] RAY_AUTH_MODE=disabled for the local fake cluster this script starts", flush=True)
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_AUTH_MODE": "disabled"}
    os.environ.update({k: env[k] for k in ("RAY_AUTH_MODE",)})
    temp_dir = tempfile.mkdtemp(prefix="bs-fake-")
    # the ``ray`` CLI of this interpreter's environment, also when the venv is not activated
    ray_cli = Path(sys.executable).with_name("ray")
    try:  # from here on, whatever happens, this cluster's processes and temp dir are removed
        subprocess.run([str(ray_cli) if ray_cli.exists() else "ray", "start", "--head", "--num-cpus=1",
                        f"--temp-dir={temp_dir}", "--disable-usage-stats", "--dashboard-host=127.0.0.1",
                        f"--autoscaling-config={HERE / 'fake_cluster.yaml'}"],
                       env=env, check=True)
        import ray

        ray.init(address="auto")
        stop, seen = threading.Event(), []
        t0 = time.monotonic()
        watcher = threading.Thread(target=watch_nodes, args=(stop, seen, t0), daemon=True)
        watcher.start()
        sys.path.insert(0, str(HERE))
        from _common import main as sweep_main
        from synthetic_pareto import PRESET, SMOKE

        rc = sweep_main(PRESET, SMOKE, argv=["--smoke", "--out", str(args.out), "--cpus-per-trial", "2",
                                             "--concurrency", "2", "--no-report"])
        time.sleep(20)  # idle workers are removed after idle_timeout_minutes (12 s)
        stop.set()
        watcher.join()
        peak = max(n for _, n in seen)
        print(f"[autoscale] sweep exit code {rc}; nodes: start {seen[0][1]}, peak {peak}, end {seen[-1][1]}")
        ray.shutdown()
        return 0 if rc == 0 and peak > seen[0][1] else 1
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
