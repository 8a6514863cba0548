"""The one exception type of :mod:`analysis` for mistakes in its input.

A table without a needed column, a metric without a direction, a malformed architecture: each is an
:class:`AnalysisError` whose message names the problem in one line. It is a ``ValueError``, so a
notebook can catch it as one; ``branchsweep report`` turns it into its own one-line error (exit code 2).
Anything else raised from :mod:`analysis` is a bug.
"""

from __future__ import annotations


class AnalysisError(ValueError):
    """A user-facing mistake in what was given to :mod:`analysis`; the message is one line."""
