"""``analysis`` is a leaf package: it imports neither torch nor Ray nor anything of ``branchsweep``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import analysis

PACKAGE = Path(analysis.__file__).parent


def test_importing_analysis_pulls_in_no_torch_ray_or_branchsweep(tmp_path):
    code = (
        "import sys, analysis; "
        f"assert analysis.__file__ == {analysis.__file__!r}, analysis.__file__; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'branchsweep')]; "
        "assert not loaded, loaded"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env)


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an ``import``/``from ... import`` names, anywhere (also inside functions), and every
    string literal given to ``importlib.import_module`` or ``__import__``."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in ("import_module", "__import__"):
                names.append(str(node.args[0].value))
    return names


def test_the_import_finder_sees_lazy_and_dynamic_imports():
    source = "def f():\n    from branchsweep.tasks import TASKS\n    importlib.import_module('branchsweep.arch')\n"
    assert _imported_modules(ast.parse(source)) == ["branchsweep.tasks", "branchsweep.arch"]


def test_no_module_of_analysis_imports_branchsweep():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 8
    offenders = {
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in files
        for name in _imported_modules(ast.parse(path.read_text(), str(path)))
        if name.split(".")[0] in ("branchsweep", "torch", "ray")
    }
    assert not offenders
