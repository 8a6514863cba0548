"""The search stage's Optuna searcher, bound to the driver that runs it (fresh or resumed).

Ray Tune pickles its searcher twice: into ``tuner.pkl`` when the Tuner is made, and into
``searcher-state-*.pkl`` at every experiment checkpoint; ``Tuner.restore`` unpickles both in the next
driver. Ray's ``OptunaSearch`` pickles its Optuna study with it, so a restored one wrote to the first
driver's journal path (lost with that machine) and stored an RDB URL's password in Tune's state.
:class:`SweepSearch` pickles no storage and no study: a restored one attaches to the study of the
driver restoring it (:func:`bind`, set by :func:`branchsweep.sweep.runner.run_sweep` before any Tuner is
made or restored) and reconciles it with Tune's restored trials:

* every Optuna trial carries the Tune trial id it was asked for (user attribute ``tune_trial_id``); a
  restored Tune trial whose Optuna trial the study lost (a cloud journal synced before the ask reached it)
  is re-asked with the parameters the searcher state recorded, so its result is told;
* a RUNNING Optuna trial that no live Tune trial continues (asked after Tune's last experiment
  checkpoint, or by a driver whose Tune state was never saved) is told FAIL and logged (a *zombie*: with
  ``constant_liar`` TPE would otherwise count it as a bad running trial forever);
* every ``tell`` that does not go through (a trial Optuna already finished, a lost trial, a storage
  error) is logged in ``sweep.log`` and as a warning instead of being dropped; a result with a NaN
  objective is told FAIL.

The limits come from the binding, not from the pickle: ``--num-trials`` and ``--concurrency`` (this
searcher stops suggesting at the count, and waits while that many of its trials run) and
``--time-budget`` (after the deadline it suggests nothing more and Tune lets the running trials finish:
no trial is stopped). :class:`SweepSearchGenerator` keeps a restored Tune search from remembering that
an earlier driver's searcher had finished, so a resume with more trials or a new budget goes on.

After every ask, tell and zombie failure the binding's ``sync`` runs: for a cloud prefix it uploads the
driver's journal to ``<prefix>/optuna/optuna.journal`` (:class:`Mirror`), so storage holds every change
but the one in flight when a driver dies.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.search import Searcher, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from branchsweep.sweep import storage as sweep_storage
from branchsweep.sweep.redact import redact

log = logging.getLogger(__name__)

#: The Optuna user attribute naming the Tune trial an Optuna trial was asked for.
TUNE_ID = "tune_trial_id"


def clock() -> float:
    """The driver's clock for ``--time-budget`` (monotonic seconds)."""
    return time.monotonic()


@dataclass
class Binding:
    """What a searcher made or restored in this driver uses: the study, the limits, the log, the sync."""

    open_storage: Callable[[], Any]
    study_name: str
    num_trials: int
    concurrency: int
    #: :func:`clock` time after which no new trial is suggested (None: no budget).
    deadline: float | None = None
    say: Callable[[str], None] = field(default=lambda text: log.info(text))
    sync: Callable[[], None] = field(default=lambda: None)
    #: True in a resumed driver: a study found with trials is reconciled (zombies failed).
    resume: bool = False

    def out_of_time(self) -> bool:
        return self.deadline is not None and clock() >= self.deadline


_BINDING: Binding | None = None


@contextlib.contextmanager
def bind(binding: Binding) -> Iterator[Binding]:
    """Make ``binding`` the one searchers made or unpickled in this process attach to."""
    global _BINDING
    previous, _BINDING = _BINDING, binding
    try:
        yield binding
    finally:
        _BINDING = previous


def current() -> Binding:
    if _BINDING is None:
        raise RuntimeError("a sweep searcher is made or restored only inside run_sweep (no study is bound)")
    return _BINDING


