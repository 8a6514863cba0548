"""A search method registered in its own file runs in a one-trial sweep: its space is sampled by Optuna in
the driver and the trial's worker imports the plugin (``SweepConfig.plugins``) — no other file changes."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_base

from branchsweep.search import SEARCH_METHODS
from branchsweep.sweep import SearchSpace, SweepConfig, run_sweep

pytestmark = pytest.mark.ray

PLUGIN = Path(__file__).parent.parent / "plugins" / "split_at.py"


def test_one_trial_sweep_of_a_plugin_method(ray_local, tmp_path):
    try:
        cfg = SweepConfig(name="plugin", out=tmp_path / "run", base=tiny_base(),
                          space=SearchSpace(methods=("split-at",), ranges={"split-at": {"layers": (2,)}}),
                          num_trials=1, concurrency=1, backend="direct", max_failures=0, baselines=("single",),
                          plugins=(str(PLUGIN),), report=False, verbose=False)
        outcome = run_sweep(cfg)
    finally:
        if "split-at" in SEARCH_METHODS:
            SEARCH_METHODS.unregister("split-at")
        for name in [m for m in sys.modules if m.startswith("branchsweep_plugin_") and "split_at" in m]:
            del sys.modules[name]
    df = pd.read_parquet(outcome.results_path)
    trial = df[df.method == "split-at"]
    assert len(trial) == 1 and trial.status.iloc[0] == "ok", df.get("error")
    assert trial["hp/layer"].iloc[0] == 2 and trial.label.iloc[0] == "split-at layer=2"
    assert trial.arch_drawing.iloc[0].count("\n") >= 3  # shared trunk, then three branches
    assert df.trial_id.str.fullmatch(r"[0-9a-f]{5}_\d{5}|[0-9a-f]{8}").all()  # Tune's ids, not folder-name pieces
