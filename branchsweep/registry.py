"""A small generic name -> factory registry (tasks, backbones, data sets, schedules, search methods).

Modelled on timm's ``register_model``/``create_model``: a decorator registers a factory under a name,
``create(name, **kwargs)`` builds it, and an unknown name fails with a message that lists what is
known. Registries make the test matrix: tests parametrise over ``registry.names()``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from branchsweep.errors import BranchsweepError

T = TypeVar("T")


class UnknownNameError(BranchsweepError, KeyError):
    """Raised for a name that is not registered (a user error: names come from flags and configs)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to factories of ``T``.

    >>> shapes = Registry[type]("shape")
    >>> @shapes.register("square")
    ... class Square: ...
    >>> shapes.get("square").__name__
    'Square'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, help: str = "") -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; used bare as a decorator when ``obj`` is omitted."""

        def add(o: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = o
            doc = help or (getattr(o, "__doc__", None) or "").strip().splitlines()[:1]
            self._help[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return o

        return add(obj) if obj is not None else add

    def unregister(self, name: str) -> T:
        """Remove ``name`` (tests that register a throw-away entry clean up with this)."""
        self._help.pop(name, None)
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; known: {known}") from None

    def create(self, key: str, /, *args, **kwargs):
        """Look up ``key`` and call its factory (``key`` is positional so factories may take ``name``)."""
        return self.get(key)(*args, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def import_plugins(specs: Iterable[str]) -> None:
    """Import modules that register things (a search method, a task, a data set) before they are used.

    Each spec is a module name (``my_lab.methods``) or the path of a ``.py`` file; a file is imported
    once per process under a name derived from its path. Every process that looks a name up needs the
    plugin: the CLI reads ``BRANCHSWEEP_PLUGINS`` (comma-separated), a sweep passes its ``plugins`` to
    every trial. A plugin that cannot be imported is a one-line error.
    """
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        try:
            if spec.endswith(".py"):
                path = Path(spec).resolve()
                name = "branchsweep_plugin_" + "".join(c if c.isalnum() else "_" for c in str(path))
                if name in sys.modules:
                    continue
                module_spec = importlib.util.spec_from_file_location(name, path)
                if module_spec is None or module_spec.loader is None or not path.is_file():
                    raise ImportError(f"no such file {path}")
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                try:
                    module_spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(spec)
        except ImportError as err:
            raise BranchsweepError(f"cannot import plugin {spec!r}: {err}") from None
