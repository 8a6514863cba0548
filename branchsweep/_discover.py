"""Import every submodule of a package so that its registrations run.

Data sets, search methods and CLI commands register themselves on import; discovering them means a
new one is one new file, with no central list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    names = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
            names.append(info.name)
    return names
