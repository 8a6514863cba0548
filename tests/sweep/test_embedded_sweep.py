"""The README's main job, at smoke size: ``python sweeps/synthetic_pareto.py --smoke --local`` end to end
(a private Ray, baselines, two Optuna trials, results, report), as a user runs it."""

from __future__ import annotations

import json
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
    assert (df.status == "ok").all() and df.delta_m.notna().all() and df["delta_m/se"].notna().all()
    searched = df[~df.is_baseline & df.baseline_kind.isna()]
    # The smoke preset's points are evaluated first: one BMTAS and one LTB trial.
    assert sorted(searched.method) == ["bmtas", "ltb"]
    # Controls: built for front points of the searched methods, at their MAdds.
    controls = df[df.baseline_kind.notna()]
    assert set(controls.method) <= {"permuted", "vanilla"} and "vanilla" in set(controls.method)
    assert set(controls.baseline_of) <= set(searched.trial_id)
    # Seeds are replicates: two retrain seeds per trial, and no seed among the sampled parameters.
    assert (df.replicates == 2).all() and not [c for c in df.columns if c.startswith("hp/") and "seed" in c]
    long = pd.read_parquet(out / "replicates.parquet")
    assert len(long) == 2 * len(df) and sorted(set(long.retrain_seed)) == [0, 1]
    trivial = json.loads((out / "trivial.json").read_text())
    assert set(trivial) >= {"semseg/mIoU", "depth/rmse", "normals/mean"}
    report = (out / "report" / "report.md").read_text()
    assert "Margin over the trivial predictor" in report and "front vs" in report and "Single − Shared: Δm" in report
    for name in ("report.md", "report.html", "pareto.png"):
        assert (out / "report" / name).is_file(), name
    # The main job exports its best searched front point as one ONNX graph and says how to time it.
    assert "exporting front point" in log or "no searched tree is on the front" in log, log[-3000:]
    if "exporting front point" in log:
        assert f"[sweep] run it: branchsweep latency {out / 'best.onnx'}" in log, log[-3000:]
        assert (out / "best.onnx").stat().st_size > 0 and (out / "best.onnx.json").is_file()
    # Any searched trial of a real Ray sweep exports: its checkpoint is found in the Ray checkpoints.
    from branchsweep.cli import main as cli_main

    trial = searched[searched.method == "ltb"].trial_id.iloc[0]
    assert cli_main(["export", str(out), "--trial", trial, "--format", "onnx", "--out", str(out / "ltb.onnx")]) == 0
    assert json.loads((out / "ltb.onnx.json").read_text())["source"]["trial_id"] == trial
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written to the working directory
