"""The README's main job, at smoke size: ``python sweeps/synthetic_pareto.py --smoke --local`` end to end
(a private Ray, baselines, two Optuna trials, results, report), as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import kill_tree, process_tree, ray_env, short_tmp

pytestmark = pytest.mark.ray

SCRIPT = Path(__file__).resolve().parents[2] / "sweeps" / "synthetic_pareto.py"


def test_smoke_sweep_runs_end_to_end_on_a_private_ray(tmp_path):
    tmp = short_tmp("bse")
    out = tmp_path / "run"
    env = {**os.environ, **ray_env(tmp)}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--smoke", "--local", "--num-cpus", "2", "--out", str(out)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=400)
    finally:
        kill_tree(process_tree(proc.pid))
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, log[-4000:]
    assert "[sweep] Ray: started a private instance" in log and "1 node(s), 2 CPU" in log
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df[df.is_baseline].label) == ["Shared", "Single"]
    search = df[~df.is_baseline]
    assert len(search) == 2 and (df.status == "ok").all() and search.delta_m.notna().all()
    # The smoke preset's points are evaluated first: one BMTAS and one LTB trial.
    assert sorted(search.method) == ["bmtas", "ltb"]
    for name in ("report.md", "report.html", "pareto.png"):
        assert (out / "report" / name).is_file(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written to the working directory
