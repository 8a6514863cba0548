"""README: "Nothing is written to the current directory unless asked (--out)". Every command runs once
from an empty working directory (absolute --out/--root paths elsewhere, caches in the test cache), and
the directory stays empty; ``train`` without ``--out`` writes nothing at all."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
from pathlib import Path

from data.fixtures import write_nyud

import branchsweep.commands
from branchsweep.cli import main

TINY = ["--size", "32", "--width", "0.25", "--train-samples", "16", "--val-samples", "8", "--no-progress"]
TABLE = Path(__file__).resolve().parents[1] / "analysis" / "data" / "bmtas_table1.csv"


def _command_names() -> set[str]:
    pkg = branchsweep.commands
    return {importlib.import_module(f"{pkg.__name__}.{info.name}").NAME
            for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_")}


def test_no_command_writes_to_the_working_directory(tmp_path, monkeypatch, capsys):
    cwd, elsewhere = tmp_path / "cwd", tmp_path / "elsewhere"
    cwd.mkdir()
    elsewhere.mkdir()
    table = elsewhere / TABLE.name
    shutil.copy(TABLE, table)
    runs = {  # one invocation per command, in an order where each finds what it reads
        "madds": ["madds", "--backbone", "mobilenet_v2", "--tasks", "semseg,depth", "--size", "32", "--width", "0.25"],
        "train": ["train", "--arch", "shared", "--tasks", "semseg,depth", "--iterations", "2", "--batch-size", "4",
                  "--out", str(elsewhere / "train"), *TINY],
        "evaluate": ["evaluate", str(elsewhere / "train")],
        "export": ["export", str(elsewhere / "train"), "--format", "torchscript", "--out", str(elsewhere / "tree.pt")],
        "latency": ["latency", str(elsewhere / "tree.pt"), "--runtime", "torch", "--repeats", "2", "--warmup", "0"],
        "search": ["search", "--method", "ltb", "--dataset", "ltb-synthetic", "--activations", "bent,sin",
                   "--tasks-per-activation", "1", "--train-samples", "32", "--val-samples", "8", "--iterations", "2",
                   "--batch-size", "8", "--width", "0.1", "--out", str(elsewhere / "search"), "--no-progress"],
        "report": ["report", "--table", str(table), "--baseline", "Single", "--madds-column", "MAdds↓"],
        "check-data": ["check-data", "--dataset", "nyud", "--root", str(write_nyud(elsewhere / "nyud"))],
    }
    assert set(runs) == _command_names(), "a new command needs an invocation here"
    monkeypatch.chdir(cwd)
    for name, argv in runs.items():
        assert main(argv) == 0, f"{name}: {capsys.readouterr().err}"
        assert sorted(p.name for p in cwd.iterdir()) == [], name
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["train", "--arch", "single", "--tasks", "semseg,depth", "--iterations", "2", "--batch-size", "4",
                 *TINY]) == 0
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no --out: nothing anywhere
