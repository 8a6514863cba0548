"""The suite keeps to its own folders: a user's cache and run settings never receive test files."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()


def test_cache_and_runs_point_into_a_test_temp_folder():
    from branchsweep.madds import default_cache_dir

    cache = default_cache_dir()
    assert cache.name == "branchsweep-test-cache"  # set by tests/conftest.py
    assert Path(tempfile.gettempdir()).resolve() in cache.resolve().parents
    runs = Path(os.environ["BRANCHSWEEP_RUNS"])
    assert runs.parent == cache.parent


def test_madds_cache_is_written_under_the_test_folder():
    from branchsweep.backbones import create_backbone
    from branchsweep.madds import default_cache_dir, madds_table
    from branchsweep.tasks import create_task

    spec = create_backbone("mlp", input_dim=6, hidden=4)
    madds_table(spec, [create_task("regression", name="probe", out_channels=2)])
    assert list((default_cache_dir() / "madds").glob("mlp-*.json"))


def test_a_users_cache_setting_does_not_leak_into_tests(tmp_path):
    """Run the two tests above in a fresh pytest whose environment names a user's real folders."""
    user_cache, user_runs = tmp_path / "user-cache", tmp_path / "user-runs"
    env = {**os.environ, "BRANCHSWEEP_CACHE": str(user_cache), "BRANCHSWEEP_RUNS": str(user_runs)}
    ids = [f"{HERE}::{name}" for name in ("test_cache_and_runs_point_into_a_test_temp_folder",
                                           "test_madds_cache_is_written_under_the_test_folder")]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ids],
                          cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
    assert not user_cache.exists() and not user_runs.exists()
