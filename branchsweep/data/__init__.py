"""Data sets by name (see :mod:`branchsweep.data.base` for the interface and label conventions)."""

from __future__ import annotations

from branchsweep._discover import import_submodules
from branchsweep.data.base import DATASETS, MultiTaskData, check_options, create_data

import_submodules(__name__)

__all__ = ["DATASETS", "MultiTaskData", "check_options", "create_data"]