class Mirror:
    """A driver-local file that storage holds a copy of: ``pull`` before use, ``push`` after each change.

    ``uri`` None: the file is the one in storage (a local prefix), both are no-ops.
    """

    def __init__(self, local: Path, uri: str | None) -> None:
        self.local, self.uri = Path(local), uri

    def pull(self) -> str:
        """Make the local file the stored one, unless the local file extends it (a driver on the same
        machine that appended after its last push): returns what was done, for the log."""
        if self.uri is None:
            return "live"
        remote = sweep_storage.read_bytes(self.uri) if sweep_storage.exists(self.uri) else None
        here = self.local.read_bytes() if self.local.is_file() else None
        if remote is None:
            return "nothing stored yet"
        if here is not None and len(here) >= len(remote) and here.startswith(remote):
            return "local copy kept (it extends the stored one)" if len(here) > len(remote) else "up to date"
        from branchsweep.atomic import atomic_write

        atomic_write(self.local, lambda tmp: tmp.write_bytes(remote))
        return f"downloaded ({len(remote)} bytes)" + (" over a local copy that did not extend it" if here else "")

    def push(self) -> None:
        if self.uri is not None and self.local.is_file():
            sweep_storage.write_bytes(self.uri, self.local.read_bytes())


def driver_files(cfg: Any, run_dir: Path) -> tuple[Mirror, Mirror | None]:
    """``(sweep.log, Optuna journal or None)`` of the sweep ``cfg`` (a
    :class:`~branchsweep.sweep.settings.SweepConfig`): the files in the prefix itself when it is a folder
    (appended to as the sweep runs, by whichever driver runs it), else driver copies in ``run_dir`` pushed to
    the prefix after every change. No journal with ``--optuna-storage``."""
    from branchsweep.sweep.study import JOURNAL

    prefix = cfg.prefix
    if sweep_storage.is_uri(prefix):
        log_file = Mirror(run_dir / "sweep.log", sweep_storage.join(prefix, "sweep.log"))
        journal = Mirror(run_dir / "optuna" / JOURNAL, sweep_storage.join(prefix, "optuna", JOURNAL))
    else:
        log_file = Mirror(Path(prefix) / "sweep.log", None)
        journal = Mirror(Path(prefix) / "optuna" / JOURNAL, None)
    return log_file, (None if cfg.optuna_storage else journal)


class SweepLog:
    """``sweep.log``: timestamped lines (secrets redacted), printed unless quiet, mirrored to storage."""

    def __init__(self, mirror: Mirror, verbose: bool) -> None:
        self.mirror, self.verbose = mirror, verbose
        self.mirror.local.parent.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self.mirror.local

    def __call__(self, text: str, prefix: str = "[sweep] ") -> None:
        text = redact(text)
        with open(self.mirror.local, "a") as handle:
            handle.write(time.strftime("%H:%M:%S ") + prefix + text + "\n")
        log.info(text)
        if self.verbose:
            print(prefix + text, flush=True)
        try:
            self.mirror.push()
        except Exception as err:  # storage hiccup: the next line pushes the whole file again
            log.warning("sweep.log: upload to %s failed: %s", self.mirror.uri, err)


