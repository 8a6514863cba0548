"""Files a resume trusts: written atomically, read back with one clear error.

A run killed mid-write (a pre-empted node, a killed sweep driver, Ctrl-C) must never leave a
half-written checkpoint, ``result.json`` or ``branch_config.json`` behind, because a resumed run
would trust it. Every such file is written to a uniquely named temporary file in the same folder and
moved over the target with :func:`os.replace` (atomic on POSIX file systems): a reader sees the old
file or the new one, never a mix, and two writers never share a temporary file.

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as folder:
...     path = write_json(pathlib.Path(folder) / "result.json", {"madds": 12})
...     print(read_json(path), sorted(p.name for p in pathlib.Path(folder).iterdir()))  # no temporary file left
{'madds': 12} ['result.json']
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from branchsweep.errors import ConfigError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then ``os.replace(tmp, path)``.

    The parent folder is created when missing; on any error the temporary file is removed and the
    previous ``path`` (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Atomically write ``obj`` as JSON (values JSON does not know are written with ``str``)."""
    return write_text(path, json.dumps(obj, indent=indent, default=str))


def read_json(path: str | Path, what: str = "file") -> Any:
    """Read a JSON file; a missing or malformed one is a :class:`ConfigError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from None


def save_state(path: str | Path, state: Any) -> Path:
    """Atomically ``torch.save`` ``state`` (a checkpoint: tensors, state dicts, plain Python values)."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a missing or unreadable file is a one-line ConfigError."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except Exception as err:  # a truncated or foreign file: unpickling errors of many kinds
        raise ConfigError(f"cannot read {what} {path}: {err}") from None


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing): concurrent processes that would
    compute the same file (a retrain, a warm-up) take turns, and the second one finds the first's result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
