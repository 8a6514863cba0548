"""Shared test setup: caches and run folders go to a temporary folder, never to the user's home; Ray
stays on 127.0.0.1.

The variables are *overwritten*, not defaulted: a user who has ``BRANCHSWEEP_CACHE`` or
``BRANCHSWEEP_RUNS`` set for real work must not find test files there (tests/test_isolation.py).
"""

from __future__ import annotations

import os
import tempfile

import pytest

_TMP = tempfile.TemporaryDirectory(prefix="branchsweep-test-")  # removed at interpreter exit
#: Prefix of the cache folder every test run uses (checked by tests/test_isolation.py).
CACHE_PREFIX = "branchsweep-test-cache"
os.environ["BRANCHSWEEP_CACHE"] = os.path.join(_TMP.name, CACHE_PREFIX)
os.environ["BRANCHSWEEP_RUNS"] = os.path.join(_TMP.name, "runs")
os.environ["BRANCHSWEEP_SCRATCH"] = os.path.join(_TMP.name, "scratch")  # trials' node-local working folders
os.environ["MPLBACKEND"] = "Agg"
# Every Ray a test starts (in this process, a driver subprocess or `ray start`) binds to 127.0.0.1 only:
# Ray 2.60 replaces _node_ip_address="127.0.0.1" by the machine's address unless this is "0" (read when
# ray is first imported, hence here).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# One intra-op thread: the tests' tensors are tiny, and with two OpenMP threads on two busy cores every
# parallel region waits for a descheduled thread (a 6 s test took 137 s beside one CPU-bound process).
# Read by torch when it is first imported, hence here.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture
def tiny_dense():
    """A small synthetic-dense data set (32×32, 32 train / 16 val scenes)."""
    from branchsweep.config import DataConfig
    from branchsweep.data import create_data

    return create_data(DataConfig(dataset="synthetic-dense", size=32, train_samples=32, val_samples=16, seed=0))
