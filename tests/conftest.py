"""Shared test setup: caches and run folders go to a temporary folder, never to the user's home.

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
os.environ["MPLBACKEND"] = "Agg"


@pytest.fixture
def tiny_dense():
    """A small synthetic-dense data set (32×32, 32 train / 16 val scenes)."""
    from branchsweep.config import DataConfig
    from branchsweep.data import create_data

    return create_data(DataConfig(dataset="synthetic-dense", size=32, train_samples=32, val_samples=16, seed=0))
