"""BMTAS (Bruggemann et al., BMVC 2020): differentiable branching search with a resource-aware loss.

1. **Warm-up**: candidate ``t`` of every layer is trained on task ``t`` only (:func:`warm_up`); the
   result can be cached on disk keyed by what it depends on, so a λ sweep warms up once.
2. **Search** (supplement A and the reference ``train_search``): cycles of an ``α`` *phase* — one
   pass over a seeded 20% split of the training set (Adam, batch statistics for BatchNorm; the Adam
   state restarts with every phase, as in the reference code) — and a θ *phase* — one pass over the
   other 80% (SGD with momentum, poly lr over the weight batches), updating the weights sequentially
   for each task (one optimiser step per task and batch, :class:`branchsweep.loop.TrainStep`, shared
   with retraining). After every ``α`` phase (every architecture change) the BatchNorm running
   statistics and the SGD momentum are reset once, so momentum builds up within a θ phase.
   ``weight_steps_per_arch=K`` selects the interleaved scheme instead: one ``α`` step per ``K`` joint
   weight steps, momentum reset after every ``α`` step. Routing samples Gumbel-softmax weights at
   temperature ``τ(step)`` from a named schedule (linear 5.0 → 0.1 by default).
3. **Loss** of an ``α`` step: ``Σ_t w_t L_t + λ · E[C] / scale`` where ``E[C]`` is the exact expected
   MAdds of the layers (:func:`~branchsweep.search.resource.expected_madds`) and ``scale`` is 1e9
   (``absolute``: λ per GMAdd) or the MAdds of the Single model's layers (``normalized``). The term is
   added once per ``α`` step. ``--resource-estimator paper`` reproduces the published loss instead, so
   that the paper's λ applies unmapped: ``E[C]`` is the paper's upper bound (Eq. 6,
   :func:`~branchsweep.search.resource.paper_groups`) priced in GFLOPs (2 × GMAdds) and added once per
   task, ``λ · T · 2 · UB / 1e9`` (``scale`` = 1e9 / 2T).
4. **Export**: ``argmax_j α[l, t, j]`` → ``branch_config.json``, plus ``search_log.jsonl`` beside it.

The paper updates the supergraph "sequentially for each task". For ``α`` this changes nothing
(``α[:, t]`` only influences task ``t``'s route, and Adam steps once per batch in the reference code
too), so the ``α`` gradient of one joint forward pass is used; ``per_task`` computes the same
gradient one task at a time (less memory). For the weights, sequential updates are T optimiser steps
per batch (``task_updates``): shared weights move after each task, and momentum mixes the tasks' steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, random_split
from tqdm.auto import tqdm

from branchsweep import paper
from branchsweep.arch import BranchConfig
from branchsweep.atomic import file_lock, load_state, save_state, write_text
from branchsweep.backbones import BackboneSpec
from branchsweep.config import to_dict
from branchsweep.data.base import MultiTaskData
from branchsweep.errors import ConfigError
from branchsweep.loop import (
    Checkpoint,
    ResumableLoop,
    Runtime,
    TrainStep,
    poly_schedule,
    to_floats,
    weighted_loss,
)
from branchsweep.madds import madds_table
from branchsweep.search.base import SEARCH_METHODS, SearchContext, SearchMethod, SearchResult, setting
from branchsweep.search.resource import EXACT_MAX_TASKS, PAPER_MAX_TASKS, expected_madds
from branchsweep.search.schedules import SCHEDULES, make_schedule
from branchsweep.search.supergraph import Supergraph, reset_batchnorm_stats

CHECKPOINT_NAME = "bmtas_checkpoint.pt"
LOG_NAME = "search_log.jsonl"
RESOURCE_MODES = ("absolute", "normalized")
ESTIMATORS = ("auto", "exact", "mc", "paper")
TASK_UPDATES = ("auto", "sequential", "joint")
WARMUP_SCHEDULES = ("auto", "constant", "poly")
WARMUP_FORMAT = 2  # bump when the supergraph's parameter layout changes (invalidates cached warm-ups)
#: Settings that say how a search runs, not what it computes: a resumed search may change them.
RUN_SETTINGS = ("per_task", "checkpoint_every", "log_alpha_every", "warmup_cache")


@dataclass
class BMTASConfig:
    """BMTAS settings; defaults are the paper's (supplement A) except where noted.

    ``lam``: resource weight λ (per GMAdd in ``absolute`` mode, per Single-model-layer MAdds in
    ``normalized`` mode; see docs/bmtas.md for the paper's grid). ``weight_steps_per_arch``: None for
    the paper's alternating phases (:func:`phase_lengths`), an integer K for the interleaved scheme.
    ``warmup_cache``: a folder holding warmed-up supergraphs keyed by data, backbone, tasks, seed and
    warm-up settings.
    """

    @property
    def phases(self) -> bool:
        """Whether the search alternates the paper's α and θ phases (not the interleaved scheme)."""
        return self.weight_steps_per_arch is None

    @property
    def sequential(self) -> bool:
        """Whether weights are updated one task after the other (one optimiser step per task)."""
        return self.task_updates == "sequential" or (self.task_updates == "auto" and self.phases)

    @property
    def warmup_poly(self) -> bool:
        """Whether the warm-up's lr decays (poly over the warm-up) instead of staying at ``lr``."""
        return self.warmup_schedule == "poly" or (self.warmup_schedule == "auto" and not self.phases)

    @property
    def resets_arch_optimizer(self) -> bool:
        return self.phases if self.reset_arch_optimizer is None else self.reset_arch_optimizer

    lam: float = setting(0.05, "resource weight λ (per GMAdd, or per Single-model MAdds with --resource-mode "
                               "normalized; default: on pascal-context/nyud the paper's BMTAS-2 λ, mapped to "
                               "the exact loss or as published with --resource-estimator paper, docs/fidelity.md; "
                               "0.05 otherwise)", flag="--lambda")
    resource_mode: str = setting("absolute", "absolute: λ · expected GMAdds; normalized: λ · expected MAdds / "
                                             "Single's", choices=RESOURCE_MODES)
    resource_estimator: str = setting("auto", f"expected-MAdds computation (auto: exact up to {EXACT_MAX_TASKS} "
                                              "tasks, then Monte Carlo; paper: the published upper bound in "
                                              "GFLOPs added once per task, for the paper's λ unmapped, "
                                              f"absolute mode, up to {PAPER_MAX_TASKS} tasks)", choices=ESTIMATORS)
    mc_samples: int = setting(64, "Monte-Carlo samples of the resource loss")
    hard: bool = setting(False, "straight-through hard Gumbel samples (run only the selected candidates)")
    per_task: bool = setting(False, "weight and α steps forward/backward one task after the other (same "
                                    "gradients, one task's activations in memory)")
    schedule: str = setting("linear", "temperature schedule")
    tau0: float = setting(5.0, "initial temperature")
    tau1: float = setting(0.1, "final temperature")
    search_resolution: float | None = setting(
        None, "resolution factor of the search images (unset: the data set's paper value when it is loaded at "
              "full resolution, PASCAL-Context 0.5, NYUD-v2 2/3; 1: no resizing); the MAdds of the resource "
              "loss are priced at full resolution either way")
    iterations: int = setting(40000, "search iterations (weight batches; nyud: 20000)")
    warmup_iterations: int = setting(2000, "warm-up iterations (candidate t trained on task t; nyud: 1000)")
    batch_size: int = setting(16, "batch size of the search (resnet50 on pascal-context/nyud: 8)")
    lr: float = setting(0.005, "learning rate of the supergraph weights (SGD, poly)")
    momentum: float = setting(0.9, "SGD momentum of the weights")
    weight_decay: float = setting(1e-4, "weight decay of the weights")
    poly_power: float = setting(0.9, "power of the poly lr schedule")
    arch_lr: float = setting(0.01, "learning rate of α (Adam)")
    arch_weight_decay: float = setting(5e-5, "weight decay of α")
    arch_fraction: float = setting(0.2, "share of the training set used for α steps")
    weight_steps_per_arch: int | None = setting(
        None, "unset: the paper's phases (an α phase of one pass over the α split, then a θ phase of one pass "
              "over the weight split, θ momentum reset once per phase change); K: the interleaved scheme, one α "
              "step per K weight steps with θ momentum reset after every α step")
    task_updates: str = setting("auto", "weight updates: sequential (one SGD step per task and batch, the paper's "
                                        "'update sequentially for each task'), joint (one step on the summed loss); "
                                        "auto: sequential with phases, joint when interleaved", choices=TASK_UPDATES)
    warmup_schedule: str = setting("auto", "lr of the warm-up: constant (the reference's warm-up runs at a constant "
                                           "lr), poly (decayed to 0 over the warm-up); auto: constant with phases, "
                                           "poly when interleaved. The warm-up steps like the search: one step per "
                                           "task with sequential --task-updates", choices=WARMUP_SCHEDULES)
    reset_arch_optimizer: bool | None = setting(
        None, "reset the α-Adam state at the start of every α phase (reference code); unset: yes with phases, no "
              "when interleaved")
    checkpoint_every: int = setting(500, "iterations between resumable checkpoints (0: only at the end)")
    log_alpha_every: int = setting(1, "α steps between α snapshots in the search log")
    warmup_cache: str | None = setting(None, "folder of cached warmed-up supergraphs (shared by the runs of a "
                                             "λ sweep)")

    def validate(self) -> None:
        if self.lam < 0:
            raise ConfigError(f"--lambda must be >= 0, got {self.lam}")
        if self.resource_mode not in RESOURCE_MODES:
            raise ConfigError(f"--resource-mode must be one of {', '.join(RESOURCE_MODES)}, got {self.resource_mode!r}")
        if self.resource_estimator not in ESTIMATORS:
            raise ConfigError(f"--resource-estimator must be one of {', '.join(ESTIMATORS)}, got {self.resource_estimator!r}")
        if self.resource_estimator == "paper" and self.resource_mode != "absolute":
            raise ConfigError("--resource-estimator paper prices GFLOPs as the paper does: it needs --resource-mode "
                              "absolute")
        make_schedule(self.schedule, self.tau0, self.tau1)  # unknown names and τ <= 0 raise ConfigError
        if self.task_updates not in TASK_UPDATES:
            raise ConfigError(f"--task-updates must be one of {', '.join(TASK_UPDATES)}, got {self.task_updates!r}")
        if self.warmup_schedule not in WARMUP_SCHEDULES:
            raise ConfigError(f"--warmup-schedule must be one of {', '.join(WARMUP_SCHEDULES)}, "
                              f"got {self.warmup_schedule!r}")
        for name in ("iterations", "batch_size", "mc_samples", "weight_steps_per_arch", "log_alpha_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_iterations", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "arch_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.arch_weight_decay < 0:
            raise ConfigError("weight decays must be >= 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.search_resolution is not None and not 0 < self.search_resolution <= 1:
            raise ConfigError(f"search-resolution must be a factor in (0, 1], got {self.search_resolution}")
        if not 0 < self.arch_fraction < 1:
            raise ConfigError(f"arch-fraction must be in (0, 1), got {self.arch_fraction}")


@dataclass
class BMTASSpace:
    """What a sweep samples for BMTAS: λ and τ0 log-uniformly (they act multiplicatively), a schedule."""

    lam: tuple[float, float] = (0.01, 2.0)
    schedules: tuple[str, ...] = ("linear", "exponential", "constant")
    tau0: tuple[float, float] = (1.0, 10.0)

    def validate(self) -> None:
        for s in self.schedules:
            SCHEDULES.get(s)
        for name in ("lam", "tau0"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"bmtas search space {name}: need 0 < low <= high, got ({lo}, {hi})")

    def suggest(self, trial: Any, prefix: str) -> None:
        trial.suggest_float(f"{prefix}lambda", *self.lam, log=True)
        trial.suggest_categorical(f"{prefix}schedule", list(self.schedules))
        trial.suggest_float(f"{prefix}tau0", *self.tau0, log=True)


# ---------------------------------------------------------------------------------------------- data
def split_train(ctx: SearchContext, cfg: BMTASConfig) -> tuple[Dataset, Dataset]:
    """The seeded (α, weights) split of the training set: ``arch_fraction`` vs the rest."""
    train = ctx.data.split("train", train=True)
    n = len(train)  # type: ignore[arg-type]
    n_arch = int(round(n * cfg.arch_fraction))
    if n_arch < cfg.batch_size or n - n_arch < cfg.batch_size:
        raise ConfigError(
            f"training set of {n} samples is too small for --batch-size {cfg.batch_size}: the α split gets "
            f"{n_arch} and the weight split {n - n_arch} samples (each needs at least one batch)"
        )
    arch, weights = random_split(train, [n_arch, n - n_arch], generator=torch.Generator().manual_seed(ctx.seed))
    return arch, weights


def phase_lengths(cfg: BMTASConfig, arch_set: Dataset, weight_set: Dataset) -> tuple[int, int]:
    """``(α steps, weight steps)`` of one search cycle.

    Phases (the paper, reference code): one pass over each split, incomplete batches dropped — with
    the 80/20 split about 4 weight batches per α batch (PASCAL-Context at batch 16: 62 α steps, then
    249 weight steps). Interleaved: ``(1, weight_steps_per_arch)``.
    """
    if not cfg.phases:
        return 1, int(cfg.weight_steps_per_arch)  # type: ignore[arg-type]
    return len(arch_set) // cfg.batch_size, len(weight_set) // cfg.batch_size  # type: ignore[arg-type]


def weight_optimizer(model: Supergraph, cfg: BMTASConfig,
                     iterations: int) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """The supergraph weights' optimiser (SGD with ``cfg``'s momentum and weight decay, never ``α``) and
    its poly lr schedule over ``iterations`` steps: the warm-up's and the search's θ updates."""
    opt = torch.optim.SGD(model.weight_parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return opt, poly_schedule(opt, iterations, cfg.poly_power)


def search_data(ctx: SearchContext, cfg: BMTASConfig) -> MultiTaskData:
    """The data the search reads: ``ctx.data`` rescaled to ``cfg.search_resolution`` (unset: to the data
    set's paper search resolution when ``ctx.data`` is at full resolution, else ``ctx.data`` as given)."""
    data = ctx.data
    target = cfg.search_resolution
    if target is None:
        target = data.info.get("search_resolution") if data.resolution == 1.0 else None
    if target is None or math.isclose(target, data.resolution):
        return data
    if data.rescale is None:
        raise ConfigError(f"--search-resolution {target:g}: data set {data.name!r} cannot be rescaled on load")
    return data.rescale(float(target))


def pricing_spec(spec: BackboneSpec, data: MultiTaskData) -> BackboneSpec:
    """``spec`` sized for ``data``'s images at *full* resolution: the resource loss prices the network
    that is retrained and reported, whatever resolution the search reads (so λ keeps its meaning), and
    at the image, not the padded square, where they differ (NYUD-v2: 425×560, :meth:`MultiTaskData.price_shape`)."""
    if len(spec.input_shape) != 3 or (data.resolution == 1.0 and data.image_size is None):
        return spec
    if data.image_size is not None:
        return dataclasses.replace(spec, input_shape=data.price_shape(full_resolution=True))
    c, h, w = spec.input_shape
    full = (c, round(h / data.resolution), round(w / data.resolution))
    return dataclasses.replace(spec, input_shape=full)


# ------------------------------------------------------------------------------------------- warm-up
def warmup_key(ctx: SearchContext, cfg: BMTASConfig) -> str:
    """Hash of everything the warmed-up supergraph depends on (not λ, the schedule or the α settings)."""
    train = ctx.data.split("train", train=True)
    key = {
        "data": ctx.data.name, "input_shape": list(ctx.data.input_shape), "train_samples": len(train),  # type: ignore[arg-type]
        "first_item": _fingerprint(train[0]), "spec": ctx.spec.cache_key(), "tasks": [t.name for t in ctx.tasks],
        "weights": [t.weight for t in ctx.tasks], "seed": ctx.seed, "warmup_iterations": cfg.warmup_iterations,
        "batch_size": cfg.batch_size, "lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay,
        "poly_power": cfg.poly_power, "arch_fraction": cfg.arch_fraction, "torch": torch.__version__,
        "format": WARMUP_FORMAT,
    }
    if cfg.sequential or not cfg.warmup_poly:  # the keys of warm-ups from before these settings stay valid
        key.update(warmup_steps="sequential" if cfg.sequential else "joint",
                   warmup_lr="poly" if cfg.warmup_poly else "constant")
    if ctx.amp != "off":
        key["amp"] = ctx.amp
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _fingerprint(item: dict) -> str:
    """A short hash of one sample's image (distinguishes data-set seeds and roots)."""
    return hashlib.sha256(item["image"].numpy().tobytes()).hexdigest()[:16]


def warm_up(model: Supergraph, ctx: SearchContext, cfg: BMTASConfig, weight_set: Dataset, runtime: Runtime) -> None:
    """Train candidate ``t`` of every layer (and head ``t``) on task ``t`` only, ``α`` untouched.

    Routing by ``ops[l, t] = t`` runs exactly ``T`` blocks per layer. With sequential task updates (the
    paper's "update the supergraph sequentially for each task"; the reference's warm-up steps once per
    task and batch) one SGD step per task and batch, else one step on the summed loss (the stem once per
    batch); the lr stays at ``cfg.lr`` (the reference's constant-lr warm-up) or decays by poly over the
    warm-up (``cfg.warmup_poly``).
    """
    if cfg.warmup_iterations == 0:
        return
    model.train()
    opt, sched = weight_optimizer(model, cfg, cfg.warmup_iterations)
    schedulers = [sched] if cfg.warmup_poly else []
    ops = model.warmup_ops()
    batches = runtime.batches(weight_set, cfg.batch_size, ctx.seed + 7919)
    if cfg.sequential:
        steps = [TrainStep([opt], [task], runtime) for task in ctx.tasks]
    else:
        steps = [TrainStep([opt], ctx.tasks, runtime, schedulers=schedulers)]
    for it in tqdm(range(cfg.warmup_iterations), desc="bmtas warm-up", disable=not ctx.progress, leave=False,
                   mininterval=1.0):
        batch = runtime.batch(next(batches))
        where = f"in the bmtas warm-up at iteration {it}"
        if cfg.sequential:
            for task, task_step in zip(ctx.tasks, steps):
                task_step(lambda x, t=task.name: model(x, ops=ops, tasks=[t]), batch, where)
            for sched_ in schedulers:
                sched_.step()
        else:
            steps[0](lambda x: model(x, ops=ops), batch, where)
    for step in steps:
        step.flush("in the bmtas warm-up")


def warm_up_cached(model: Supergraph, ctx: SearchContext, cfg: BMTASConfig, weight_set: Dataset,
                   runtime: Runtime) -> Path | None:
    """Warm up, or load the warmed-up state from ``cfg.warmup_cache`` (written there when missing).

    Returns the cache file used, if any.
    """
    if not cfg.warmup_cache:
        warm_up(model, ctx, cfg, weight_set, runtime)
        return None
    path = Path(cfg.warmup_cache) / f"bmtas-warmup-{warmup_key(ctx, cfg)}.pt"
    with file_lock(path.with_suffix(".lock")):  # concurrent trials: one warms up, the others load its result
        if path.is_file():
            state = load_state(path, "warm-up cache", map_location=runtime.device)
            state.pop("alpha", None)  # α is not warmed up, and its shape depends on the branch points
            missing, unexpected = model.load_state_dict(state, strict=False)
            if [k for k in missing if k != "alpha"] or unexpected:
                raise ConfigError(f"warm-up cache {path} does not fit this supergraph "
                                  f"(missing {missing}, unexpected {unexpected}); delete it")
            return path
        warm_up(model, ctx, cfg, weight_set, runtime)
        save_state(path, {k: v for k, v in model.state_dict().items() if k != "alpha"})
    return path


# -------------------------------------------------------------------------------------------- search
def resource_scale(cfg: BMTASConfig, layer_madds: torch.Tensor, num_tasks: int) -> float:
    """Divisor of ``E[C]``: 1e9 (GMAdds) or the Single model's layer MAdds ``T · Σ_l c_l``; with the
    ``paper`` estimator 1e9 / 2T (GFLOPs = 2 × GMAdds, the term added once per task as in the
    authors' ``train_search``)."""
    if cfg.resource_estimator == "paper":
        return 1e9 / (2 * num_tasks)
    if cfg.resource_mode == "absolute":
        return 1e9
    return float(num_tasks * layer_madds.sum())


def search_checkpoint(out_dir: Path, cfg: BMTASConfig, ctx: SearchContext) -> Checkpoint:
    """The search checkpoint in ``out_dir``: it belongs to one task list, seed and backbone and to the
    settings that define the result (every field of ``cfg`` but :data:`RUN_SETTINGS`: λ, the schedule,
    the iterations …), so resuming it with others is a :class:`ConfigError`."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in RUN_SETTINGS}
    return Checkpoint(Path(out_dir) / CHECKPOINT_NAME, "BMTAS", {
        "tasks": [t.name for t in ctx.tasks], "seed": ctx.seed, "backbone": ctx.spec.cache_key(),
        "branch_points": list(ctx.branch_points or ()), **settings})


def run_search(cfg: BMTASConfig, ctx: SearchContext, stop_at: int | None = None) -> SearchResult | None:
    """Run (or with ``ctx.resume`` continue) a BMTAS search; see the module docstring.

    ``stop_at``: checkpoint after that many weight updates and return None (a paused search, which
    ``ctx.resume`` continues exactly where it stopped). Resuming a checkpoint of other settings
    (:func:`search_checkpoint`) is a :class:`ConfigError`.
    """
    cfg.validate()
    t0 = time.perf_counter()
    runtime = ctx.runtime()
    device = runtime.device
    out_dir = Path(ctx.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Price first (at full resolution): measuring an uncached table builds layers and so draws from the
    # global RNG. Then read the data at the search resolution.
    priced = pricing_spec(ctx.spec, ctx.data)
    table = madds_table(priced, ctx.tasks, cache_dir=ctx.cache_dir)
    ctx = dataclasses.replace(ctx, data=search_data(ctx, cfg))
    torch.manual_seed(ctx.seed)
    model = runtime.prepare(Supergraph(ctx.spec, ctx.tasks, branch_points=ctx.branch_points))
    layer_madds = table.layer_tensor().to(device)
    scale = resource_scale(cfg, layer_madds, len(ctx.tasks))
    estimator = cfg.resource_estimator
    if estimator == "auto":
        estimator = "exact" if len(ctx.tasks) <= EXACT_MAX_TASKS else "mc"
    if estimator == "paper" and len(ctx.tasks) > PAPER_MAX_TASKS:
        raise ConfigError(f"--resource-estimator paper enumerates T^T task assignments per layer: at most "
                          f"{PAPER_MAX_TASKS} tasks, got {len(ctx.tasks)}")
    schedule = make_schedule(cfg.schedule, cfg.tau0, cfg.tau1)
    arch_set, weight_set = split_train(ctx, cfg)
    arch_opt = torch.optim.Adam([model.alpha], lr=cfg.arch_lr, weight_decay=cfg.arch_weight_decay)
    w_opt, w_sched = weight_optimizer(model, cfg, cfg.iterations)
    gen = torch.Generator(device=device).manual_seed(ctx.seed + 104729)
    ckpt = search_checkpoint(out_dir, cfg, ctx)
    log: list[dict] = []
    start = 0
    if ctx.resume:
        state = ckpt.load(map_location=device)
        model.load_state_dict(state["model"])
        arch_opt.load_state_dict(state["arch_opt"])
        w_opt.load_state_dict(state["w_opt"])
        w_sched.load_state_dict(state["w_sched"])
        torch.set_rng_state(state["rng"])
        gen.set_state(state["gen"])
        start, log = int(state["step"]), list(state["log"])
    else:
        warm_path = warm_up_cached(model, ctx, cfg, weight_set, runtime)
        log.append({"event": "start", "config": to_dict(cfg), "tasks": [t.name for t in ctx.tasks],
                    "estimator": estimator, "resource_scale": scale, "layer_madds": list(table.layers),
                    "warmup_cache": str(warm_path) if warm_path else None,
                    "search_input_shape": list(ctx.data.input_shape), "priced_input_shape": list(priced.input_shape),
                    "cycle": dict(zip(("arch_steps", "weight_steps"), phase_lengths(cfg, arch_set, weight_set))),
                    "weight_updates": "sequential per task" if cfg.sequential else "joint",
                    "note": _estimator_note(estimator, len(ctx.tasks), cfg.mc_samples)})
    synced = len(log)  # log entries before this index hold plain floats; later ones may hold tensors

    def sync() -> None:
        nonlocal synced
        log[synced:] = to_floats(log[synced:])
        synced = len(log)

    def save(step: int) -> None:
        sync()
        ckpt.save({"model": model.state_dict(), "arch_opt": arch_opt.state_dict(), "w_opt": w_opt.state_dict(),
                   "w_sched": w_sched.state_dict(), "rng": torch.get_rng_state(), "gen": gen.get_state(),
                   "step": step, "log": log})

    n_arch, n_weights = phase_lengths(cfg, arch_set, weight_set)
    if cfg.sequential:  # one optimiser step per task and batch; the lr schedule advances once per batch
        w_steps = [TrainStep([w_opt], [task], runtime) for task in ctx.tasks]
    else:
        w_steps = [TrainStep([w_opt], ctx.tasks, runtime, schedulers=[w_sched], per_task=cfg.per_task)]
    weight_batches = runtime.batches(weight_set, cfg.batch_size, ctx.seed, start)
    arch_batches = runtime.batches(arch_set, cfg.batch_size, ctx.seed + 1, math.ceil(start / n_weights) * n_arch)

    def search_step(step: int) -> dict:
        """One weight update (preceded, at the start of a cycle, by the α phase)."""
        tau = schedule(step, cfg.iterations)
        if step % n_weights == 0:  # an architecture (α) phase, then θ momentum and BN statistics restart
            if cfg.resets_arch_optimizer:
                arch_opt.state.clear()
            for i in range(n_arch):
                entry = arch_step(model, ctx, cfg, runtime.batch(next(arch_batches)), runtime, tau, gen,
                                  layer_madds, scale, estimator, arch_opt)
                entry.update(step=step, tau=tau)
                if ((step // n_weights) * n_arch + i) % cfg.log_alpha_every == 0:
                    entry["alpha"] = model.alpha.detach().clone()
                log.append(entry)
            reset_batchnorm_stats(model)
            w_opt.state.clear()  # momentum restarts once per architecture change
        batch = runtime.batch(next(weight_batches))
        weights = model.sample_weights(tau, cfg.hard, gen, model.alpha.detach())
        where = f"in the bmtas search at step {step}"
        if cfg.sequential:
            parts = {}
            for task, task_step in zip(ctx.tasks, w_steps):
                parts.update(task_step(lambda x, w=weights, t=task.name: model(x, weights=w, tasks=[t]), batch,
                                       where)[1])
            w_sched.step()
        else:
            _, parts = w_steps[0](lambda x, tasks=None, w=weights: model(x, weights=w, tasks=tasks), batch,
                                  where)
        log.append({"phase": "weights", "step": step, "tau": tau, "task_losses": parts})
        return {"tau": tau, "task_losses": parts}

    def report(done: int) -> dict:
        """Read the log so far (the host synchronisation) and the expected GMAdds of the last α step."""
        sync()
        arch = next((e for e in reversed(log) if e.get("phase") == "arch"), None)
        return {"gmadds": arch["expected_madds"] / 1e9} if arch is not None else {}

    def flush(end: int) -> None:
        for w_step in w_steps:
            w_step.flush(f"in the bmtas search before step {end}")

    def on_step(done: int, info: dict) -> None:
        _report_step(ctx, table, model, done, info["tau"], info["task_losses"], info["checkpoint"])

    loop = ResumableLoop(cfg.iterations, save=save, desc="bmtas search", progress=ctx.progress,
                         checkpoint_every=cfg.checkpoint_every, report_every=runtime.sync_every,
                         on_step=on_step if ctx.on_step is not None else None, flush=flush, report=report,
                         postfix=("gmadds",))
    model.train()
    if not loop.run(start, search_step, stop_at):
        return None
    ops = model.argmax_ops().cpu().tolist()
    config = BranchConfig.from_op_indices([t.name for t in ctx.tasks], ops)
    config.save(out_dir / "branch_config.json")
    probs = torch.softmax(model.layer_alpha(model.alpha.detach()).double(), dim=-1)
    final = {"event": "end", "op_indices": ops, "madds": table.madds(config),
             "expected_madds": float(expected_madds(probs, layer_madds, "mc" if estimator == "mc" else "exact",
                                                    cfg.mc_samples, gen)),
             "arch_hash": config.arch_hash()}
    log.append(final)
    log_path = write_text(out_dir / LOG_NAME, "".join(json.dumps(e) + "\n" for e in log))
    return SearchResult(config=config, log_path=log_path, wall_time_s=time.perf_counter() - t0,
                        info={"madds": final["madds"], "expected_madds": final["expected_madds"],
                              "estimator": estimator, "op_indices": ops})


def _estimator_note(estimator: str, num_tasks: int, samples: int) -> str:
    if estimator == "mc":
        return f"{num_tasks} tasks > {EXACT_MAX_TASKS}: resource loss estimated by unbiased Monte Carlo ({samples} samples)"
    if estimator == "paper":
        return ("the paper's resource loss: the Eq. 6 upper bound in GFLOPs, added once per task (expected_madds of "
                "the α steps: the bound in MAdds; of the end: exact)")
    return "exact resource loss"


def arch_step(model: Supergraph, ctx: SearchContext, cfg: BMTASConfig, batch: dict, runtime: Runtime,
              tau: float, gen: torch.Generator, layer_madds: torch.Tensor, scale: float, estimator: str,
              arch_opt: torch.optim.Optimizer) -> dict:
    """One ``α`` update: task losses through Gumbel-softmax routes + λ · E[C] / scale (once).

    ``batch``: an α batch on the device; ``tau``: the temperature; ``gen``: the generator of the Gumbel
    noise (and of Monte-Carlo resource samples); ``layer_madds``, ``scale``, ``estimator``: the resource
    term (:func:`resource_scale`, ``"exact"``, ``"mc"`` or ``"paper"``); ``arch_opt``: the optimiser of ``α``. Only
    ``α``'s gradient is computed (``torch.autograd.grad``); with ``per_task`` each task's loss is
    differentiated on its own forward pass and the gradients are summed. Returns the search-log entry
    (tensors: reading them is left to the caller's cadence).
    """
    weights = model.sample_weights(tau, cfg.hard, gen)
    images = batch["image"]
    probs = torch.softmax(model.layer_alpha().double(), dim=-1)
    parts: dict[str, torch.Tensor] = {}
    if not cfg.per_task:
        with runtime.autocast():
            task_loss, parts = weighted_loss(model(images, weights=weights), batch, ctx.tasks)
        cost = expected_madds(probs, layer_madds, estimator, cfg.mc_samples, gen)
        (grad,) = torch.autograd.grad(task_loss + cfg.lam * cost / scale, [model.alpha])
    else:
        grad = torch.zeros_like(model.alpha)
        for task in ctx.tasks:
            with runtime.autocast():
                term, part = weighted_loss(model(images, weights=weights, tasks=[task.name]), batch, [task])
            parts.update(part)
            # retain_graph: the Gumbel weights' small graph is shared by the tasks; this task's activations
            # are freed when ``term`` is dropped, before the next task's forward pass.
            grad += torch.autograd.grad(term, [model.alpha], retain_graph=True)[0]
            del term
        cost = expected_madds(probs, layer_madds, estimator, cfg.mc_samples, gen)
        grad += torch.autograd.grad(cfg.lam * cost / scale, [model.alpha])[0].to(grad.dtype)
    arch_opt.zero_grad(set_to_none=True)
    model.alpha.grad = grad
    arch_opt.step()
    model.alpha.grad = None
    return {"phase": "arch", "task_losses": parts, "expected_madds": cost.detach(),
            "resource_loss": cfg.lam * cost.detach() / scale}


# ------------------------------------------------------------------------------------- registration
class DefaultLambda(float):
    """A data-set default λ (the mapped one, for the exact loss) that also carries the paper's unmapped
    value, which :meth:`BMTASMethod.make_config` takes when the estimator is ``paper`` and no λ was
    given."""

    paper: float

    def __new__(cls, mapped: float, paper_value: float) -> DefaultLambda:
        obj = super().__new__(cls, mapped)
        obj.paper = paper_value
        return obj


class BMTASMethod(SearchMethod):
    """BMTAS: Gumbel-softmax supergraph search with an exact expected-MAdds loss."""

    name = "bmtas"
    config_type = BMTASConfig
    space_type = BMTASSpace

    def settings(self, sampled: dict[str, Any]) -> dict[str, Any]:
        values = dict(sampled)
        if "lambda" in values:  # the paper's name (and the flag's); the field is ``lam``
            values["lam"] = values.pop("lambda")
        return values

    def make_config(self, values: Any) -> BMTASConfig:
        values = dict(values)
        lam = values.get("lam")
        if isinstance(lam, DefaultLambda):  # a data default, not a given --lambda: the estimator's own
            values["lam"] = lam.paper if values.get("resource_estimator") == "paper" else float(lam)
        return super().make_config(values)

    def data_defaults(self, dataset: str, backbone: str, num_tasks: int) -> dict[str, Any]:
        """On the paper's data sets: its iterations, warm-up, batch size per backbone and BMTAS-2's λ
        of the table for ``backbone`` (:mod:`branchsweep.paper`): mapped to the exact resource loss, or
        the paper's own with ``--resource-estimator paper`` (:class:`DefaultLambda`)."""
        out: dict[str, Any] = {}
        if dataset in paper.ITERATIONS:
            out.update(iterations=paper.ITERATIONS[dataset], warmup_iterations=paper.WARMUP_ITERATIONS[dataset])
        if dataset in paper.ITERATIONS and backbone in paper.BATCH:
            out["batch_size"] = paper.BATCH[backbone]
        lambdas = paper.paper_lambdas(backbone, dataset, num_tasks)
        if lambdas is not None:
            out["lam"] = DefaultLambda(lambdas[1], paper.LAMBDAS[(backbone, dataset)][1])
        return out

    def sweep_settings(self, shared_dir: Path) -> dict[str, Any]:
        """One warm-up per sweep: every trial reads (or first writes) the cache in ``shared_dir``."""
        return {"warmup_cache": str(shared_dir / "warmup")}

    def sweep_summary(self, shared_dir: Path, trials: int) -> str | None:
        folder = shared_dir / "warmup"
        warm = sorted(folder.glob("*.pt")) if folder.is_dir() else []
        return f"warm-up: {len(warm)} warmed-up supergraph(s) in {folder} shared by {trials} BMTAS trial(s)"

    def run(self, cfg: BMTASConfig, ctx: SearchContext) -> SearchResult:
        result = run_search(cfg, ctx)
        assert result is not None  # only a stop_at pauses a search
        return result


SEARCH_METHODS.register("bmtas", BMTASMethod())


def _report_step(ctx: SearchContext, table, model, iteration: int, tau: float, parts: dict, checkpoint: bool) -> None:
    """Progress for ``ctx.on_step``: τ, the weight step's loss and the MAdds of the argmax architecture now."""
    ops = model.argmax_ops().cpu().tolist()
    madds = table.madds(BranchConfig.from_op_indices([t.name for t in ctx.tasks], ops))
    loss = sum(float(v) for v in parts.values()) if parts else math.nan
    ctx.step(iteration, tau=float(tau), loss=loss, madds=int(madds), checkpoint=checkpoint)
