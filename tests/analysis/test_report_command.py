"""``branchsweep report`` on the paper's Table 1 and on a sweep-style results file, plus its errors."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from analysis_fixtures import FRONTS, TABLES

from branchsweep.arch import BranchConfig
from branchsweep.cli import main

TASKS = ["semseg", "depth", "normals"]
LAYER_NAMES = ["conv1", "layer1", "layer2", "layer3"]  # what the sweep's arch_drawing names the layers


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_report_on_table1_writes_every_file(tmp_path, capsys):
    table = tmp_path / "table1.csv"
    table.write_bytes(TABLES["table1"].read_bytes())
    code, out, err = run_cli(capsys, "report", "--table", str(table), "--baseline", "Single", "--madds-column", "MAdds")
    assert code == 0, err
    report_dir = tmp_path / "report"  # default: the table's folder
    assert f"report written to {report_dir}" in out
    for name in ("results.parquet", "report.md", "report.html", "pareto.png"):
        assert (report_dir / name).stat().st_size > 0, name
    tidy = pd.read_parquet(report_dir / "results.parquet")
    assert {"delta_m", "on_front", "delta_m_reported", "madds", "SemSeg"} <= set(tidy.columns)
    assert set(tidy.loc[tidy["on_front"], "label"]) == FRONTS["table1"]
    assert tidy["madds"].is_monotonic_increasing
    md = (report_dir / "report.md").read_text()
    assert "## Pareto front" in md and "| ★ | C.-S. |" in md and "Norm (↓)" in md
    assert "no lambda_vs_madds.png" in md
    html = (report_dir / "report.html").read_text()
    assert "#d8f3d8" in html and "pareto.png" in html


def _sweep_results() -> pd.DataFrame:
    single = BranchConfig.single(TASKS, 4)
    shared = BranchConfig.shared(TASKS, 4)
    branched = BranchConfig.from_op_indices(TASKS, [[0, 0, 0], [0, 0, 0], [0, 1, 1], [0, 1, 2]])
    rows = [
        # label, method, baseline, status, madds, mIoU, rmse, mean, lambda, arch
        ("Single", "single", True, "ok", 3.0e9, 60.0, 0.50, 20.0, None, single),
        ("Shared", "shared", True, "ok", 1.0e9, 54.0, 0.55, 22.0, None, shared),
        ("bmtas λ=0.1", "bmtas", False, "ok", 1.5e9, 57.0, 0.52, 21.0, 0.1, branched),
        ("bmtas λ=0.05", "bmtas", False, "ok", 1.5e9, 57.0, 0.52, 21.0, 0.05, branched),
        ("bmtas λ=0.01", "bmtas", False, "ok", 2.5e9, 56.0, 0.53, 21.0, 0.01, single),
        ("ltb seed 3", "ltb", False, "failed", None, None, None, None, None, None),
    ]
    return pd.DataFrame({
        "trial_id": [f"t{i}" for i in range(len(rows))],
        "label": [r[0] for r in rows],
        "method": [r[1] for r in rows],
        "is_baseline": [r[2] for r in rows],
        "status": [r[3] for r in rows],
        "madds": [r[4] for r in rows],
        "params": [1_000_000] * len(rows),
        "semseg/mIoU": [r[5] for r in rows],
        "depth/rmse": [r[6] for r in rows],
        "normals/mean": [r[7] for r in rows],
        "normals/median": [15.0] * len(rows),
        "hp/lambda": [r[8] for r in rows],
        "hp/seed": [0] * len(rows),
        "arch_hash": [r[9].arch_hash() if r[9] else None for r in rows],
        "arch_json": [r[9].to_json() if r[9] else None for r in rows],
        "arch_drawing": [r[9].draw(LAYER_NAMES) if r[9] else None for r in rows],
        "search_time_s": [1.0] * len(rows),
        "retrain_time_s": [2.0] * len(rows),
    })


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_report_on_a_sweep_folder(tmp_path, capsys, fmt):
    results = _sweep_results()
    path = tmp_path / f"results.{fmt}"
    results.to_csv(path, index=False) if fmt == "csv" else results.to_parquet(path, index=False)
    code, out, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    report_dir = tmp_path / "report"
    tidy = pd.read_parquet(report_dir / "results.parquet").set_index("label")
    # Δm from each task's primary metric (normals/median is ignored), against the 'single' baseline:
    # (-5 % mIoU, -4 % for +4 % rmse, -5 % for +5 % mean error) / 3.
    assert tidy.loc["bmtas λ=0.1", "delta_m"] == pytest.approx(-14 / 3)
    assert tidy.loc["Single", "delta_m"] == 0.0
    # the failed trial is kept, listed, and not on the front; the two identical bmtas points both are.
    assert tidy.loc["ltb seed 3", "status"] == "failed" and not tidy.loc["ltb seed 3", "on_front"]
    assert set(tidy.index[tidy["on_front"]]) == {"Shared", "bmtas λ=0.1", "bmtas λ=0.05", "Single"}
    md = (report_dir / "report.md").read_text()
    assert "## Failed trials" in md and "ltb seed 3" in md
    assert "## Hyperparameters of the front points" in md
    assert (report_dir / "lambda_vs_madds.png").stat().st_size > 0
    # one drawing per distinct architecture on the front: single, shared, branched.
    drawings = sorted(p.stem for p in (report_dir / "arch").glob("*.txt"))
    assert len(drawings) == 3 and len(list((report_dir / "arch").glob("*.png"))) == 3
    branched = results.loc[2, "arch_hash"]
    drawing = (report_dir / "arch" / f"{branched}.txt").read_text()
    assert drawing == results.loc[2, "arch_drawing"] + "\n"  # the sweep's drawing, with its layer names
    assert drawing.startswith("conv1-layer1 [semseg depth normals]")
    assert f"### {branched} (bmtas λ=0.05, bmtas λ=0.1)" in md and "tree drawings" not in md
    assert "Δm against 'Single'" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report"], "either a sweep folder"),
        (["report", "--table", "missing.csv", "--baseline", "Single"], "missing.csv not found"),
        (["report", "--table", str(TABLES["table1"])], "needs --baseline"),
        (["report", "--table", str(TABLES["table1"]), "--baseline", "Solo"], "baseline row 'Solo'"),
        (["report", "--table", str(TABLES["table1"]), "--baseline", "Single", "--direction", "Norm"], "COLUMN=max"),
        (["report", "nowhere"], "nowhere does not exist"),
    ],
)
def test_mistakes_end_in_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_empty_run_folder_and_unknown_metric_direction(tmp_path, capsys):
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2 and "results.parquet or results.csv" in err
    df = pd.DataFrame({"label": ["Single", "m"], "madds": [2, 1], "is_baseline": [True, False],
                       "method": ["single", "x"], "custom/score": [1.0, 2.0]})
    df.to_csv(tmp_path / "results.csv", index=False)
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2 and "'custom/score' has no direction" in err
    code, out, err = run_cli(capsys, "report", str(tmp_path), "--direction", "custom/score=max",
                             "--out", str(tmp_path / "elsewhere"))
    assert code == 0, err
    assert (tmp_path / "elsewhere" / "report.md").is_file()


def test_installed_analysis_package_does_not_import_torch(tmp_path):
    # run outside the checkout so the installed package (not the working directory) is imported
    code = ("import sys, analysis; assert callable(analysis.delta_m), 'analysis installed as a namespace'; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


@pytest.mark.parametrize(
    ("arch_json", "message"),
    [("{not json", "malformed JSON"),
     ('{"version": 1, "tasks": ["semseg", "depth"], "layers": [[["semseg"], ["depth"]], [["semseg", "depth"]]]}',
      "layer 2 merges branches"),
     ('{"version": 2, "tasks": ["semseg"], "layers": [[["semseg"]]]}', "unsupported version 2")],
)
def test_a_broken_architecture_names_its_trial(tmp_path, capsys, arch_json, message):
    results = _sweep_results()
    results.loc[1, "arch_json"] = arch_json
    results.to_csv(tmp_path / "results.csv", index=False)
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2 and f"arch_json of trial 't1' (Shared): {message}" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("dropped", "txt", "png", "note"),
    [
        (["arch_drawing"], 0, 3, "No arch_drawing for 3 of 3 front architecture(s)"),  # sweeps before arch_drawing
        (["arch_json"], 3, 0, "No arch_json for 3 of 3 front architecture(s)"),
        (["arch_json", "arch_drawing"], 0, 0, "No arch_drawing for 3 of 3"),
        (["arch_hash"], 0, 0, "No architecture hash (arch_hash) on the front rows"),
    ],
)
def test_missing_architecture_columns_leave_out_only_what_needs_them(tmp_path, capsys, dropped, txt, png, note):
    _sweep_results().drop(columns=dropped).to_parquet(tmp_path / "results.parquet", index=False)
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    arch = tmp_path / "report" / "arch"
    assert len(list(arch.glob("*.txt"))) == txt and len(list(arch.glob("*.png"))) == png
    md = (tmp_path / "report" / "report.md").read_text()
    assert note in md
    assert ("## Architectures on the front" in md) == ("arch_hash" not in dropped)


def test_generic_tasks_take_one_wildcard_direction(tmp_path, capsys):
    df = pd.DataFrame({"label": ["Single", "m"], "madds": [2e9, 1e9], "is_baseline": [True, False],
                       "method": ["single", "ltb"], "bent_0/mse": [1.0, 1.1], "sinc_1/mse": [2.0, 2.0]})
    df.to_csv(tmp_path / "results.csv", index=False)
    code, _, err = run_cli(capsys, "report", str(tmp_path), "--direction", "*/mse=min")
    assert code == 0, err
    tidy = pd.read_parquet(tmp_path / "report" / "results.parquet").set_index("label")
    assert tidy.loc["m", "delta_m"] == pytest.approx(-5.0)  # (-10 % + 0) / 2


def test_a_sweeps_metrics_file_supplies_columns_and_directions(tmp_path, capsys):
    df = pd.DataFrame({"label": ["Single", "m"], "madds": [2e9, 1e9], "is_baseline": [True, False],
                       "method": ["single", "ltb"], "Smiling/accuracy": [80.0, 88.0], "Smiling/loss": [0.4, 0.3],
                       "bent_0/mse": [1.0, 1.1]})
    df.to_csv(tmp_path / "results.csv", index=False)
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2 and "several metric columns" in err  # Smiling has two columns and is not registered
    (tmp_path / "metrics.json").write_text(
        '{"primary": ["Smiling/accuracy", "bent_0/mse"], '
        '"directions": {"Smiling/accuracy": "max", "Smiling/loss": "min", "bent_0/mse": "min"}}'
    )
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    tidy = pd.read_parquet(tmp_path / "report" / "results.parquet").set_index("label")
    assert tidy.loc["m", "delta_m"] == pytest.approx(0.0)  # (+10 % accuracy − 10 % for +10 % mse) / 2
    # a flag overrides the file
    code, _, err = run_cli(capsys, "report", str(tmp_path), "--direction", "bent_0/mse=max")
    assert code == 0, err
    tidy = pd.read_parquet(tmp_path / "report" / "results.parquet").set_index("label")
    assert tidy.loc["m", "delta_m"] == pytest.approx(10.0)
    (tmp_path / "metrics.json").write_text("[1, 2]")
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2 and "metrics.json: not a metrics spec" in err


def test_cpu_size_sweeps_are_reported_in_mmadds(tmp_path, capsys):
    # the embedded sweep's networks cost ~0.5 MMAdds: GMAdds with two decimals would print 0.00 for all
    df = pd.DataFrame({"label": ["Single", "Shared"], "madds": [470_000, 80_000], "is_baseline": [True, True],
                       "method": ["single", "shared"], "depth/rmse": [1.0, 1.1]})
    df.to_csv(tmp_path / "results.csv", index=False)
    code, out, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    assert "0.470 MMAdds" in out and "0.080 MMAdds" in out
    md = (tmp_path / "report" / "report.md").read_text()
    assert "MMAdds" in md and "GMAdds" not in md


def _write_sweep(folder, train_iterations: int = 10) -> None:
    """``sweep.json`` as the sweep runner writes it."""
    from branchsweep.config import DataConfig, ModelConfig, TrainConfig
    from branchsweep.sweep import SweepBase, SweepConfig
    from branchsweep.sweep.runner import sweep_record

    base = SweepBase(data=DataConfig(dataset="synthetic-dense", size=8, tasks=TASKS),
                     model=ModelConfig(backbone="convnet", width=0.25),
                     train=TrainConfig(iterations=train_iterations, progress=False), branch_points=(0, 2))
    cfg = SweepConfig(name="t", out=folder, base=base)
    (folder / "sweep.json").write_bytes(sweep_record(cfg))


def _write_table(root) -> str:
    """A committed-style table whose recipe is :func:`_write_sweep`'s Single trial's (10 iterations; the
    trial resolves ``divide_lr_by_sharing`` to the baselines' convention, yes): Single, Shared, the
    sweep's branched tree and one more, 2 seeds."""
    import json

    from branchsweep.config import DataConfig, ModelConfig, TrainConfig
    from branchsweep.truth import recipe_hash

    key = recipe_hash(DataConfig(dataset="synthetic-dense", size=8, tasks=TASKS), ModelConfig(backbone="convnet", width=0.25),
                      TrainConfig(iterations=10, divide_lr_by_sharing=True))
    results = _sweep_results()
    other = BranchConfig.from_op_indices(TASKS, [[0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 1]])
    trees = [(h, m, dm) for h, m, dm in zip(results["arch_hash"][:3], results["madds"][:3], (0.0, -8.0, -2.0))]
    trees.append((other.arch_hash(), 2.0e9, -1.0))
    rows = pd.DataFrame([{"tree": h, "arch_hash": h, "seed": s, "madds": m, "delta_m": dm + 0.5 * s}
                         for h, m, dm in trees for s in range(2)])
    folder = root / "fake-dense"
    folder.mkdir(parents=True)
    rows.to_csv(folder / "rows.csv", index=False)
    (folder / "manifest.json").write_text(json.dumps({"table": "fake-dense", "recipe_hash": key, "trees": 4,
                                                     "seeds": [0, 1], "branch_points": [0, 2], "commit": "abc"}))
    return key


def test_a_sweep_with_a_matching_exhaustive_table_is_scored_against_it(tmp_path, capsys, monkeypatch):
    import branchsweep.truth

    monkeypatch.setattr(branchsweep.truth, "TABLES_DIR", tmp_path / "tables")
    _write_table(tmp_path / "tables")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _sweep_results().to_csv(run_dir / "results.csv", index=False)
    code, plain, err = run_cli(capsys, "report", str(run_dir))  # no sweep.json: not looked up
    assert code == 0, err
    plain_md = (run_dir / "report" / "report.md").read_text()
    assert "exhaustive" not in plain and "exhaustive" not in plain_md and not (run_dir / "report" / "truth.png").exists()
    _write_sweep(run_dir, train_iterations=11)  # another recipe: no table matches, nothing changes
    code, out, err = run_cli(capsys, "report", str(run_dir))
    assert code == 0, err
    assert out == plain and (run_dir / "report" / "report.md").read_text() == plain_md
    assert not (run_dir / "report" / "truth.png").exists()
    storage = tmp_path / "storage"  # where the runner's --sweep-config points when the sweep lives elsewhere
    storage.mkdir()
    _write_sweep(storage)
    code, out, err = run_cli(capsys, "report", str(run_dir), "--sweep-config", str(storage / "sweep.json"))
    assert code == 0, err
    assert "exhaustive table fake-dense: 4 trees × 2 seeds, branch points 0, 2, commit abc" in out
    # BMTAS found the branched tree and Single: both in the table (2 seeds, so mean ± s.e.).
    assert "searched front (BMTAS): " in out and "% of the exhaustive hypervolume (2 table seeds)" in out
    md = (run_dir / "report" / "report.md").read_text()
    assert "**searched front (BMTAS)" in md and "- exhaustive table **fake-dense**" in md
    assert (run_dir / "report" / "truth.png").stat().st_size > 0
