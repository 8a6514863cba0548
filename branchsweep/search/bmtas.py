"""BMTAS (Bruggemann et al., BMVC 2020): differentiable branching search with a resource-aware loss.

1. **Warm-up**: candidate ``t`` of every layer is trained on task ``t`` only (:func:`warm_up`); the
   result can be cached on disk keyed by what it depends on, so a λ sweep warms up once.
2. **Search**: alternate one ``α`` step on a seeded 20% split of the training set (Adam, batch
   statistics for BatchNorm) with ``weight_steps_per_arch`` weight steps on the other 80% (SGD with
   momentum, poly lr); after every ``α`` step the BatchNorm running statistics and the SGD momentum
   are reset (supplement A). Routing samples Gumbel-softmax weights at temperature ``τ(step)`` from a
   named schedule (linear 5.0 → 0.1 by default).
3. **Loss** of an ``α`` step: ``Σ_t w_t L_t + λ · E[C] / scale`` where ``E[C]`` is the exact expected
   MAdds of the layers (:func:`~branchsweep.search.resource.expected_madds`) and ``scale`` is 1e9
   (``absolute``: λ per GMAdd) or the MAdds of the Single model's layers (``normalized``). The term is
   added once per ``α`` step.
4. **Export**: ``argmax_j α[l, t, j]`` → ``branch_config.json``, plus ``search_log.jsonl`` beside it.

The paper updates the supergraph "sequentially for each task"; since ``α[:, t]`` only influences task
``t``'s route, the gradient of the summed loss of one joint forward pass equals the sum of the
sequential per-task gradients, and the joint pass evaluates shared inputs (the stem, identical
prefixes) once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, random_split
from tqdm.auto import tqdm

from branchsweep.arch import BranchConfig
from branchsweep.config import to_dict
from branchsweep.errors import ConfigError
from branchsweep.madds import madds_table
from branchsweep.search.base import SEARCH_METHODS, SearchContext, SearchMethod, SearchResult
from branchsweep.search.resource import EXACT_MAX_TASKS, expected_madds
from branchsweep.search.schedules import make_schedule
from branchsweep.search.supergraph import Supergraph, gumbel_softmax_weights, reset_batchnorm_stats
from branchsweep.train import epoch_batches, optimizer_step, resolve_device, to_device

CHECKPOINT_NAME = "bmtas_checkpoint.pt"
LOG_NAME = "search_log.jsonl"
RESOURCE_MODES = ("absolute", "normalized")
ESTIMATORS = ("auto", "exact", "mc")
WARMUP_FORMAT = 1  # bump when the supergraph's parameter layout changes (invalidates cached warm-ups)


@dataclass
class BMTASConfig:
    """BMTAS settings; defaults are the paper's (supplement A) except where noted.

    ``lam``: resource weight λ (per GMAdd in ``absolute`` mode, per Single-model-layer MAdds in
    ``normalized`` mode; see docs/bmtas.md for the paper's grid). ``weight_steps_per_arch``: weight
    updates per ``α`` update (4 matches the 80/20 data split). ``warmup_cache``: a folder holding
    warmed-up supergraphs keyed by data, backbone, tasks, seed and warm-up settings.
    """

    lam: float = 0.05
    resource_mode: str = "absolute"
    resource_estimator: str = "auto"
    mc_samples: int = 64
    hard: bool = False
    schedule: str = "linear"
    tau0: float = 5.0
    tau1: float = 0.1
    iterations: int = 40000
    warmup_iterations: int = 2000
    batch_size: int = 16
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    arch_lr: float = 0.01
    arch_weight_decay: float = 5e-5
    arch_fraction: float = 0.2
    weight_steps_per_arch: int = 4
    checkpoint_every: int = 500
    log_alpha_every: int = 1
    warmup_cache: str | None = None

    def validate(self) -> None:
        if self.lam < 0:
            raise ConfigError(f"--lambda must be >= 0, got {self.lam}")
        if self.resource_mode not in RESOURCE_MODES:
            raise ConfigError(f"--resource-mode must be one of {', '.join(RESOURCE_MODES)}, got {self.resource_mode!r}")
        if self.resource_estimator not in ESTIMATORS:
            raise ConfigError(f"--resource-estimator must be one of {', '.join(ESTIMATORS)}, got {self.resource_estimator!r}")
        make_schedule(self.schedule, self.tau0, self.tau1)  # unknown names and τ <= 0 raise ConfigError
        for name in ("iterations", "batch_size", "mc_samples", "weight_steps_per_arch", "log_alpha_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_iterations", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "arch_lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.arch_weight_decay < 0:
            raise ConfigError("weight decays must be >= 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 < self.arch_fraction < 1:
            raise ConfigError(f"arch-fraction must be in (0, 1), got {self.arch_fraction}")


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


def _losses(model: Supergraph, ctx: SearchContext, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    total: Any = 0.0
    parts = {}
    for task in ctx.tasks:
        loss = task.loss(outputs[task.name], batch[task.name])
        parts[task.name] = float(loss.detach())
        total = total + task.weight * loss
    return total, parts


def _sgd(model: Supergraph, cfg: BMTASConfig, iterations: int) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    opt = torch.optim.SGD(model.weight_parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda it: max(0.0, 1.0 - it / max(iterations, 1)) ** cfg.poly_power
    )
    return opt, sched


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
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _fingerprint(item: dict) -> str:
    """A short hash of one sample's image (distinguishes data-set seeds and roots)."""
    return hashlib.sha256(item["image"].numpy().tobytes()).hexdigest()[:16]


def warm_up(model: Supergraph, ctx: SearchContext, cfg: BMTASConfig, weight_set: Dataset,
            device: torch.device) -> None:
    """Train candidate ``t`` of every layer (and head ``t``) on task ``t`` only, ``α`` untouched.

    Routing by ``ops[l, t] = t`` runs exactly ``T`` blocks per layer, the stem once per batch.
    """
    if cfg.warmup_iterations == 0:
        return
    model.train()
    opt, sched = _sgd(model, cfg, cfg.warmup_iterations)
    ops = model.warmup_ops()
    batches = epoch_batches(weight_set, cfg.batch_size, ctx.seed + 7919)
    for it in tqdm(range(cfg.warmup_iterations), desc="bmtas warm-up", disable=not ctx.progress, leave=False,
                   mininterval=1.0):
        batch = to_device(next(batches), device)
        loss, parts = _losses(model, ctx, model(batch["image"], ops=ops), batch)
        optimizer_step(loss, opt, sched, f"in the bmtas warm-up at iteration {it} ({parts})")


def warm_up_cached(model: Supergraph, ctx: SearchContext, cfg: BMTASConfig, weight_set: Dataset,
                   device: torch.device) -> Path | None:
    """Warm up, or load the warmed-up state from ``cfg.warmup_cache`` (written there when missing).

    Returns the cache file used, if any.
    """
    if not cfg.warmup_cache:
        warm_up(model, ctx, cfg, weight_set, device)
        return None
    path = Path(cfg.warmup_cache) / f"bmtas-warmup-{warmup_key(ctx, cfg)}.pt"
    if path.is_file():
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as err:
            raise ConfigError(f"cannot read warm-up cache {path}: {err}") from None
        model.load_state_dict(state)
        return path
    warm_up(model, ctx, cfg, weight_set, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{id(model)}")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return path


# -------------------------------------------------------------------------------------------- search
def _batches(dataset: Dataset, cfg: BMTASConfig, seed: int, start: int) -> Iterator[dict]:
    return epoch_batches(dataset, cfg.batch_size, seed, start)


def resource_scale(cfg: BMTASConfig, layer_madds: torch.Tensor, num_tasks: int) -> float:
    """Divisor of ``E[C]``: 1e9 (GMAdds) or the Single model's layer MAdds ``T · Σ_l c_l``."""
    if cfg.resource_mode == "absolute":
        return 1e9
    return float(num_tasks * layer_madds.sum())


def bmtas_search(cfg: BMTASConfig, ctx: SearchContext, stop_at: int | None = None) -> SearchResult | None:
    """Run (or with ``ctx.resume`` continue) a BMTAS search; see the module docstring.

    ``stop_at``: checkpoint after that many weight updates and return None (a paused search, which
    ``ctx.resume`` continues exactly where it stopped).
    """
    cfg.validate()
    t0 = time.perf_counter()
    device = resolve_device(ctx.device)
    out_dir = Path(ctx.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Price first: measuring an uncached table builds layers and so draws from the global RNG.
    table = madds_table(ctx.spec, ctx.tasks, cache_dir=ctx.cache_dir)
    torch.manual_seed(ctx.seed)
    model = Supergraph(ctx.spec, ctx.tasks).to(device)
    layer_madds = table.layer_tensor().to(device)
    scale = resource_scale(cfg, layer_madds, len(ctx.tasks))
    estimator = cfg.resource_estimator
    if estimator == "auto":
        estimator = "exact" if len(ctx.tasks) <= EXACT_MAX_TASKS else "mc"
    schedule = make_schedule(cfg.schedule, cfg.tau0, cfg.tau1)
    arch_set, weight_set = split_train(ctx, cfg)
    arch_opt = torch.optim.Adam([model.alpha], lr=cfg.arch_lr, weight_decay=cfg.arch_weight_decay)
    gen = torch.Generator(device=device).manual_seed(ctx.seed + 104729)
    ckpt_path = out_dir / CHECKPOINT_NAME
    log_path = out_dir / LOG_NAME
    log: list[dict] = []
    start = 0
    warm_path: Path | None = None
    if ctx.resume:
        if not ckpt_path.is_file():
            raise ConfigError(f"--resume: no BMTAS checkpoint in {out_dir} ({CHECKPOINT_NAME} is missing)")
        try:
            state = torch.load(ckpt_path, map_location=device, weights_only=True)
        except Exception as err:
            raise ConfigError(f"cannot read checkpoint {ckpt_path}: {err}") from None
        model.load_state_dict(state["model"])
    else:
        warm_path = warm_up_cached(model, ctx, cfg, weight_set, device)
    w_opt, w_sched = _sgd(model, cfg, cfg.iterations)
    if ctx.resume:
        arch_opt.load_state_dict(state["arch_opt"])
        w_opt.load_state_dict(state["w_opt"])
        w_sched.load_state_dict(state["w_sched"])
        torch.set_rng_state(state["rng"])
        gen.set_state(state["gen"])
        start, log = int(state["step"]), list(state["log"])
    else:
        log.append({"event": "start", "config": to_dict(cfg), "tasks": [t.name for t in ctx.tasks],
                    "estimator": estimator, "resource_scale": scale, "layer_madds": list(table.layers),
                    "warmup_cache": str(warm_path) if warm_path else None,
                    "note": (f"{len(ctx.tasks)} tasks > {EXACT_MAX_TASKS}: resource loss estimated by unbiased "
                             f"Monte Carlo ({cfg.mc_samples} samples)") if estimator == "mc" else "exact resource loss"})

    def save(step: int) -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "arch_opt": arch_opt.state_dict(), "w_opt": w_opt.state_dict(),
                    "w_sched": w_sched.state_dict(), "rng": torch.get_rng_state(), "gen": gen.get_state(),
                    "step": step, "log": log}, tmp)
        tmp.replace(ckpt_path)

    k = cfg.weight_steps_per_arch
    weight_batches = _batches(weight_set, cfg, ctx.seed, start)
    arch_batches = _batches(arch_set, cfg, ctx.seed + 1, math.ceil(start / k))
    end = cfg.iterations if stop_at is None else min(stop_at, cfg.iterations)
    bar = tqdm(range(start, end), initial=start, total=cfg.iterations, desc="bmtas search",
               disable=not ctx.progress, leave=False, mininterval=1.0)
    model.train()
    for step in bar:
        tau = schedule(step, cfg.iterations)
        if step % k == 0:
            entry = _arch_step(model, ctx, cfg, next(arch_batches), device, tau, gen, layer_madds, scale,
                               estimator, arch_opt)
            reset_batchnorm_stats(model)
            w_opt.state.clear()  # momentum restarts after every architecture change
            entry.update(step=step, tau=tau)
            if (step // k) % cfg.log_alpha_every == 0:
                entry["alpha"] = model.alpha.detach().cpu().tolist()
            log.append(entry)
            bar.set_postfix(gmadds=f"{entry['expected_madds'] / 1e9:.3f}", refresh=False)
        batch = to_device(next(weight_batches), device)
        weights = gumbel_softmax_weights(model.alpha.detach(), tau, cfg.hard, gen)
        loss, parts = _losses(model, ctx, model(batch["image"], weights=weights), batch)
        optimizer_step(loss, w_opt, w_sched, f"in the bmtas search at step {step} ({parts})")
        log.append({"phase": "weights", "step": step, "tau": tau, "task_losses": parts})
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
            save(step + 1)
    bar.close()
    if end < cfg.iterations:
        save(end)
        return None
    save(cfg.iterations)
    ops = model.argmax_ops().cpu().tolist()
    config = BranchConfig.from_op_indices([t.name for t in ctx.tasks], ops)
    config.save(out_dir / "branch_config.json")
    probs = torch.softmax(model.alpha.detach().double(), dim=-1)
    final = {"event": "end", "op_indices": ops, "madds": table.madds(config),
             "expected_madds": float(expected_madds(probs, layer_madds, "exact" if estimator == "exact" else "mc",
                                                    cfg.mc_samples, gen)),
             "arch_hash": config.arch_hash()}
    log.append(final)
    tmp = log_path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in log))
    tmp.replace(log_path)
    return SearchResult(config=config, log_path=log_path, wall_time_s=time.perf_counter() - t0,
                        info={"madds": final["madds"], "expected_madds": final["expected_madds"],
                              "estimator": estimator, "op_indices": ops})


