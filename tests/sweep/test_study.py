"""The sweep's Optuna study without Ray: sampler settings, the study key, a journal that persists, and a
warm start that adds an earlier sweep's finished trials (and only those of comparable sweeps)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from conftest import tiny_base

from branchsweep.errors import ConfigError
from branchsweep.sweep import SearchSpace, SweepConfig
from branchsweep.sweep import study as sweep_study
from branchsweep.sweep.results import OBJECTIVES
from branchsweep.sweep.study import open_study
from branchsweep.sweep.tuner import progress_callback

DIRECTIONS = ["minimize" if m == "min" else "maximize" for m in OBJECTIVES.values()]


def _earlier_sweep(folder: Path, key: str, finished: int) -> None:
    """An earlier sweep's journal: ``finished`` complete trials, one failed, one still running."""
    storage = sweep_study.open_storage(None, folder / "optuna")
    study = optuna.create_study(storage=storage, study_name=f"{key}-old-run", directions=DIRECTIONS)
    space = SearchSpace(methods=("ltb",))
    for i in range(finished + 2):
        trial = study.ask()
        space.define_by_run(trial)
        if i < finished:
            study.tell(trial, [1e6 * (i + 1), -float(i)])
        elif i == finished:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _config(out: Path, **kw) -> SweepConfig:
    return SweepConfig(name="w", out=out, base=tiny_base(), space=SearchSpace(methods=("ltb",)), **kw)


def test_sampler_is_multivariate_grouped_constant_liar_tpe():
    sampler = sweep_study.make_sampler(7)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._multivariate and sampler._group and sampler._constant_liar


def test_study_key_follows_data_backbone_tasks_and_retrain_settings():
    base = tiny_base()
    key = sweep_study.study_key(base, ("ltb",))
    assert key == sweep_study.study_key(tiny_base(), ("ltb",))
    assert key == sweep_study.study_key(dataclasses.replace(base, data=dataclasses.replace(base.data, root="/x")), ("ltb",))
    longer = dataclasses.replace(base, train=dataclasses.replace(base.train, iterations=11))
    fewer = dataclasses.replace(base, data=dataclasses.replace(base.data, tasks=["bent_0", "sinc_0"]))
    assert len({key, sweep_study.study_key(longer, ("ltb",)), sweep_study.study_key(fewer, ("ltb",)),
                sweep_study.study_key(base, ("bmtas", "ltb"))}) == 4


def test_warm_start_adds_the_finished_trials_of_comparable_earlier_sweeps(tmp_path):
    key = sweep_study.study_key(tiny_base(), ("ltb",))
    _earlier_sweep(tmp_path / "old", key, finished=3)
    _earlier_sweep(tmp_path / "old", "0" * 12, finished=2)  # another data set/backbone: not comparable
    cfg = _config(tmp_path / "new", warm_start=str(tmp_path / "old"))
    (tmp_path / "new").mkdir()
    progress = progress_callback(tmp_path / "new" / "sweep.log", 1, verbose=False)
    storage, name = open_study(cfg, tmp_path / "new" / "optuna", progress.line)
    assert name == f"{key}-new"
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(study.trials) == 3 and {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    log = (tmp_path / "new" / "sweep.log").read_text()
    assert f"warm start: 3 finished trial(s) of earlier sweeps with study key {key}" in log
    assert f"optuna-dashboard {tmp_path / 'new' / 'optuna' / 'optuna.journal'}" in log
    # The journal persists: a reader opening the file later (optuna-dashboard) sees the same study.
    again = sweep_study.open_storage(str(tmp_path / "new" / "optuna" / "optuna.journal"), tmp_path)
    assert len(optuna.load_study(study_name=name, storage=again).trials) == 3
    # Without --warm-start nothing is copied: the study is created empty by the searcher.
    cold_storage, _ = open_study(_config(tmp_path / "cold"), tmp_path / "cold" / "optuna", progress.line)
    assert optuna.get_all_study_summaries(cold_storage) == []


def test_warm_start_from_a_folder_without_a_study_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="--warm-start: no Optuna study at"):
        sweep_study._source_storage(str(tmp_path), tmp_path / "t")


