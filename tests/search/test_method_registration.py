"""A search method is one registration: a throw-away method in its own file (tests/plugins/split_at.py)
runs through the CLI, owns its flags and search space, and other methods' flags are rejected."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest

from branchsweep.cli import main
from branchsweep.errors import ConfigError
from branchsweep.search import SEARCH_METHODS
from branchsweep.search.base import config_flags

PLUGIN = Path(__file__).parent.parent / "plugins" / "split_at.py"
TINY = ["--dataset", "ltb-synthetic", "--tasks", "bent_0,square_0,sinc_0", "--train-samples", "64",
        "--val-samples", "16", "--backbone", "mlp", "--width", "0.16", "--no-progress"]


@pytest.fixture
def split_at(monkeypatch):
    """Register ``split-at`` the way a user would (BRANCHSWEEP_PLUGINS) and remove it afterwards."""
    monkeypatch.setenv("BRANCHSWEEP_PLUGINS", str(PLUGIN))
    yield
    if "split-at" in SEARCH_METHODS:
        SEARCH_METHODS.unregister("split-at")
    for name in [m for m in sys.modules if m.startswith("branchsweep_plugin_") and "split_at" in m]:
        del sys.modules[name]


def test_registered_method_runs_through_the_cli(split_at, tmp_path, capsys):
    assert main(["search", "--method", "split-at", "--layer", "2", "--out", str(tmp_path / "s"), *TINY]) == 0
    layers = json.loads((tmp_path / "s" / "branch_config.json").read_text())["layers"]
    assert [len(groups) for groups in layers] == [1, 1, 3, 3]  # shared up to layer 2, then one branch per task
    assert "split-at search finished" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--method", "split-at", "--lambda", "1"], "--lambda is a bmtas setting, not split-at"),
    (["--method", "bmtas", "--child-nodes", "2,2,2,T"], "--child-nodes is a ltb setting, not bmtas"),
    (["--method", "ltb", "--layer", "1"], "--layer is a split-at setting, not ltb"),
    (["--method", "split-at", "--layer", "-1"], "--layer must be >= 0"),
])
def test_a_setting_of_another_method_is_an_error(split_at, tmp_path, capsys, argv, message):
    assert main(["search", *argv, "--out", str(tmp_path / "x"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "x").exists()  # rejected before anything is written


@pytest.mark.parametrize("name", SEARCH_METHODS.names())
def test_method_flags_defaults_and_space(name):
    method = SEARCH_METHODS.get(name)
    flags = config_flags(method.config_type)
    assert len({f.flag for f in flags}) == len(flags)  # one flag per setting
    defaults = method.config_type()
    try:
        getattr(defaults, "validate", lambda: None)()
    except ConfigError:  # a method that needs an input (the baselines' target tree or MAdds) says so in one line
        with pytest.raises(ConfigError):
            method.make_config({})
    else:
        assert method.make_config({}) == defaults  # flag-less config = the paper defaults
    if method.space_type is None:
        return
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        method.make_space().suggest(trial, f"{name}.")
        assert trial.params and all(k.startswith(f"{name}.") for k in trial.params)
        sampled = {k.removeprefix(f"{name}."): v for k, v in trial.params.items()}
        method.make_config(method.settings(sampled))  # every sample is a valid configuration


@pytest.mark.parametrize("method", SEARCH_METHODS.names())
def test_help_after_method_lists_only_that_methods_settings(method, capsys):
    """``branchsweep search --method NAME --help`` lists NAME's settings and no other method's flag."""
    with pytest.raises(SystemExit) as done:
        main(["search", "--method", method, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    own = {f.flag for f in SEARCH_METHODS.get(method).flags()}
    others = {f.flag for name in SEARCH_METHODS.names() if name != method for f in SEARCH_METHODS.get(name).flags()}
    assert all(flag in text for flag in own), own
    assert not [flag for flag in others - own if f"{flag} " in text or f"{flag}\n" in text]
    assert "--branch-points" in text and "--out" in text  # the common flags stay
    if own:
        assert f"{method} settings" in text


def test_help_without_method_groups_flags_by_method(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    assert "bmtas settings" in text and "ltb settings" in text and "--method NAME" in text
