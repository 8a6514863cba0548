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
from branchsweep.sweep.runner import OBJECTIVES, _open_study, _progress_callback

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
    progress = _progress_callback(tmp_path / "new" / "sweep.log", 1, verbose=False)
    storage, name = _open_study(cfg, tmp_path / "new", progress)
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
    cold_storage, _ = _open_study(_config(tmp_path / "cold"), tmp_path / "cold", progress)
    assert optuna.get_all_study_summaries(cold_storage) == []


def test_warm_start_from_a_folder_without_a_study_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="--warm-start: no Optuna study at"):
        sweep_study._source_storage(str(tmp_path), tmp_path / "t")
