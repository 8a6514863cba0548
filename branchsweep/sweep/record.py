"""``sweep.json``: the recorded experiment, and the check that a ``--resume`` continues that experiment.

A sweep writes its config to ``<prefix>/sweep.json`` when it starts (secrets redacted,
:mod:`branchsweep.sweep.redact`). ``--resume`` reads it and compares it with the new command line, field by
field (nested fields by dotted name, e.g. ``base.train.iterations``):

* :data:`RUN_SETTINGS` cannot change any trial's result; they may differ only with ``--allow-changes``
  (and are then honoured: the searcher takes ``num_trials``, ``concurrency`` and the time budget from the
  resumed driver, trials the cache folder; the record is updated);
* :data:`NOT_COMPARED` say where and how this driver runs (its ``--out``, its Ray, its output) or are
  used only when a sweep starts (``--warm-start``);
* every other field is the experiment (data, root, backbone, tasks, retrain and search settings,
  replicates, seeds, the search space, baselines, controls, backend and resources per trial, failure
  retries, Optuna storage, MLflow URI, plugins): any difference refuses the resume with one line that
  lists each difference, ``field recorded → given`` (:class:`ConfigError`, exit 2).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from branchsweep.errors import ConfigError
from branchsweep.sweep import storage as sweep_storage
from branchsweep.sweep.redact import redact_tree

SWEEP_FILE = "sweep.json"
#: May differ on resume with ``--allow-changes``: they decide how many trials run and where retrains are
#: cached, never what a trial computes.
RUN_SETTINGS = ("num_trials", "concurrency", "time_budget_s", "cache_dir")
#: Never compared: this driver's folders, Ray, output and start-only settings.
NOT_COMPARED = ("out", "storage_path", "resume", "resume_from", "run_id", "num_cpus", "local", "report", "verbose",
                "scratch", "progress_every_s", "warm_start", "allow_changes")


def record(cfg: Any) -> dict[str, Any]:
    """The sweep's config as stored in ``sweep.json`` (JSON values, secrets redacted)."""
    return redact_tree(json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=1, default=str).encode()


def sweep_record(cfg: Any) -> bytes:
    """``sweep.json``: the sweep's config as JSON, secrets redacted (``--resume`` compares the new command line
    with it, :func:`check_resume`; ``branchsweep report`` reads the recipe of the Single trial from it to find
    the exhaustive table of the sweep's recipe)."""
    return encode(record(cfg))


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


_MISSING = "(absent)"


def differences(recorded: dict[str, Any], given: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted field: (recorded, given)}`` of the fields that differ (fields in :data:`NOT_COMPARED` skipped)."""
    old, new = _flat(recorded), _flat(given)
    out = {}
    for key in sorted(set(old) | set(new)):
        if key.split(".")[0] in NOT_COMPARED:
            continue
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if a != b:
            out[key] = (a, b)
    return out


def _line(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in diff.items())


def check_resume(cfg: Any) -> dict[str, tuple[Any, Any]]:
    """Compare ``cfg`` with the ``sweep.json`` of the sweep it resumes; returns the run settings that changed
    (allowed by ``cfg.allow_changes``), or raises a one-line :class:`ConfigError`."""
    uri = sweep_storage.join(cfg.prefix, SWEEP_FILE)
    try:
        recorded = json.loads(sweep_storage.read_bytes(uri))
    except json.JSONDecodeError as err:
        raise ConfigError(f"--resume: {uri} is not a sweep record ({err})") from None
    diff = differences(recorded, record(cfg))
    experiment = {k: v for k, v in diff.items() if k.split(".")[0] not in RUN_SETTINGS}
    run = {k: v for k, v in diff.items() if k.split(".")[0] in RUN_SETTINGS}
    if experiment:
        raise ConfigError(f"--resume: {cfg.prefix} recorded another experiment: {_line(experiment)} (these change "
                          "results; resume with the recorded settings or start a new sweep)")
    if run and not getattr(cfg, "allow_changes", False):
        raise ConfigError(f"--resume: run settings differ from {SWEEP_FILE}: {_line(run)} (pass --allow-changes "
                          "to resume with them; they change no trial's result)")
    return run


def updated(cfg: Any) -> bytes:
    """The stored record with this driver's run settings (after an allowed change)."""
    recorded = json.loads(sweep_storage.read_bytes(sweep_storage.join(cfg.prefix, SWEEP_FILE)))
    given = record(cfg)
    return encode({**recorded, **{k: given[k] for k in RUN_SETTINGS}})


def begin(cfg: Any, log_file: Any, journal: Any | None) -> str:
    """Start the sweep's record: a new sweep writes ``sweep.json``; a resume checks it (:func:`check_resume`),
    records the run settings it may change and, before any searcher is restored, pulls the stored
    ``sweep.log`` and Optuna journal into this driver's copies (``log_file``, ``journal``:
    :class:`~branchsweep.sweep.searcher.Mirror`). Returns what the resume pulled and changed ("" when new)."""
    uri = sweep_storage.join(cfg.prefix, SWEEP_FILE)
    if not cfg.resume:
        sweep_storage.write_bytes(uri, sweep_record(cfg))
        return ""
    changed = check_resume(cfg)
    if changed:
        sweep_storage.write_bytes(uri, updated(cfg))
    return f"sweep.log {log_file.pull()}" + (f", journal {journal.pull()}" if journal else "") + "".join(
        f"; {k} changed {a!r} → {b!r} (--allow-changes)" for k, (a, b) in changed.items())
