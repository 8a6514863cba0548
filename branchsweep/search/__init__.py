"""Architecture search methods by name (``bmtas``, ``ltb``; the baselines ``vanilla``, ``permuted``, ``random``;
the affinity-based comparators ``fafs``, ``bmn``).

A method is a :class:`SearchMethod` registered in ``SEARCH_METHODS``. The core never imports a search
method; the ``search`` command and the sweeps look them up here. Every submodule not starting with ``_``
is imported below (:func:`branchsweep._discover.import_submodules`), which registers its methods: a new
method is one new file in this folder. Every method exports the same
:class:`~branchsweep.arch.BranchConfig`, so retraining, pricing and analysis are shared.
"""

from __future__ import annotations

from branchsweep._discover import import_submodules
from branchsweep.search.base import SEARCH_METHODS, SearchContext, SearchMethod, SearchResult

import_submodules(__name__)

__all__ = ["SEARCH_METHODS", "SearchContext", "SearchMethod", "SearchResult"]