def test_a_restored_searcher_continues_the_bound_study_fails_zombies_reasks_lost_trials_and_logs_tells(tmp_path):
    """Tune's searcher state from a first driver, restored by a second one whose journal (another path,
    as on a new head) holds: t1 told, t2 told after Tune's last checkpoint (Tune runs it again), t9 asked
    after that checkpoint (a zombie). t3 is in Tune's state but the journal lost its ask. The restored
    searcher writes to the new journal only, fails the zombie, re-asks t3 with its parameters, tells t3,
    suggests new trials up to the bound count, and logs every tell it does not make instead of dropping it."""
    import pickle

    from branchsweep.sweep.searcher import Binding, bind
    from branchsweep.sweep.study import make_searcher

    first_journal = tmp_path / "first" / "optuna.journal"
    lines: list[str] = []
    space = SearchSpace(methods=("ltb",))

    def binding(path: Path, **kw) -> Binding:
        storage = sweep_study.open_storage(str(path), path.parent)
        return Binding(open_storage=lambda: storage, study_name="s", num_trials=5, concurrency=4, say=lines.append, **kw)

    from ray import cloudpickle

    with bind(binding(first_journal)):
        generator = make_searcher(space, OBJECTIVES, None, 0)
        tuner_pkl = cloudpickle.dumps(generator)  # what Tune keeps in tuner.pkl
        searcher = generator.searcher
        for tid in ("t1", "t2", "t3", "t9"):
            assert searcher.suggest(tid)
        searcher.on_trial_complete("t1", {"madds": 1e6, "delta_m": -1.0})
        state = searcher.__getstate__()
        state["_ot_trials"].pop("t9")  # Tune's checkpoint came before t9 was asked...
        (tmp_path / "searcher.pkl").write_bytes(pickle.dumps(state))
        searcher.on_trial_complete("t2", {"madds": 2e6, "delta_m": 1.0})  # ...and before t2 was told
    # The journal that survives was synced before t3's ask.
    second_journal = tmp_path / "second" / "optuna.journal"
    second_journal.parent.mkdir()
    first = sweep_study.open_storage(str(first_journal), tmp_path)
    kept = [t for t in optuna.load_study(study_name="s", storage=first).trials if t.user_attrs["tune_trial_id"] != "t3"]
    copy = optuna.create_study(storage=sweep_study.open_storage(str(second_journal), tmp_path), study_name="s",
                               directions=DIRECTIONS)
    copy.add_trials(kept)
    before = first_journal.read_bytes()

    with bind(binding(second_journal, resume=True)):
        restored = cloudpickle.loads(tuner_pkl).searcher  # Tuner.restore: tuner.pkl, then the searcher state
        restored.restore(str(tmp_path / "searcher.pkl"))
        study = optuna.load_study(study_name="s", storage=restored._storage)
        by_tune = {t.user_attrs["tune_trial_id"]: t for t in study.get_trials(deepcopy=False)}
        assert by_tune["t9"].state.name == "FAIL" and by_tune["t2"].state.name == "COMPLETE"
        assert by_tune["t3"].state.name == "RUNNING" and by_tune["t3"].user_attrs.get("reasked")
        assert by_tune["t3"].params == optuna.load_study(study_name="s", storage=first).trials[2].params
        restored.on_trial_complete("t2", {"madds": 2e6, "delta_m": 1.5})  # Tune reran it: already told
        restored.on_trial_complete("t3", {"madds": 3e6, "delta_m": float("nan")})  # no finite Δm: FAIL
        assert restored.suggest("t4") and restored.suggest("t5")  # new trials after the restore...
        assert restored.suggest("t6") == "FINISHED"  # ...up to the bound --num-trials (5)
        states = {t.user_attrs["tune_trial_id"]: (t.state.name, t.values) for t in study.get_trials(deepcopy=False)}
    assert states["t2"] == ("COMPLETE", [2e6, 1.0]) and states["t3"][0] == "FAIL" and states["t4"][0] == "RUNNING"
    assert states["t1"] == ("COMPLETE", [1e6, -1.0])
    assert first_journal.read_bytes() == before  # the first driver's journal was never written to
    text = "\n".join(lines)
    assert f"told FAIL: number(s) {by_tune['t9'].number}" in text and "re-asked as trial" in text
    assert "finished without finite madds and delta_m: told FAIL" in text
    assert "was already told COMPLETE" in text and "is NOT told" in text
