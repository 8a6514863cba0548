"""``branchsweep export`` and ``branchsweep latency`` through the CLI: a real retrain folder and a sweep
folder (trials run by :func:`run_trial`, one of them reusing another's cached retrain, whose checkpoint
sits in a Ray-checkpoint-like folder), and every user mistake as one line with exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.cli import main
from branchsweep.config import DataConfig, ModelConfig, TrainConfig

TINY = ["--size", "32", "--width", "0.25", "--train-samples", "16", "--val-samples", "8", "--no-progress"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def retrain_dir(tmp_path_factory):
    """A branched convnet (semseg, depth split after the fourth layer) trained for 3 iterations."""
    tmp = tmp_path_factory.mktemp("retrain")
    arch = BranchConfig.from_op_indices(["semseg", "depth"], [[0, 0]] * 4 + [[0, 1]] * 3)
    arch.save(tmp / "arch.json")
    code = main(["train", "--arch", str(tmp / "arch.json"), "--backbone", "convnet", "--tasks", "semseg,depth",
                 "--iterations", "3", "--batch-size", "4", "--out", str(tmp / "run"), *TINY])
    assert code == 0
    return tmp / "run"


def test_export_retrain_folder_to_onnx(retrain_dir, tmp_path, capsys):
    out = tmp_path / "tree.onnx"
    code, stdout, err = run_cli(capsys, "export", retrain_dir, "--format", "onnx", "--out", out)
    assert code == 0, err
    assert "check vs PyTorch (32x32): max abs error" in stdout and ": ok" in stdout
    onnx.checker.check_model(str(out), full_check=True)
    side = json.loads((tmp_path / "tree.onnx.json").read_text())
    assert side["outputs"] == side["tasks"] == ["semseg", "depth"]
    assert side["input"]["shape"] == ["batch", 3, 32, 32] and side["check"]["passed"]
    assert side["madds"] == json.loads((retrain_dir / "metrics.json").read_text())["madds"]
    assert BranchConfig.from_dict(side["branch_config"]).arch_hash() == side["arch_hash"]
    assert side["source"]["kind"] == "retrain" and side["check"]["results"][0]["max_abs"] <= 1e-4
    # The exported graph equals the trained network rebuilt as `branchsweep evaluate` does, at batch 1 and 3.
    from branchsweep.runs import load_run

    loaded = load_run(retrain_dir)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            want = loaded.model(x)
        for name, got in zip(["semseg", "depth"], session.run(None, {"input": x.numpy()})):
            np.testing.assert_allclose(got, want[name].numpy(), atol=1e-4, rtol=1e-3)


def test_export_retrain_folder_to_torchscript_with_dynamic_size(retrain_dir, tmp_path, capsys):
    out = tmp_path / "tree.pt"
    code, stdout, err = run_cli(capsys, "export", retrain_dir, "--format", "torchscript", "--out", out,
                                "--dynamic-size")
    assert code == 0, err
    assert stdout.count(": ok") == 2  # at the trained size and at a second one
    side = json.loads((tmp_path / "tree.pt.json").read_text())
    assert side["input"]["shape"] == ["batch", 3, "height", "width"]
    from branchsweep.runs import load_run

    x = torch.randn(2, 3, 24, 40)  # a size the trace never saw
    with torch.no_grad():
        want = load_run(retrain_dir).model(x)
        got = torch.jit.load(str(out))(x)
    assert [tuple(t.shape) for t in got] == [tuple(want["semseg"].shape), (2, 1, 24, 40)]
    for name, tensor in zip(["semseg", "depth"], got):
        torch.testing.assert_close(tensor, want[name], atol=1e-4, rtol=1e-3)


def test_latency_of_a_retrain_folder(retrain_dir, tmp_path, capsys):
    code, stdout, err = run_cli(capsys, "latency", retrain_dir, "--device", "cpu", "--batch", "2", "--threads", "1",
                                "--repeats", "3", "--warmup", "1", "--runtime", "both", "--json", tmp_path / "lat.json")
    assert code == 0, err
    lines = stdout.splitlines()
    table = lines[lines.index(next(line for line in lines if line.split()[:2] == ["model", "runtime"])):]
    assert [line.split()[:2] for line in table[1:7]] == [
        ["tree", "torch"], ["tree", "onnxruntime"], ["Single", "torch"], ["Single", "onnxruntime"],
        ["Shared", "torch"], ["Shared", "onnxruntime"]]
    rows = json.loads((tmp_path / "lat.json").read_text())["rows"]
    assert all(0 < r["median_ms"] <= r["p90_ms"] and r["peak_mem_mb"] >= 0 for r in rows)
    madds = {r["model"]: r["MMAdds"] for r in rows}
    assert madds["Single"] > madds["tree"] > madds["Shared"]


# ------------------------------------------------------------------------------------------ sweeps
SWEEP_DATA = DataConfig(dataset="ltb-synthetic", train_samples=64, val_samples=16, tasks=["bent_0", "square_0", "sinc_0"])
SWEEP_MODEL = ModelConfig(backbone="mlp", width=0.16)
SWEEP_TRAIN = TrainConfig(iterations=5, batch_size=16, eval_batch_size=16, progress=False)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A sweep folder as a sweep leaves it: results.parquet, metrics.json, sweep.json, trials/<id>/ with the
    small files only, and the retrain checkpoints inside Ray-checkpoint folders under tune/. Trial ``t3``
    retrains Shared's tree again, so it reuses ``t2``'s cached retrain and has no checkpoint of its own."""
    from branchsweep.pipeline import SweepCaches, TrialConfig, run_trial
    from branchsweep.sweep import SweepBase, SweepConfig
    from branchsweep.sweep.runner import sweep_record, write_metric_spec, write_results

    run_dir = tmp_path_factory.mktemp("sweep")
    caches = SweepCaches(run_dir / "cache")
    shared = BranchConfig.shared(SWEEP_DATA.tasks, 4)
    shared.save(run_dir / "shared.json")
    trials = [("t1", TrialConfig(method="single", label="Single", is_baseline=True)),
              ("t2", TrialConfig(method="shared", label="Shared", is_baseline=True)),
              ("t3", TrialConfig(method="fixed", arch=str(run_dir / "shared.json"), label="fixed shared"))]
    rows = []
    for trial_id, cfg in trials:
        cfg.data, cfg.model, cfg.train = SWEEP_DATA, SWEEP_MODEL, SWEEP_TRAIN
        row = run_trial(cfg, run_dir / "trials" / trial_id, caches)
        rows.append({**row, "trial_id": trial_id, "status": "ok"})
    spec = json.loads(rows[0]["metric_spec"])
    for row in rows:
        row.pop("metric_spec")
    assert [r["retrain_cached"] for r in rows] == [False, False, True]
    # Where a sweep keeps a trial's working folder: in its Ray checkpoints, not in trials/<id>/.
    for trial_id in ("t1", "t2"):
        work = run_dir / "trials" / trial_id
        shutil.copytree(work, run_dir / "tune" / "baselines" / f"sweep_trial_{trial_id}" / "checkpoint_000003")
        shutil.rmtree(work / "retrain")
    write_results(rows, run_dir / "results.parquet")
    write_metric_spec(spec, run_dir)
    config = SweepConfig(name="t", out=run_dir, base=SweepBase(data=SWEEP_DATA, model=SWEEP_MODEL, train=SWEEP_TRAIN))
    (run_dir / "sweep.json").write_bytes(sweep_record(config))
    return run_dir


