"""Every docstring example in ``branchsweep`` and ``analysis`` runs and holds: the worked examples are
documentation, and documentation that is never run drifts. One test per module that has examples; a
new module with examples is picked up without an edit here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

PACKAGES = ("branchsweep", "analysis")


def _modules_with_examples() -> list[tuple[str, int]]:
    found = []
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        names = [package] + [info.name for info in pkgutil.walk_packages(pkg.__path__, f"{package}.")
                             if not info.name.endswith(".__main__")]  # __main__ runs the CLI on import
        for name in names:
            tests = doctest.DocTestFinder().find(importlib.import_module(name))
            count = sum(len(t.examples) for t in tests)
            if count:
                found.append((name, count))
    return found


MODULES = _modules_with_examples()


def test_the_packages_document_with_examples():
    names = {name for name, _ in MODULES}
    assert {"branchsweep.tasks.metrics", "branchsweep.search.resource", "analysis.pareto"} <= names
    assert sum(count for _, count in MODULES) >= 60


@pytest.mark.parametrize(("name", "count"), MODULES, ids=[name for name, _ in MODULES])
def test_docstring_examples(name, count):
    torch.manual_seed(0)  # examples that draw random numbers give the same output on every run
    result = doctest.testmod(importlib.import_module(name), report=True, verbose=False)
    assert result.attempted == count and result.failed == 0
