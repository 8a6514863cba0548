"""CLI commands, one module each.

A command module defines ``NAME`` (the sub-command), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. :mod:`branchsweep.cli` discovers them; adding a command is adding a file.
"""