def test_export_sweep_trial_that_reused_a_cached_retrain(sweep_dir, tmp_path, capsys):
    out = tmp_path / "t3.onnx"
    code, stdout, err = run_cli(capsys, "export", sweep_dir, "--trial", "t3", "--out", out)
    assert code == 0, err
    side = json.loads((tmp_path / "t3.onnx.json").read_text())
    assert side["source"]["trial_id"] == "t3" and side["source"]["seed"] == 0
    assert "sweep_trial_t2" in side["source"]["checkpoint"]  # the trial that trained the tree
    assert side["outputs"] == ["bent_0", "square_0", "sinc_0"] and side["check"]["passed"]
    assert side["input"]["shape"] == ["batch", 200]


def test_export_front_point(sweep_dir, tmp_path, capsys):
    from branchsweep.runs import load_run, sweep_front

    front = sweep_front(sweep_dir)
    assert len(front) >= 1 and list(front["madds"]) == sorted(front["madds"])
    out = tmp_path / "front.onnx"
    code, stdout, err = run_cli(capsys, "export", sweep_dir, "--front-point", "1", "--out", out)
    assert code == 0, err
    side = json.loads((tmp_path / "front.onnx.json").read_text())
    assert side["source"]["trial_id"] == front["trial_id"].iloc[0] and side["source"]["front_point"] == 1
    assert side["madds"] == int(front["madds"].iloc[0])  # priced again from the rebuilt tree: the row's MAdds
    last = load_run(sweep_dir, front_point=len(front))
    assert last.metadata["trial_id"] == front["trial_id"].iloc[-1]


def test_latency_of_an_exported_file(sweep_dir, tmp_path, capsys):
    out = tmp_path / "t1.onnx"
    assert run_cli(capsys, "export", sweep_dir, "--trial", "t1", "--out", out)[0] == 0
    code, stdout, err = run_cli(capsys, "latency", out, "--runtime", "onnxruntime", "--repeats", "3", "--warmup", "1")
    assert code == 0, err
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] in (["tree"], ["Single"], ["Shared"])]
    assert [r[:2] for r in rows] == [["tree", "onnxruntime"], ["Single", "onnxruntime"], ["Shared", "onnxruntime"]]
    assert rows[0][-1] == "t1.onnx"  # the tree is the exported file itself


