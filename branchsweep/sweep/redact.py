"""Credentials never leave the process: every URL a sweep prints, logs or stores goes through :func:`redact`.

A sweep takes URLs that may carry secrets: an RDB ``--optuna-storage`` (``postgresql://user:PASSWORD@host/db``),
an ``--mlflow`` tracking URI (``https://user:TOKEN@host``), a ``--warm-start`` source. The password of a
URL's user-info and the values of query parameters that name a secret (``password``, ``token``,
``secret``, ``key``, ``signature``, ...) are replaced by ``***`` in ``sweep.json``, ``sweep.log``, the
progress lines and error messages. What the process itself needs keeps the secret: the Optuna storage it
opens (never pickled into Tune's state, :mod:`branchsweep.sweep.searcher`) and MLflow's credentials
(moved from the URI into ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` of the driver,
:func:`split_userinfo`). Storage URIs (``--storage-path``, ``--resume``) are passed to Ray, which stores
them in its experiment state: credentials there are refused (:func:`refuse_userinfo`); S3 credentials come
from the ``AWS_*`` variables or the node's instance profile.

>>> redact("postgresql://sweeper:s3cr3t@db.internal:5432/optuna")
'postgresql://sweeper:***@db.internal:5432/optuna'
>>> redact("error: could not connect to mysql://root:hunter2@10.0.0.5/x?ssl=1&password=p&token=t")
'error: could not connect to mysql://root:***@10.0.0.5/x?ssl=1&password=***&token=***'
>>> redact("/runs/sweep/optuna/optuna.journal"), redact(None)
('/runs/sweep/optuna/optuna.journal', None)
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from branchsweep.errors import ConfigError

MASK = "***"
#: ``scheme://user:password@`` (the password is whatever lies between the first ``:`` and the last ``@``
#: of the authority).
_USERINFO = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^/?#\s]*)@")
#: ``?password=...`` and friends in a query string.
_QUERY = re.compile(r"(?i)(?P<head>[?&;](?:[a-z0-9_]*(?:password|passwd|pwd|secret|token|key|signature|sig|"
                    r"credential)[a-z0-9_]*)=)(?P<secret>[^&;#\s]+)")


def redact(text: Any) -> Any:
    """``text`` with URL passwords and secret query values masked (non-strings are returned as they are)."""
    if not isinstance(text, str):
        return text
    text = _USERINFO.sub(lambda m: f"{m.group('head')}{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m.group('head')}{MASK}", text)


def redact_tree(value: Any) -> Any:
    """:func:`redact` applied to every string of a JSON-like structure (dicts, lists, tuples)."""
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v) for v in value]
    return redact(value)


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user-info, user, password)``; ``(url, None, None)`` when it has none.

    >>> split_userinfo("https://me:tok@mlflow.example.org:5000/path")
    ('https://mlflow.example.org:5000/path', 'me', 'tok')
    """
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host)), parts.username, parts.password


def refuse_userinfo(uri: str | None, flag: str) -> None:
    """A one-line :class:`ConfigError` when a storage URI carries credentials (Ray stores it as given)."""
    if uri and redact(str(uri)) != str(uri):
        raise ConfigError(f"{flag} {redact(str(uri))}: credentials in a storage URI would be stored in Ray's "
                          "experiment state; use the AWS_* variables or an instance profile instead")
