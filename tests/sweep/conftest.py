"""A module-scoped local Ray (2 CPUs, no dashboard) with its temp files, storage and HOME under tmp paths."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.sweep import SweepBase

#: Tiny problem: 3 regression tasks of ltb-synthetic on a 4-layer MLP of 16 units; seconds per trial.
TINY_DATA = DataConfig(dataset="ltb-synthetic", train_samples=64, val_samples=16, tasks=["bent_0", "square_0", "sinc_0"])
TINY_MODEL = ModelConfig(width=0.16)
TINY_TRAIN = TrainConfig(iterations=10, batch_size=16, eval_batch_size=16, progress=False)
TINY_SEARCH = {"ltb": {"iterations": 10, "batch_size": 16},
               "bmtas": {"iterations": 10, "warmup_iterations": 4, "batch_size": 8, "checkpoint_every": 0}}


def tiny_base(**search_overrides: dict) -> SweepBase:
    search = {m: {**v, **search_overrides.get(m, {})} for m, v in TINY_SEARCH.items()}
    return SweepBase(data=TINY_DATA, model=TINY_MODEL, train=TINY_TRAIN, search_defaults=search)


def ray_env(tmp: Path) -> dict[str, str]:
    """Environment keeping Ray's files out of /tmp/ray, ~/.ray and ~/ray_results (short socket paths)."""
    return {"RAY_TMPDIR": str(tmp / "r"), "HOME": str(tmp / "home"), "RAY_AUTH_MODE": "disabled",
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}


@pytest.fixture(scope="module")
def ray_local():
    """Start Ray once per module (≈4 s) and shut it down after (≈1.3 s)."""
    ray = pytest.importorskip("ray")
    tmp = Path(tempfile.mkdtemp(prefix="bsr", dir="/tmp"))
    saved = {k: os.environ.get(k) for k in ray_env(tmp)}
    os.environ.update(ray_env(tmp))
    for sub in ("r", "home"):
        (tmp / sub).mkdir()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "OMP_NUM_THREADS": "1"}})
    yield tmp
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