def _arch_step(model: Supergraph, ctx: SearchContext, cfg: BMTASConfig, batch: dict, device: torch.device, tau: float,
               gen: torch.Generator, layer_madds: torch.Tensor, scale: float, estimator: str,
               arch_opt: torch.optim.Optimizer) -> dict:
    """One ``α`` update: task losses through Gumbel-softmax routes + λ · E[C] / scale (once)."""
    batch = to_device(batch, device)
    weights = gumbel_softmax_weights(model.alpha, tau, cfg.hard, gen)
    task_loss, parts = _losses(model, ctx, model(batch["image"], weights=weights), batch)
    probs = torch.softmax(model.alpha.double(), dim=-1)
    cost = expected_madds(probs, layer_madds, estimator, cfg.mc_samples, gen)
    loss = task_loss + cfg.lam * cost / scale
    (grad,) = torch.autograd.grad(loss, [model.alpha])
    arch_opt.zero_grad(set_to_none=True)
    model.alpha.grad = grad
    arch_opt.step()
    model.alpha.grad = None
    return {"phase": "arch", "task_losses": parts, "expected_madds": float(cost.detach()),
            "resource_loss": float(cfg.lam * cost.detach() / scale)}


# ------------------------------------------------------------------------------------- registration
class BMTASMethod(SearchMethod):
    """BMTAS: Gumbel-softmax supergraph search with an exact expected-MAdds loss."""

    name = "bmtas"
    config_type = BMTASConfig

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--lambda", dest="lam", type=float, default=None,
                           help="resource weight λ (default 0.05; per GMAdd, or per Single-model MAdds with "
                                "--resource-mode normalized)")
        group.add_argument("--resource-mode", choices=RESOURCE_MODES, default=None,
                           help="absolute: λ · expected GMAdds; normalized: λ · expected MAdds / Single's")
        group.add_argument("--resource-estimator", choices=ESTIMATORS, default=None,
                           help=f"expected-MAdds computation (auto: exact up to {EXACT_MAX_TASKS} tasks, then Monte Carlo)")
        group.add_argument("--mc-samples", type=int, default=None, help="Monte-Carlo samples of the resource loss")
        group.add_argument("--hard", action="store_true", default=None,
                           help="straight-through hard Gumbel samples (run only the selected candidates)")
        group.add_argument("--weight-steps-per-arch", type=int, default=None,
                           help="weight updates per α update (default 4, the 80/20 data split)")
        group.add_argument("--warmup-cache", default=None,
                           help="folder of cached warmed-up supergraphs (shared by the runs of a λ sweep)")

    def config_from_args(self, args: argparse.Namespace) -> BMTASConfig:
        mapping = {
            "lam": "lam", "resource_mode": "resource_mode", "resource_estimator": "resource_estimator",
            "mc_samples": "mc_samples", "hard": "hard", "weight_steps_per_arch": "weight_steps_per_arch",
            "warmup_cache": "warmup_cache", "schedule": "schedule", "tau0": "tau0", "tau1": "tau1",
            "iterations": "iterations", "warmup_iterations": "warmup_iterations", "batch_size": "batch_size",
            "lr": "lr", "arch_lr": "arch_lr",
        }
        values = {field: getattr(args, flag) for flag, field in mapping.items() if getattr(args, flag, None) is not None}
        cfg = BMTASConfig(**values)
        cfg.validate()
        return cfg

    def run(self, cfg: BMTASConfig, ctx: SearchContext) -> SearchResult:
        result = bmtas_search(cfg, ctx)
        assert result is not None  # only a stop_at pauses a search
        return result


SEARCH_METHODS.register("bmtas", BMTASMethod())
