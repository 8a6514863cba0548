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
* ``hold-mid-retrain``: the first search trial that reports a retrain checkpoint then writes
  ``held-<Ray node id>`` and waits there (for the test to kill its node), once; it gives up with an error
  after 300 s or as soon as ``release`` exists;
* ``hold-retrain``: every retrain (``branchsweep.pipeline.trial._retrain``, after its trial claimed the
  retrain key) writes ``retrain-held-<pid>`` and waits until ``retrain-open`` exists; it gives up with an
  error after 300 s;
* ``hidden`` (its text: a folder, armed before Ray starts): every worker process refuses, with
  ``PermissionError``, Python's file operations on that folder (as on a node that cannot see the driver's
  disk) and notes each refusal in ``hidden-access.log``;
* ``warmup-saves.log`` / ``warmup-loads.log``: one line per ``torch.save`` / ``torch.load`` of a cached
  BMTAS warm-up (a ``bmtas-warmup-*`` file), written by whichever process did it.
"""

from __future__ import annotations

import os
import shutil
import sys
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

    def armed_at_retrain_checkpoint(name, metrics, args, kwargs) -> Path | None:
        """The arming file ``name`` when it exists and this report is a search trial's retrain checkpoint."""
        folder = hooks_dir()
        arm = folder / name if folder else None
        checkpoint = kwargs.get("checkpoint", args[0] if args else None)
        if metrics.get("phase") != "retrain" or checkpoint is None or metrics.get("is_baseline") \
                or arm is None or not arm.exists():
            return None
        return arm

    def report_then_crash_mid_retrain(metrics, *args, **kwargs):
        report(metrics, *args, **kwargs)  # persisted before it returns
        arm = armed_at_retrain_checkpoint("crash-mid-retrain", metrics, args, kwargs)
        if arm is None:
            return
        try:
            scratch = Path(arm.read_text().strip())
            arm.unlink()  # once
        except FileNotFoundError:
            return
        shutil.rmtree(scratch, ignore_errors=True)  # as if the node were gone: only the Ray checkpoint is left
        raise RuntimeError("crash injected by the test in the middle of a retrain")

    def report_then_hold_mid_retrain(metrics, *args, **kwargs):
        # A function trainable's report returns when Tune asks for the next result, i.e. after Tune has
        # processed this one: the checkpoint is the trial's latest when the node is killed.
        report_then_crash_mid_retrain(metrics, *args, **kwargs)
        arm = armed_at_retrain_checkpoint("hold-mid-retrain", metrics, args, kwargs)
        if arm is None:
            return
        folder = arm.parent
        try:
            arm.unlink()  # once
        except FileNotFoundError:
            return
        marker = folder / f"held-{ray.get_runtime_context().get_node_id()}"
        marker.with_suffix(".tmp").write_text(str(os.getpid()))
        os.replace(marker.with_suffix(".tmp"), marker)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (folder / "release").exists():
            time.sleep(0.1)
        raise RuntimeError("held in the middle of a retrain, but the test did not kill this node")

    for hook in (report, report_then_crash_mid_retrain, report_then_hold_mid_retrain):
        hook._branchsweep_test_hook = True
    ray.tune.report = report_then_hold_mid_retrain


def _hold_retrains() -> None:
    from branchsweep.pipeline import trial

    real = trial._retrain
    if getattr(real, "_branchsweep_test_hook", False):
        return

    def retrain(*args, **kwargs):
        folder = hooks_dir()
        if folder is not None and (folder / "hold-retrain").exists():
            marker = folder / f"retrain-held-{os.getpid()}"
            marker.with_suffix(".tmp").write_text(str(os.getpid()))
            os.replace(marker.with_suffix(".tmp"), marker)
            deadline = time.monotonic() + 300
            while not (folder / "retrain-open").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("retrain held by the test, which never let it go on")
                time.sleep(0.05)
        return real(*args, **kwargs)

    retrain._branchsweep_test_hook = True
    trial._retrain = retrain


def _hide_folder() -> None:
    """Refuse Python's file operations on the folder named by the ``hidden`` arm (read once, here)."""
    folder = hooks_dir()
    try:
        hidden = os.path.abspath((folder / "hidden").read_text().strip())
    except FileNotFoundError:
        return
    log = str(folder / "hidden-access.log")

    def audit(event: str, args: tuple) -> None:
        if event != "open" and not event.startswith(("os.", "shutil.")):
            return
        for arg in args:
            if not isinstance(arg, (str, bytes, os.PathLike)):
                continue
            path = os.path.abspath(os.fsdecode(arg))
            if path == hidden or path.startswith(hidden + os.sep):
                with open(log, "a") as handle:
                    handle.write(f"{os.getpid()} {event} {path}\n")
                raise PermissionError(f"{path}: hidden from Ray workers by the test (as on another node)")

    sys.addaudithook(audit)


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
    _hold_retrains()
    _hide_folder()
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
