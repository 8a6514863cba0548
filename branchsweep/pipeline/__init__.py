"""One sweep trial: data → tasks → backbone → search (or a baseline) → export → price → retrain → evaluate → Δm.

This is the unit of work a Ray Tune trial (or a plain function call) runs; it knows nothing about Ray.
The economy the sweeps rely on lives here:

* MAdds of the exported architecture are computed *before* retraining (the cheap objective, logged
  first), from the cached per-layer MAdds table;
* a retrain is never repeated: its outcome is stored in a :class:`RetrainCache` keyed by the
  architecture hash plus everything else the retrained weights depend on (data, backbone, tasks,
  retrain settings and retrain seed). A trial whose architecture is already there reuses the metrics
  and says so (``retrain_cached`` in the result, a line in ``trial.log``).
* seeds are replicates: every exported architecture is retrained with ``replicates`` seeds (one cache
  entry each); the result row carries each metric's mean and standard error (``<metric>/se``), Δm
  mean ± s.e. and the per-seed values (``replicates_json``); Concurrent trials that export the
  same architecture wait for one another on a file lock instead of training twice;
* Δm is measured against the Single baseline's mean over its replicates, which are themselves just the
  cache entries of the ``single`` architecture under the same settings (so baselines are trained once per sweep, or reused);
* a search method's per-sweep shared state (e.g. the BMTAS warm-up, independent of λ and the schedule)
  lives in a folder the sweep reserves for that method (:meth:`SearchMethod.sweep_settings`), so it
  is computed once per sweep.

Modules: :mod:`.config` (what a trial is), :mod:`.caches` (what trials share, and its locks),
:mod:`.trial` (running one).

A trial is resumable: its work folder keeps the search checkpoints, the exported architecture and the
retrain checkpoint, and ``run_trial(..., resume=True)`` continues from whatever is there.
"""

from __future__ import annotations

from branchsweep.pipeline.caches import CACHE_VERSION, RetrainCache, SweepCaches, retrain_key
from branchsweep.pipeline.config import BASELINES, TrialConfig
from branchsweep.pipeline.trial import (
    ARCH_FILE,
    RESULT_FILE,
    SEARCH_INFO_FILE,
    TRIAL_LOG,
    TrialLog,
    baseline_entries,
    compute_delta_m,
    mean_and_se,
    mean_metrics,
    primary_directions,
    run_trial,
)

__all__ = [
    "ARCH_FILE", "BASELINES", "CACHE_VERSION", "RESULT_FILE", "SEARCH_INFO_FILE", "TRIAL_LOG", "RetrainCache",
    "SweepCaches", "TrialConfig", "TrialLog", "baseline_entries", "compute_delta_m", "mean_and_se", "mean_metrics", "primary_directions",
    "retrain_key", "run_trial",
]
