"""The performance benchmarks run (GPU benchmark in its tiny CPU mode) and reject bad input in one line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_gpu():
    return load("bench_gpu")


@pytest.fixture(scope="module")
def bench_ref():
    return load("bench_vs_reference")


def test_gpu_benchmark_tiny_on_cpu(bench_gpu, tmp_path, capsys):
    out = tmp_path / "gpu.md"
    assert bench_gpu.main(["--tiny", "--device", "cpu", "--backbones", "mobilenet_v2", "--amp", "off",
                           "--out", str(out)]) == 0
    text = out.read_text()
    for row in ("| mobilenet_v2 | warm-up | routed | off |", "| mobilenet_v2 | search soft | routed | off |",
                "| mobilenet_v2 | search hard | naive | off |", "| mobilenet_v2 | retrain single | — | off |"):
        assert row in text
    assert "Projected wall time" in text and "3.5 days on one V100" in text
    assert "| mobilenet_v2 | search soft | routed | off |" in capsys.readouterr().out


def test_gpu_benchmark_budget_skips_the_rest(bench_gpu, tmp_path):
    out = tmp_path / "gpu.md"
    assert bench_gpu.main(["--tiny", "--device", "cpu", "--backbones", "resnet50", "--phases", "hard",
                           "--routing", "routed", "--budget", "0", "--out", str(out)]) == 0
    assert "skipped (budget)" in out.read_text()


@pytest.mark.parametrize("argv", [["--amp", "fp16", "--device", "cpu"], ["--backbones", "vgg"], ["--phases", ""],
                                  ["--cycles", "0"], ["--device", "tpu"], ["--unknown"]])
def test_gpu_benchmark_bad_input_is_one_line(bench_gpu, argv, capsys):
    assert bench_gpu.main(["--tiny", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_reference_benchmark_needs_the_authors_code(bench_ref, tmp_path, capsys):
    assert bench_ref.main([]) == 2
    assert bench_ref.main(["--reference", str(tmp_path / "missing")]) == 2
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "models.py").write_text("class Something: pass\n")
    assert bench_ref.main(["--reference", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("error: --reference") for line in lines)
    assert "not a checkout of github.com/brdav/bmtas" in lines[2]


def test_reference_benchmark_rejects_bad_lists(bench_ref, tmp_path, capsys):
    for rel, marker in bench_ref.REFERENCE_FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(marker + "\n")
    assert bench_ref.main(["--reference", str(tmp_path), "--configs", "soft,fast"]) == 2
    assert bench_ref.main(["--reference", str(tmp_path), "--sizes", "16"]) == 2
    assert bench_ref.main(["--reference", str(tmp_path), "--sizes", "a,b"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 3


def test_reference_table(bench_ref):
    times = {"reference": {"weight": 2000.0, "arch": 2400.0}, "soft": {"weight": 900.0, "arch": 800.0}}
    memory = {"reference": {"step_mib": 300.0, "weight_mib": 250.0, "arch_mib": 300.0},
              "soft": {"step_mib": 270.0, "weight_mib": 270.0, "arch_mib": 200.0}}
    table = bench_ref.render_table(64, ["reference", "soft"], times, memory, 4, 4)
    assert "| search iteration (weight step + 1/4 α step) | 2600 ms | 1100 ms (2.36× faster) |" in table
    assert "| step memory above the built model (peak RSS) | 300 MiB | 270 MiB (0.90×) |" in table
    assert "| … of the α step | 300 MiB | 200 MiB (0.67×) |" in table


def test_gpu_benchmark_as_a_script_writes_only_its_table(tmp_path):
    """Run as a command from an empty folder: exit 0, and nothing there but the --out file."""
    out = tmp_path / "gpu.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--device", "cpu", "--backbones",
         "mobilenet_v2", "--phases", "soft,soft-joint", "--routing", "routed", "--amp", "bf16", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "| mobilenet_v2 | search soft | routed | bf16 |" in text
    assert "| mobilenet_v2 | search soft-joint | routed | bf16 |" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.md"]


def test_embedded_evidence_helpers_and_bad_input(capsys):
    ev = load("embedded_evidence")
    assert ev.main(["--seeds", "1"]) == 2 and "--seeds must be >= 2" in capsys.readouterr().err
    tasks = ["semseg", "sal", "depth", "normals"]
    related = ev.related_tree(tasks, 7, 3)
    assert ev.related_partition(tasks) == [["depth", "normals"], ["sal", "semseg"]]
    assert ev.deepest_grouping(related) == [["depth", "normals"], ["sal", "semseg"]]
    from branchsweep.arch import BranchConfig

    assert ev.deepest_grouping(BranchConfig.single(tasks, 7)) is None
    assert ev.deepest_grouping(BranchConfig.shared(tasks, 7)) == [sorted(tasks)]
    assert ev.load_preset().RELATED_BRANCH_AT == 3


@pytest.mark.parametrize("config,sgd_steps", [("soft", 5), ("soft-joint", 1)])
def test_reference_benchmark_branchsweep_side_runs_the_searchs_steps(bench_ref, config, sgd_steps, tmp_path,
                                                                     monkeypatch):
    # the side that needs no checkout: "soft" is the search's default, one SGD step per task (5 tasks)
    import torch

    torch.set_num_threads(1)
    steps = {"sgd": 0, "adam": 0}
    for name, cls in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)):
        real = cls.step
        monkeypatch.setattr(cls, "step", lambda self, *a, _real=real, _n=name, **k: (
            steps.__setitem__(_n, steps[_n] + 1), _real(self, *a, **k))[1])
    harness = bench_ref.branchsweep_harness(config, 32, 2, str(tmp_path))
    harness.weight_step()
    assert steps == {"sgd": sgd_steps, "adam": 0}
    harness.arch_step()
    assert steps == {"sgd": sgd_steps, "adam": 1}  # one α update for all tasks


def test_cpu_profile_benchmark_kernels_and_bad_input(capsys):
    prof = load("supergraph_cpu_profile")
    assert prof.main(["--what", "kernels", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("| [") == len(prof.DEPTHWISE) and "depthwise_weight_grad" in out
    for argv in (["--what", "flops"], ["--what", ""], ["--reps", "0"], ["--size", "8"]):
        assert prof.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
