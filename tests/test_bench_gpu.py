"""benchmarks/bench_gpu.py runs end to end on a CPU in its tiny mode (the numbers mean nothing there)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_gpu_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--device", "cpu", "--backbones",
         "mobilenet_v2", "--modes", "soft,soft-per-task,hard", "--amp", "off,bf16", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out.read_text()
    for kind in ("soft", "soft-per-task", "hard", "retrain"):
        assert f"| mobilenet_v2 | {kind} | off |" in table and f"| mobilenet_v2 | {kind} | bf16 |" in table
    assert "Paper schedule" in table and "3.5 days, V100" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.md"]  # nothing else written


def test_bench_gpu_rejects_an_unknown_mode(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--modes", "warp"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == "bench_gpu: unknown mode or backbone 'warp'"
