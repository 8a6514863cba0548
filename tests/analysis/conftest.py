"""Fixtures of the analysis tests: each BMTAS paper table in turn."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_fixtures import TABLES


@pytest.fixture(params=sorted(TABLES))
def paper_table(request) -> tuple[str, Path]:
    return request.param, TABLES[request.param]
