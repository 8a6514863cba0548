"""Test hooks for Ray worker processes: stop, crash or count inside a trial at a point the test chooses.

Trials run in Ray workers, out of reach of ``monkeypatch``. A test's Ray instance installs :func:`install`
in every worker (``runtime_env={"worker_process_setup_hook": "sweep_hooks.install"}``; a driver in a
subprocess gets it through ``RAY_RUNTIME_ENV_HOOK=sweep_hooks.runtime_env_hook``). Every hook is inert
until a test arms it with a file in ``$BRANCHSWEEP_TEST_HOOKS``, so the trials of other tests run
unchanged:

* the ``gate`` temperature schedule (constant ``tau0``): a trial that uses it writes
  ``gate-blocked-<pid>`` and waits, before its first search step, until ``gate-open`` exists;
* ``crash-after-export`` (its text: the sweep's run folder): the first search trial that reports its
  priced architecture then loses its exported files (as on another node: the Ray checkpoint is the only copy)
  and raises, once;
* ``crash-mid-retrain`` (its text: the sweep's scratch root): the first search trial that reports a retrain
  checkpoint then loses its whole scratch folder (as if its node were reclaimed) and raises, once;
* ``warmup-saves.log`` / ``warmup-loads.log``: one line per ``torch.save`` / ``torch.load`` of a cached
  BMTAS warm-up (a ``bmtas-warmup-*`` file), written by whichever process did it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

HOOKS_ENV = "BRANCHSWEEP_TEST_HOOKS"
GATE = "gate"


def hooks_dir() -> Path | None:
    value = os.environ.get(HOOKS_ENV)
    return Path(value) if value else None


def _gate(t: float, n: float, tau0: float, tau1: float) -> float:
    folder = hooks_dir()
    if folder is not None and not (folder / "gate-open").exists():
        marker = folder / f"gate-blocked-{os.getpid()}"
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        os.replace(tmp, marker)
        while not (folder / "gate-open").exists():
            time.sleep(0.05)
    return tau0


def register_gate() -> None:
    """Register the ``gate`` schedule in this process (drivers validate schedule names too)."""
    from branchsweep.search.schedules import SCHEDULES

    if GATE not in SCHEDULES:
        SCHEDULES.register(GATE, _gate, help="test only: waits for the test's gate-open file")


def _wrap_tune_report() -> None:
    import ray.tune

    real = ray.tune.report
    if getattr(real, "_branchsweep_test_hook", False):
        return

    def report(metrics, *args, **kwargs):
        real(metrics, *args, **kwargs)
        folder = hooks_dir()
        arm = folder / "crash-after-export" if folder else None
        if metrics.get("phase") != "priced" or metrics.get("is_baseline") or arm is None or not arm.exists():
            return
        try:
            run_dir = Path(arm.read_text().strip())
            arm.unlink()  # once
        except FileNotFoundError:
            return
        work = run_dir / "trials" / ray.tune.get_context().get_trial_id()
        for name in ("branch_config.json", "search_info.json"):
            (work / name).unlink(missing_ok=True)
        shutil.rmtree(work / "search", ignore_errors=True)
        raise RuntimeError("crash injected by the test after the architecture was exported and reported")

    def report_then_crash_mid_retrain(metrics, *args, **kwargs):
        report(metrics, *args, **kwargs)  # persisted before it returns
        folder = hooks_dir()
        arm = folder / "crash-mid-retrain" if folder else None
        checkpoint = kwargs.get("checkpoint", args[0] if args else None)
        if metrics.get("phase") != "retrain" or checkpoint is None or metrics.get("is_baseline") \
                or arm is None or not arm.exists():
            return
        try:
            scratch = Path(arm.read_text().strip())
            arm.unlink()  # once
        except FileNotFoundError:
            return
        shutil.rmtree(scratch, ignore_errors=True)  # as if the node were gone: only the Ray checkpoint is left
        raise RuntimeError("crash injected by the test in the middle of a retrain")

    report._branchsweep_test_hook = report_then_crash_mid_retrain._branchsweep_test_hook = True
    ray.tune.report = report_then_crash_mid_retrain


def _count_warmup_files() -> None:
    import torch

    if getattr(torch.save, "_branchsweep_test_hook", False):
        return
    real_save, real_load = torch.save, torch.load

    def note(kind: str, target) -> None:
        folder = hooks_dir()
        if folder is not None and isinstance(target, (str, os.PathLike)) and \
                Path(target).name.lstrip(".").startswith("bmtas-warmup-"):  # atomic saves write a dot-file first
            with open(folder / f"warmup-{kind}.log", "a") as handle:
                handle.write(f"{os.getpid()} {target}\n")

    def save(obj, f, *args, **kwargs):
        note("saves", f)
        return real_save(obj, f, *args, **kwargs)

    def load(f, *args, **kwargs):
        note("loads", f)
        return real_load(f, *args, **kwargs)

    save._branchsweep_test_hook = load._branchsweep_test_hook = True
    torch.save, torch.load = save, load


def install() -> None:
    """Ray ``worker_process_setup_hook``: install every hook in this worker process."""
    if hooks_dir() is None:
        return
    register_gate()
    _wrap_tune_report()
    _count_warmup_files()


def runtime_env_hook(runtime_env: dict | None) -> dict:
    """``RAY_RUNTIME_ENV_HOOK`` for a driver in a subprocess: adds :func:`install` to its workers and
    passes the hooks folder and this folder (for the import) on to them."""
    env = dict(runtime_env or {})
    env["worker_process_setup_hook"] = f"{__name__}.install"
    variables = dict(env.get("env_vars") or {})
    variables[HOOKS_ENV] = os.environ[HOOKS_ENV]
    here = str(Path(__file__).resolve().parent)
    variables["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    env["env_vars"] = variables
    return env
