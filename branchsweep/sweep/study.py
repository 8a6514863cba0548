"""The sweep's Optuna study: sampler, persistent storage, warm start.

* Sampler: ``TPESampler(multivariate=True, group=True, constant_liar=True, seed=...)``. The space is
  conditional (the method first, then only that method's parameters): ``multivariate`` models the
  parameters jointly instead of one independent 1-D density each, and ``group`` splits the history by
  the parameter sets that occurred together, which is what makes multivariate TPE work on a
  define-by-run space whose branches never co-occur. Trials run concurrently (4 GPUs at paper scale);
  ``constant_liar`` gives running trials a pessimistic value so that parallel suggestions do not pile
  onto the same region. ``seed`` makes the suggestion sequence reproducible.
* Storage: a ``JournalStorage`` file ``optuna/optuna.journal`` in the sweep's prefix, appended to as the
  sweep runs (for a cloud prefix: the driver's copy, uploaded after every ask and tell and downloaded
  before a resumed driver restores its searcher; :mod:`branchsweep.sweep.searcher`), or ``--optuna-storage`` (a journal file path or an RDB URL such as
  ``sqlite:///studies.db``). Every sweep gets its own study, named ``<key>-<run id>``; ``<key>`` hashes
  what makes results comparable: data set, backbone, tasks, retrain settings and the search methods' fixed
  settings. ``optuna-dashboard FILE`` shows it live.
* Warm start (``--warm-start [SOURCE]``): the finished trials of every study with the same key in SOURCE
  (an earlier sweep's folder or prefix, a journal file or an RDB URL; default: this sweep's own
  storage) are added to the new study before the first suggestion, so TPE starts from them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from branchsweep.config import to_dict
from branchsweep.errors import ConfigError
from branchsweep.sweep import storage

log = logging.getLogger(__name__)

JOURNAL = "optuna.journal"


def make_sampler(seed: int):
    """The sweep's TPE sampler (reasons in the module docstring)."""
    import warnings

    import optuna

    with warnings.catch_warnings():  # `group` is marked experimental in Optuna 5 (stable since Optuna 2.8)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True, seed=seed)


def study_key(base: Any, methods: tuple[str, ...]) -> str:
    """Hash of what makes two sweeps' trials comparable: data, backbone, tasks, retrain and search settings,
    and the replicates (the objective is the mean over that many retrain seeds)."""
    train = {k: v for k, v in to_dict(base.train).items() if k not in ("progress", "device", "checkpoint_every")}
    data = {k: v for k, v in to_dict(base.data).items() if k not in ("root", "num_workers")}
    key = {"data": data, "model": to_dict(base.model), "train": train, "methods": sorted(methods),
           "search": base.search_defaults, "replicates": getattr(base, "replicates", 1),
           "search_seed": getattr(base, "search_seed", 0)}
    if getattr(base, "cost", "madds") != "madds":  # other objectives: another study (MAdds-only keys unchanged)
        key["cost"] = {"cost": base.cost, "latency": dict(base.latency)}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def open_storage(url: str | None, folder: Path):
    """An Optuna storage: ``url`` (journal file path, or an RDB URL) or ``folder/optuna.journal``."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    target = url or str(Path(folder) / JOURNAL)
    if "://" in target and not target.startswith("file://"):
        try:
            return optuna.storages.get_storage(target)
        except Exception as err:  # a bad URL, a missing driver (sqlalchemy, psycopg)
            from branchsweep.sweep.redact import redact

            lines = str(err).splitlines() or [type(err).__name__]
            raise ConfigError(redact(f"--optuna-storage {target}: {lines[0]}")) from None
    path = Path(target.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _source_storage(source: str, tmp: Path):
    """The Optuna storage of an earlier sweep's folder/prefix, a journal file or an RDB URL."""
    if "://" in source and not storage.is_uri(source):
        return open_storage(source, tmp)  # sqlite://, postgresql://, ...
    if storage.is_uri(source):  # a sweep prefix in cloud storage: fetch its journal
        uri = source if source.endswith(JOURNAL) else storage.join(source, "optuna", JOURNAL)
        local = tmp / JOURNAL
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(storage.read_bytes(uri))
        return open_storage(str(local), tmp)
    path = Path(source)
    path = path / "optuna" / JOURNAL if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"--warm-start: no Optuna study at {source} (no {JOURNAL})")
    return open_storage(str(path), tmp)


def warm_start(study: Any, source_storage: Any, key: str) -> int:
    """Add the finished trials of every study named ``<key>-*`` in ``source_storage`` (other than ``study``)
    to ``study``; returns how many."""
    import optuna

    added = 0
    for summary in optuna.get_all_study_summaries(source_storage, include_best_trial=False):
        if not summary.study_name.startswith(f"{key}-") or summary.study_name == study.study_name:
            continue
        earlier = optuna.load_study(study_name=summary.study_name, storage=source_storage)
        trials = [t for t in earlier.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                  if t.values is not None and len(t.values) == len(study.directions)]
        study.add_trials(trials)
        added += len(trials)
    return added


def open_study(cfg: Any, journal_dir: Path, say) -> tuple[Any, str]:
    """The sweep's Optuna storage (``cfg.optuna_storage``, else ``journal_dir/optuna.journal``) and study name
    (``<key>-<prefix name>``), warm-started on request (``cfg.warm_start``, a new sweep only); ``say`` logs
    where it is (redacted). ``cfg``: a :class:`~branchsweep.sweep.settings.SweepConfig`."""
    import optuna

    from branchsweep.sweep.redact import redact

    key = study_key(cfg.base, cfg.space.methods)
    storage = open_storage(cfg.optuna_storage, journal_dir)
    name = f"{key}-{cfg.prefix.rstrip('/').split('/')[-1]}"
    if cfg.warm_start is not None and not cfg.resume:
        source = _source_storage(cfg.warm_start, Path(cfg.out) / "optuna-warm") if cfg.warm_start else storage
        target = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                     directions=["minimize" if m == "min" else "maximize"
                                                 for m in cfg.base.objectives.values()])
        count = warm_start(target, source, key)
        say(f"warm start: {count} finished trial(s) of earlier sweeps with study key {key} added to study {name}")
    where = redact(cfg.optuna_storage or str(Path(journal_dir) / JOURNAL))
    say(f"Optuna study {name} in {where} (optuna-dashboard {where})")
    return storage, name


def make_searcher(space: Any, objectives: dict[str, str], points: list[dict[str, Any]] | None, seed: int):
    """The search stage's Tune search algorithm: :class:`~branchsweep.sweep.searcher.SweepSearch` (Ray's
    ``OptunaSearch`` over ``space.define_by_run`` with the sweep's sampler, attached to the study bound by
    :func:`branchsweep.sweep.searcher.bind`) in a :class:`~branchsweep.sweep.searcher.SweepSearchGenerator`."""
    from branchsweep.sweep.searcher import SweepSearch, SweepSearchGenerator

    return SweepSearchGenerator(SweepSearch(space.define_by_run, list(objectives), list(objectives.values()), points,
                                            make_sampler(seed)))
