"""What a sweep refuses and what it never writes, checked without a Ray cluster: a ``--resume`` that
changes the recorded experiment (one line, exit 2), secrets in prints, logs, ``sweep.json``, error lines
and pickled Tune objects, storage URIs with credentials, and a ``results.parquet`` that is replaced whole
or not at all."""

from __future__ import annotations

import dataclasses
import json

import optuna
import pandas as pd
import pytest
from conftest import sweep_scripts, tiny_base

from branchsweep.errors import ConfigError
from branchsweep.sweep import SearchSpace, SweepConfig
from branchsweep.sweep import storage as sweep_storage
from branchsweep.sweep.record import SWEEP_FILE, sweep_record
from branchsweep.sweep.results import write_results
from branchsweep.sweep.study import open_study
from branchsweep.sweep.tuner import logger_callbacks

SECRET = "s3cr3t-Pa55"
RDB = f"postgresql://sweeper:{SECRET}@127.0.0.1:9/optuna"
MLFLOW = f"https://me:{SECRET}@mlflow.example.org"


def _config(out, **kw) -> SweepConfig:
    defaults = dict(name="g", out=out, base=tiny_base(), space=SearchSpace(methods=("ltb",)), num_trials=2)
    return SweepConfig(**{**defaults, **kw})


def _recorded(tmp_path, **kw) -> SweepConfig:
    """A sweep folder holding the sweep.json of ``_config(**kw)``, as a started sweep leaves it."""
    cfg = _config(tmp_path / "run", **kw)
    sweep_storage.write_bytes(str(tmp_path / "run" / SWEEP_FILE), sweep_record(cfg))
    return cfg


def test_resume_of_another_experiment_is_refused_with_a_one_line_diff(tmp_path):
    _recorded(tmp_path)
    base = tiny_base()
    other = dataclasses.replace(base, replicates=3, data=dataclasses.replace(base.data, root="/elsewhere"))
    with pytest.raises(ConfigError) as err:
        _config(tmp_path / "new", resume_from=str(tmp_path / "run"), base=other).validate()
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"--resume: {tmp_path / 'run'} recorded another experiment: ")
    assert "base.replicates 1 → 3" in text and "base.data.root" in text and "'/elsewhere'" in text
    # --allow-changes does not unlock a setting that changes results
    with pytest.raises(ConfigError, match="base.replicates 1 → 3"):
        _config(tmp_path / "new", resume_from=str(tmp_path / "run"), base=other, allow_changes=True).validate()
    # the same experiment from another --out, with another run id and Ray: accepted
    _config(tmp_path / "new", resume_from=str(tmp_path / "run"), num_cpus=1, local=True, verbose=False).validate()


def test_run_settings_change_on_resume_only_with_allow_changes(tmp_path):
    _recorded(tmp_path)
    resumed = _config(tmp_path / "new", resume_from=str(tmp_path / "run"), num_trials=5, time_budget_s=60.0)
    with pytest.raises(ConfigError, match=r"run settings differ from sweep\.json: num_trials 2 → 5, "
                                          r"time_budget_s None → 60\.0 \(pass --allow-changes"):
        resumed.validate()
    resumed.allow_changes = True
    resumed.validate()
    from branchsweep.sweep import record

    assert record.check_resume(resumed) == {"num_trials": (2, 5), "time_budget_s": (None, 60.0)}
    assert json.loads(record.updated(resumed))["num_trials"] == 5


def test_resume_of_another_experiment_exits_2_with_one_line(tmp_path, capsys):
    with sweep_scripts("synthetic_pareto") as modules:
        from _common import build_config, main, parser

        module = modules["synthetic_pareto"]
        cfg = build_config(module.SMOKE, parser(module.SMOKE, None).parse_args(["--smoke", "--out", str(tmp_path)]))
        sweep_storage.write_bytes(str(tmp_path / SWEEP_FILE), sweep_record(cfg))
        run = lambda *argv: main(module.PRESET, module.SMOKE, None, list(argv))  # noqa: E731
        assert run("--smoke", "--out", str(tmp_path), "--resume", "--replicates", "5") == 2
        assert run("--resume", "--out", str(tmp_path)) == 2  # without --smoke: another experiment
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: --resume: ") for line in err)
    assert "base.replicates" in err[0] and "base.train.iterations" in err[1]


