"""The worked examples in the analysis docstrings are part of the documentation: they must hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["analysis.delta_m", "analysis.directions", "analysis.pareto", "analysis.plots", "analysis.report",
           "analysis.tables", "analysis.trees"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
