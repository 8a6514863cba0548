"""The resource-loss benchmarks run and reject bad input in one line (no reference code needed)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_rho_benchmark_writes_table_and_plot(tmp_path, capsys):
    rho = load("bmtas_rho")
    out_csv, out_png = tmp_path / "rho.csv", tmp_path / "rho.png"
    assert rho.main(["--tables", "table1", "--samples", "3", "--csv", str(out_csv), "--plot", str(out_png)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [float(r["s"]) for r in rows] == [float(s) for s in range(11)]
    assert rows[0]["rho_median"] == ""  # s = 0: both gradients vanish
    sharp = [float(r["rho_median"]) for r in rows[1:]]
    assert all(v > 0 for v in sharp) and max(sharp) > 1.2 * min(sharp)  # ρ moves with the sharpness
    assert out_png.stat().st_size > 10_000
    assert "| table1 | 10 |" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--tables", "table9"], ["--samples", "1"]])
def test_rho_benchmark_bad_input_is_one_line(argv, capsys, tmp_path):
    rho = load("bmtas_rho")
    assert rho.main([*argv, "--csv", str(tmp_path / "r.csv"), "--plot", str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [[], ["--reference", "/nonexistent/bmtas"], ["--tables", "vgg"]])
def test_reference_benchmark_needs_the_authors_code(argv, capsys, tmp_path):
    bench = load("bmtas_resource_reference")
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
