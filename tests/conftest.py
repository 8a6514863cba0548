"""Shared test setup: caches go to a temporary folder, never to the user's home."""

from __future__ import annotations

import os
import tempfile

import pytest

_CACHE = tempfile.TemporaryDirectory(prefix="branchsweep-test-cache-")  # removed at interpreter exit
os.environ.setdefault("BRANCHSWEEP_CACHE", _CACHE.name)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tiny_dense():
    """A small synthetic-dense data set (32×32, 32 train / 16 val scenes)."""
    from branchsweep.config import DataConfig
    from branchsweep.data import create_data

    return create_data(DataConfig(dataset="synthetic-dense", size=32, train_samples=32, val_samples=16, seed=0))