class SweepProgress(Callback):
    """Prints ``done/running/failed`` and the best front so far whenever a trial finishes or fails.

    Tune pickles it with the Tuner; unpickled by a resumed driver it writes to that driver's ``sweep.log``
    (and counts that driver's ``--num-trials`` in the search stage), never to the first driver's.
    """

    def __init__(self, say: Callable[[str], None], total: int, stage: str = "") -> None:
        self.say, self.total, self.stage = say, total, stage
        self.done: dict[str, dict[str, Any]] = {}
        self.failed: set[str] = set()
        self.running: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "say"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        binding = current()
        self.say = binding.say
        if self.stage == "search":
            self.total = binding.num_trials

    def line(self, event: str) -> None:
        from branchsweep.sweep.results import front_points

        front = ", ".join(f"{m / 1e6:.2f}M:{d:+.2f}%" for m, d in front_points(list(self.done.values())))
        self.say(f"{event} | done {len(self.done)}/{self.total} running {len(self.running)} "
                 f"failed {len(self.failed)} | front (MAdds:Δm) {front or '-'}")

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        result = trial.last_result or {}
        self.done[trial.trial_id] = result
        cached = " (retrain reused from cache)" if result.get("retrain_cached") else ""
        self.line(f"{result.get('label', trial.trial_id)} finished{cached}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        self.failed.add(trial.trial_id)
        config = trial.config.get("point", trial.config)
        self.line(f"{config.get('method')} trial {trial.trial_id} FAILED")


def _values(result: dict[str, Any] | None, metrics: list[str]) -> list[float] | None:
    if not result:
        return None
    values = [result.get(m) for m in metrics]
    if any(v is None or not isinstance(v, (int, float)) or math.isnan(float(v)) for v in values):
        return None
    return [float(v) for v in values]


class SweepSearch(OptunaSearch):
    """``OptunaSearch`` attached to the bound study, with the limits of the binding (module docstring)."""

    def __init__(self, space: Any, metric: list[str], mode: list[str], points: list[dict[str, Any]] | None,
                 sampler: Any) -> None:
        binding = current()
        self._said: set[str] = set()
        super().__init__(space=space, metric=metric, mode=mode, points_to_evaluate=points or None, sampler=sampler,
                         storage=binding.open_storage(), study_name=binding.study_name)

    # ------------------------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_storage", None)
        state.pop("_ot_study", None)
        state.pop("_said", None)
        state["_ot_trials"] = {tid: self._record(t) for tid, t in self._ot_trials.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._said = set()
        self._attach(reconcile=False)

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__getstate__(), handle)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's experiment checkpoint: the searcher state of the driver that saved it, attached to this
        driver's study and reconciled with the Tune trials it lists."""
        import pickle

        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        self.__dict__.update(state)
        self._attach(reconcile=True)

    def _record(self, trial: Any) -> dict[str, Any]:
        """What the pickle keeps of an Optuna trial: its number, parameters and their distributions."""
        from optuna.distributions import distribution_to_json

        if isinstance(trial, dict):
            return trial
        frozen = self._ot_study._storage.get_trial(trial._trial_id)
        return {"number": frozen.number, "params": dict(frozen.params),
                "distributions": {k: distribution_to_json(v) for k, v in frozen.distributions.items()}}

    # ------------------------------------------------------------------------------- the study
    def _attach(self, reconcile: bool) -> None:
        """Open the bound study (created when the storage has none: a journal that lost it)."""
        import optuna

        binding = current()
        self._storage = binding.open_storage()
        self._study_name = binding.study_name
        self._ot_study = optuna.create_study(
            storage=self._storage, sampler=self._sampler, pruner=optuna.pruners.NopPruner(),
            study_name=self._study_name, load_if_exists=True,
            directions=["minimize" if m == "min" else "maximize" for m in self._mode])
        if reconcile:
            self._reconcile()

    def _setup_study(self, mode: Any) -> None:
        """A study that already has trials (a resumed driver whose Tune state was never saved) keeps them:
        the points to evaluate are not enqueued twice and its RUNNING trials are reconciled (failed)."""
        existing = self._trial_count()
        if existing:
            self._points_to_evaluate = []
        super()._setup_study(mode)
        if existing and current().resume:
            self._reconcile()

    def _trial_count(self) -> int:
        try:
            study_id = self._storage.get_study_id_from_name(self._study_name)
        except KeyError:
            return 0
        return len(self._storage.get_all_trials(study_id, deepcopy=False))

    def _reconcile(self) -> None:
        """Re-ask the trials Tune continues that the study lost; fail the RUNNING trials nobody continues."""
        import optuna
        from optuna.distributions import json_to_distribution

        binding = current()
        trials = self._ot_study.get_trials(deepcopy=False)
        by_tune = {t.user_attrs.get(TUNE_ID): t for t in trials if t.user_attrs.get(TUNE_ID)}
        live = {tid: rec for tid, rec in self._ot_trials.items() if tid not in self._completed_trials}
        for tid, rec in live.items():
            rec = rec if isinstance(rec, dict) else self._record(rec)
            found = by_tune.get(tid)
            if found is None:
                self._ot_study.add_trial(optuna.trial.create_trial(
                    state=optuna.trial.TrialState.RUNNING, params=rec["params"],
                    distributions={k: json_to_distribution(v) for k, v in rec["distributions"].items()},
                    user_attrs={TUNE_ID: tid, "reasked": True}))
                found = self._ot_study.get_trials(deepcopy=False)[-1]
                binding.say(f"Optuna: Tune trial {tid} is continued but the study had lost its Optuna trial: "
                            f"re-asked as trial {found.number} with the same parameters")
            self._ot_trials[tid] = {**rec, "number": found.number}
        continued = {rec["number"] for rec in self._ot_trials.values() if isinstance(rec, dict)}
        zombies = [t for t in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                   if t.number not in continued]
        for trial in zombies:
            self._ot_study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if zombies:
            binding.say(f"Optuna: {len(zombies)} RUNNING trial(s) that no Tune trial continues (asked after the "
                        f"last experiment checkpoint) told FAIL: number(s) {', '.join(str(t.number) for t in zombies)}")
        binding.sync()

    # ----------------------------------------------------------------------------- Tune hooks
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        binding = current()
        if trial_id not in self._ot_trials:
            if binding.out_of_time():
                self._once("budget", "time budget reached: no new search trial (running ones finish)")
                return Searcher.FINISHED
            if len(self._ot_trials) >= binding.num_trials:
                return Searcher.FINISHED
            running = sum(tid not in self._completed_trials for tid in self._ot_trials)
            if running >= binding.concurrency:
                return None
        config = super().suggest(trial_id)
        trial = self._ot_trials[trial_id]
        if not isinstance(trial, dict):
            trial.set_user_attr(TUNE_ID, trial_id)
        binding.sync()
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        return  # multi-objective: Optuna takes no intermediate values

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        import optuna

        binding = current()
        if trial_id in self._completed_trials:
            return
        self._completed_trials.add(trial_id)
        trial = self._ot_trials.get(trial_id)
        if trial is None:
            binding.say(f"Optuna: Tune trial {trial_id} finished but the searcher never asked for it: NOT told")
            log.warning("Optuna: Tune trial %s unknown to the searcher: not told", trial_id)
            return
        number = trial["number"] if isinstance(trial, dict) else trial.number
        values = None if error else _values(result, list(self._metric))
        state = optuna.trial.TrialState.COMPLETE if values is not None else optuna.trial.TrialState.FAIL
        frozen = self._ot_study._storage.get_trial(self._ot_study._storage.get_trial_id_from_study_id_trial_number(
            self._ot_study._study_id, number))
        if frozen.state.is_finished():
            same = frozen.state == state and (values is None or list(frozen.values or []) == values)
            if not same:
                binding.say(f"Optuna: trial {number} (Tune {trial_id}) was already told {frozen.state.name} "
                            f"{frozen.values}; this result ({state.name} {values}) is NOT told")
            return
        try:
            self._ot_study.tell(number, values, state=state)
        except Exception as err:  # noqa: BLE001 - a tell that fails is reported, never dropped silently
            binding.say(f"Optuna: tell of trial {number} (Tune {trial_id}, {state.name}) FAILED: {redact(str(err))}")
            log.error("Optuna: tell of trial %s failed: %s", number, redact(str(err)))
            return
        if state == optuna.trial.TrialState.FAIL and not error:
            binding.say(f"Optuna: trial {number} (Tune {trial_id}) finished without finite "
                        f"{' and '.join(self._metric)}: told FAIL")
        binding.sync()

    def _once(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            current().say(text)


class SweepSearchGenerator(SearchGenerator):
    """Tune's ``SearchGenerator`` for :class:`SweepSearch`: the searcher decides when the search is
    finished, so a restored generator does not carry over an earlier driver's "finished" or sample count."""

    def __init__(self, searcher: SweepSearch) -> None:
        super().__init__(searcher)

    def add_configurations(self, experiments: Any) -> None:
        super().add_configurations(experiments)
        self._total_samples = current().num_trials

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._finished = False
        self._total_samples = current().num_trials