def test_secrets_stay_out_of_sweep_json_logs_prints_errors_and_pickles(tmp_path, monkeypatch, capsys):
    from branchsweep.sweep import study as sweep_study
    from branchsweep.sweep.tuner import progress_callback

    cfg = _config(tmp_path / "run", optuna_storage=RDB, mlflow_uri=MLFLOW, warm_start=RDB)
    stored = sweep_record(cfg).decode()
    assert SECRET not in stored and "postgresql://sweeper:***@127.0.0.1:9/optuna" in stored
    # the progress and study lines: printed and in sweep.log, redacted
    monkeypatch.setattr(sweep_study, "open_storage", lambda url, folder: optuna.storages.InMemoryStorage())
    say = progress_callback(tmp_path / "sweep.log", 1, verbose=True)
    storage, name = open_study(dataclasses.replace(cfg, warm_start=None), tmp_path / "optuna", say.line)
    say.line(f"an event naming {RDB}")
    logged, printed = (tmp_path / "sweep.log").read_text(), capsys.readouterr().out
    assert "Optuna study" in logged and "sweeper:***@" in logged and "sweeper:***@" in printed
    assert SECRET not in logged and SECRET not in printed
    monkeypatch.undo()
    # an RDB that cannot be opened: the one-line error names the URL without its password
    with pytest.raises(ConfigError) as err:
        sweep_study.open_storage(RDB, tmp_path)
    assert SECRET not in str(err.value) and "sweeper:***@" in str(err.value)
    # MLflow: the credentials go to MLflow's variables of this process, not into the callback Tune pickles
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    (callback,) = logger_callbacks(cfg)
    import os

    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET and os.environ["MLFLOW_TRACKING_USERNAME"] == "me"
    from ray import cloudpickle

    assert SECRET.encode() not in cloudpickle.dumps(callback)  # how Tune stores it
    # the searcher Tune pickles (tuner.pkl, searcher-state) holds no storage, so no URL and no password
    from branchsweep.sweep.searcher import Binding, bind
    from branchsweep.sweep.study import make_searcher

    class Storage(optuna.storages.InMemoryStorage):
        url = RDB  # what an RDBStorage keeps

    with bind(Binding(open_storage=lambda: Storage(), study_name="s", num_trials=1, concurrency=1)):
        generator = make_searcher(SearchSpace(methods=("ltb",)), {"madds": "min", "delta_m": "max"}, None, 0)
        assert generator.searcher.suggest("t1") is not None
        from ray import cloudpickle

        blob = cloudpickle.dumps(generator)  # as in tuner.pkl
        assert SECRET.encode() not in blob and b"InMemoryStorage" not in blob
        generator.searcher.save(str(tmp_path / "searcher.pkl"))
        assert SECRET.encode() not in (tmp_path / "searcher.pkl").read_bytes()


def test_storage_uris_with_credentials_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"--storage-path s3://AKIA:\*\*\*@bucket/x: credentials in a storage URI"):
        _config(tmp_path, storage_path=f"s3://AKIA:{SECRET}@bucket/x").validate()


def test_results_parquet_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = write_results([{"trial_id": "a", "label": "A", "status": "ok", "madds": 1}], tmp_path / "results.parquet")
    before = path.read_bytes()

    def half_then_crash(self, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        write_results([{"trial_id": "b", "label": "B", "status": "ok", "madds": 2}], path)
    monkeypatch.undo()
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    assert pd.read_parquet(path).trial_id.tolist() == ["a"]
