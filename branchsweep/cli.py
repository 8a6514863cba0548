"""``branchsweep``: one entry point for search, train, evaluate, madds, report and check-data.

User mistakes raise :class:`~branchsweep.errors.BranchsweepError`; they are printed as one line
(``branchsweep: error: ...``) with exit code 2 and no traceback. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from branchsweep.errors import BranchsweepError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags in the same one-line form as every other user error."""

    def error(self, message: str):  # type: ignore[override]
        raise BranchsweepError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    import branchsweep.commands as commands

    parser = _Parser(prog="branchsweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                           add_help=getattr(module, "ADD_HELP", True))
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from branchsweep.registry import import_plugins

        # Plugins register search methods, tasks or data sets; the parser is built from the registries.
        import_plugins(os.environ.get("BRANCHSWEEP_PLUGINS", "").split(","))
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args._run(args) or 0)
    except BranchsweepError as err:
        print(f"branchsweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("branchsweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