# ------------------------------------------------------------------------------------------ mistakes
def _no_checkpoint(retrain_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(retrain_dir, folder, ignore=shutil.ignore_patterns("checkpoint.pt"))
    return folder


@pytest.mark.parametrize("case, message", [
    ("no_checkpoint", "has no checkpoint.pt"),
    ("not_a_run", "is neither a retrain folder"),
    ("unknown_trial", "no trial 'nope'"),
    ("front_out_of_range", "--front-point 99 is out of range"),
    ("front_zero", "--front-point 0 is out of range"),
    ("no_selection", "choose a trial with --trial ID or --front-point K"),
    ("bad_seed", "was retrained with seed(s) 0, not 7"),
    ("trial_on_retrain", "is a retrain folder: --trial"),
    ("missing_out_folder", "does not exist"),
    ("out_is_folder", "is a folder; give a file name"),
    ("dynamic_size_vector", "not an image; it has no size"),
    ("bad_format", "invalid choice: 'tflite'"),
])
def test_export_mistakes_are_one_line(case, message, retrain_dir, sweep_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    argv = {
        "no_checkpoint": lambda: [_no_checkpoint(retrain_dir, tmp_path), "--out", out],
        "not_a_run": lambda: [tmp_path, "--out", out],
        "unknown_trial": lambda: [sweep_dir, "--trial", "nope", "--out", out],
        "front_out_of_range": lambda: [sweep_dir, "--front-point", "99", "--out", out],
        "front_zero": lambda: [sweep_dir, "--front-point", "0", "--out", out],
        "no_selection": lambda: [sweep_dir, "--out", out],
        "bad_seed": lambda: [sweep_dir, "--trial", "t1", "--seed", "7", "--out", out],
        "trial_on_retrain": lambda: [retrain_dir, "--trial", "t1", "--out", out],
        "missing_out_folder": lambda: [retrain_dir, "--out", tmp_path / "missing" / "m.onnx"],
        "out_is_folder": lambda: [retrain_dir, "--out", tmp_path],
        "dynamic_size_vector": lambda: [sweep_dir, "--trial", "t1", "--dynamic-size", "--out", out],
        "bad_format": lambda: [retrain_dir, "--format", "tflite", "--out", out],
    }[case]()
    code, stdout, err = run_cli(capsys, "export", *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("branchsweep: error:") and message in err, err
    assert "Traceback" not in err


def test_export_a_network_the_format_cannot_express(retrain_dir, tmp_path, capsys, monkeypatch):
    """Both ONNX exporters failing (an operator ONNX lacks) is one line naming each exporter's reason."""
    def refuse(*args, **kwargs):
        raise RuntimeError("Unsupported: aten::fancy_op has no ONNX equivalent\nlong details")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    code, stdout, err = run_cli(capsys, "export", retrain_dir, "--out", tmp_path / "m.onnx")
    assert code == 2 and err.count("\n") == 1
    assert "ONNX cannot express this network (dynamo exporter: Unsupported: aten::fancy_op" in err
    assert "torchscript exporter:" in err


@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda"], "CUDA is not available"),
    (["--repeats", "0"], "repeats must be an integer >= 1"),
    (["--device", "gpu"], "device must be cpu, cuda or cuda:N"),
])
def test_latency_mistakes_are_one_line(argv, message, retrain_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, on any machine
    code, stdout, err = run_cli(capsys, "latency", retrain_dir, *argv)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_latency_of_a_file_without_sidecar(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    code, _, err = run_cli(capsys, "latency", tmp_path / "m.onnx")
    assert code == 2 and "has no sidecar m.onnx.json" in err


def test_load_run_path_is_a_path(retrain_dir):
    from branchsweep.runs import load_run

    loaded = load_run(Path(retrain_dir))
    assert loaded.example.shape == (8, 3, 32, 32) and not loaded.model.training
    assert loaded.metadata["tasks"] == ["semseg", "depth"] and loaded.metadata["seed"] == 0


def test_madds_vs_latency_benchmark_on_a_sweep_folder(sweep_dir, tmp_path, capsys):
    """benchmarks/madds_vs_latency.py times each distinct architecture once per round, Single's ratio is 1."""
    import importlib.util

    import pandas as pd

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "madds_vs_latency.py"
    spec = importlib.util.spec_from_file_location("madds_vs_latency", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = [str(sweep_dir), "--out", str(tmp_path / "lat"), "--rounds", "2", "--repeats", "2", "--warmup", "0",
            "--runtimes", "torch,onnxruntime"]
    assert bench.main(argv) == 0
    table = pd.read_csv(tmp_path / "lat" / "latency.csv")
    assert sorted(table["label"]) == ["Shared", "Single"]  # "fixed shared" is Shared's tree: timed once
    single = table[table["label"] == "Single"].iloc[0]
    assert single["torch / Single"] == 1.0 and single["onnxruntime / Single"] == 1.0
    assert (table["torch ms"] > 0).all() and (tmp_path / "lat" / "madds_vs_latency.png").stat().st_size > 0
    assert "round 2/2 done" in capsys.readouterr().out
    assert bench.main([str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a sweep folder" in capsys.readouterr().err
