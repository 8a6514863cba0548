"""Learning to Branch (Guo, Lee & Ulbricht, ICML 2020): tree-structured branching blocks.

Layer ``l`` of the backbone has ``J_l`` *child nodes*, each an independent copy of the backbone's layer
``l``. Child ``j`` of layer ``l`` holds logits ``α_{l,j} ∈ R^{J_{l-1}}`` of a categorical distribution over
the nodes of layer ``l-1`` (its parents; the nodes of the first layer all read the stem output). The
last layer has exactly one node per task, node ``t`` feeding task ``t``'s head.

Training (Sections 3.2–3.3):

* **hard forward** (Eq. 4): every forward pass, each child draws ``i* = argmax_i(α_{l,j,i} + ε_i)``
  with Gumbel noise ``ε`` and receives exactly the output ``y_{i*}`` of that parent;
* **soft backward** (Eq. 5): the gradient flows as if the input were ``Σ_i d̃_i y_i`` with the
  Gumbel-softmax ``d̃ = softmax((α + ε) / τ)``, so every parent's logit gets a gradient. We compute
  ``x = y_{i*} + Σ_i (d̃_i − stopgrad(d̃_i)) y_i``: its value is ``y_{i*}`` *exactly* (the correction is a
  sum of exact zeros), its gradient w.r.t. ``α`` is the relaxed one and w.r.t. ``y_i`` the one-hot one;
* the temperature follows a named schedule of :mod:`branchsweep.search.schedules` (paper, synthetic:
  ``inverse_sqrt`` from 50; CelebA: ``inverse`` from 10 counted in epochs, ``--tau-unit epoch``);
* the search is measured in epochs (default 500, the paper's synthetic length; CelebA 30) with a
  warm-up of 10% of them (the paper's 50 of 500; CelebA 2 epochs);
* during the warm-up the logits are not updated (the children still sample, uniformly, so every copy
  of every layer is trained); weights and logits have separate Adam optimisers and learning rates,
  optionally decayed (``lr_schedule``; CelebA: × 0.97 every 2.4 epochs).

Selection (Eq. 7): ``argmax_i α_{l,j,i}`` without noise, nodes no task path reaches are pruned, and the
tree is exported with :meth:`BranchConfig.from_parents` to ``branch_config.json``, next to the search log
``search_log.jsonl`` (temperature, losses and every child's parent probabilities over time).

Logits instead of probabilities: the paper stores probabilities ``θ`` and uses ``log θ`` (Eq. 4) with a
learning rate of 1e-7 on the synthetic data. We learn the logits ``α = log θ`` (up to a constant) with
Adam, whose step is ~``lr`` in logit units whatever the gradient scale; 1e-7 would not move them at all.
The default ``--arch-lr 0.01`` lets a logit move by up to ~90 over the 9000 post-warm-up steps of the
synthetic search, enough to make a decision, without deciding in the first few hundred.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from branchsweep.arch import BranchConfig
from branchsweep.atomic import write_text
from branchsweep.backbones import BackboneSpec
from branchsweep.config import to_dict
from branchsweep.errors import ConfigError
from branchsweep.loop import (
    Checkpoint,
    ResumableLoop,
    Runtime,
    TrainStep,
    check_lr_schedule,
    lr_factor,
    to_floats,
    weighted_loss,
)
from branchsweep.registry import Registry
from branchsweep.search.base import SEARCH_METHODS, SearchContext, SearchMethod, SearchResult, setting
from branchsweep.search.gumbel import gumbel_noise
from branchsweep.search.schedules import SCHEDULES, make_schedule
from branchsweep.tasks import Task

CHECKPOINT_NAME = "ltb_checkpoint.pt"
LOG_NAME = "search_log.jsonl"
#: Settings that say how a search runs, not what it computes: a resumed search may change them.
RUN_SETTINGS = ("log_every", "checkpoint_every")


# ---------------------------------------------------------------------------------------------- config
@dataclass
class LTBConfig:
    """Learning-to-Branch search settings; defaults are the paper's synthetic setting (Section 4.1).

    ``child_nodes``: nodes per backbone layer; ``"T"`` stands for the number of tasks; an integer
    ``k`` means ``k`` nodes in every layer but the last, which has one node per task; None means
    ``[3, …, 3, T]``. ``warmup_iterations`` None means 10% of ``iterations`` (the paper's 50 of 500
    epochs). ``tau_unit``: the schedule's step counts iterations or epochs.
    """

    child_nodes: list[int | str] | int | str | None = setting(
        None, "child nodes per layer, last = T (tasks), e.g. 3,3,3,T, one count k for k,...,k,T, or a tree "
              "name (vgg, deep_wide, synthetic; default 3,...,3,T)", type=lambda text: _tree_flag(text))
    epochs: float = setting(500.0, "search length in epochs of the training split (paper: 500 synthetic, "
                                   "30 CelebA); --iterations overrides it")
    iterations: int | None = setting(None, "search iterations (default: --epochs worth of batches)")
    warmup_epochs: float | None = setting(None, "epochs before the logits are trained (default 10%% of the "
                                                "search: the paper's 50 of 500; CelebA: 2)")
    warmup_iterations: int | None = setting(None, "iterations before the logits are trained (overrides "
                                                  "--warmup-epochs)")
    batch_size: int = setting(100, "batch size of the search")
    lr: float = setting(1e-3, "learning rate of the weights (Adam)")
    arch_lr: float = setting(0.01, "learning rate of the branching logits (Adam)")
    weight_decay: float = setting(0.0, "Adam weight decay of the weights")
    lr_schedule: str = setting("constant", "lr decay of both optimisers (branchsweep.loop.LR_SCHEDULES; paper, "
                                           "CelebA: exponential)")
    lr_gamma: float = setting(0.97, "lr decay factor (exponential/step)")
    lr_every_epochs: float = setting(2.4, "epochs between lr decays (exponential/step)")
    schedule: str = setting("inverse_sqrt", "temperature schedule")
    tau0: float = setting(50.0, "initial temperature")
    tau1: float | None = setting(None, "final temperature (schedules that have one)")
    tau_unit: str = setting("iteration", "the temperature schedule counts iterations (paper, synthetic) or "
                                         "epochs (CelebA)", choices=("iteration", "epoch"))
    log_every: int = setting(0, "iterations between search-log records (0: 1%% of the search)")
    checkpoint_every: int = setting(0, "iterations between resumable checkpoints (0: only at the end)")

    def validate(self) -> None:
        for name in ("iterations", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"ltb: --{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.epochs > 0:
            raise ConfigError(f"ltb: --epochs must be > 0, got {self.epochs}")
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"ltb: --warmup-epochs must be in [0, epochs={self.epochs:g}), got {self.warmup_epochs}")
        if self.iterations is not None and self.warmup_iterations is not None \
                and not 0 <= self.warmup_iterations < self.iterations:
            raise ConfigError(
                f"ltb: --warmup-iterations must be in [0, iterations={self.iterations}), got {self.warmup_iterations}"
            )
        if self.warmup_iterations is not None and self.warmup_iterations < 0:
            raise ConfigError(f"ltb: --warmup-iterations must be >= 0, got {self.warmup_iterations}")
        check_lr_schedule(self.lr_schedule, self.lr_gamma, self.lr_every_epochs)
        for name in ("lr", "arch_lr", "tau0"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"ltb: --{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.log_every < 0 or self.checkpoint_every < 0:
            raise ConfigError("ltb: --weight-decay, --log-every and --checkpoint-every must be >= 0")
        if self.tau_unit not in ("iteration", "epoch"):
            raise ConfigError(f"ltb: --tau-unit must be 'iteration' or 'epoch', got {self.tau_unit!r}")
        make_schedule(self.schedule, self.tau0, self.tau1)
        if isinstance(self.child_nodes, str):
            tree_counts(self.child_nodes)
        elif isinstance(self.child_nodes, int) and not isinstance(self.child_nodes, bool):
            if self.child_nodes < 1:
                raise ConfigError(f"ltb: --child-nodes must be >= 1, got {self.child_nodes}")
        elif self.child_nodes is not None:
            for c in self.child_nodes:
                if c != "T" and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
                    raise ConfigError(f"ltb: --child-nodes entries must be positive integers or T, got {c!r}")

    def length(self, per_epoch: int) -> tuple[int, int]:
        """``(iterations, warm-up iterations)`` for ``per_epoch`` batches per epoch of the training split.

        >>> LTBConfig().length(20)  # the paper's synthetic run: 500 epochs of 2000 samples, batch 100
        (10000, 1000)
        >>> LTBConfig(epochs=30, warmup_epochs=2).length(100), LTBConfig(iterations=300).length(20)
        ((3000, 200), (300, 30))
        """
        total = self.iterations if self.iterations is not None else max(1, round(self.epochs * per_epoch))
        if self.warmup_iterations is not None:
            warmup = self.warmup_iterations
        elif self.warmup_epochs is not None:
            warmup = round(self.warmup_epochs * per_epoch)
        else:
            warmup = total // 10
        if not 0 <= warmup < total:
            raise ConfigError(f"ltb: the warm-up ({warmup} iterations) must be shorter than the search ({total})")
        return total, warmup


def resolve_child_nodes(child_nodes: Sequence[int | str] | int | None, num_layers: int, num_tasks: int,
                        what: str = "the backbone has {n} branchable layers") -> list[int]:
    """Child-node counts per branching layer, checked against their number and the task count.

    ``num_layers`` is the number of branching layers: every layer of the backbone, or, with
    ``--branch-points``, one per branch point (``what`` words the error).

    >>> resolve_child_nodes([3, 3, 3, "T"], 4, 15)
    [3, 3, 3, 15]
    >>> resolve_child_nodes(None, 3, 5)
    [3, 3, 5]
    >>> resolve_child_nodes(2, 4, 3)
    [2, 2, 2, 3]
    """
    if child_nodes is None:
        child_nodes = 3
    if isinstance(child_nodes, str):
        child_nodes = tree_counts(child_nodes)
    if isinstance(child_nodes, int):
        child_nodes = [child_nodes] * (num_layers - 1) + ["T"]
    counts = [num_tasks if c == "T" else int(c) for c in child_nodes]
    if len(counts) != num_layers:
        raise ConfigError(
            f"--child-nodes has {len(counts)} entries but {what.format(n=num_layers)}"
        )
    if any(c < 1 for c in counts):
        raise ConfigError(f"--child-nodes entries must be >= 1, got {counts}")
    if counts[-1] != num_tasks:
        raise ConfigError(
            f"--child-nodes: the last layer needs one node per task ({num_tasks}), got {counts[-1]} (use T)"
        )
    return counts


#: Named child-node trees (the paper's), usable wherever a tree is given (``--child-nodes vgg``, a sweep's
#: categorical of trees): one count per backbone layer, ``"T"`` = the number of tasks.
TREES: Registry[list[int | str]] = Registry("child-node tree")
TREES.register("vgg", [3, 3, 5, 5, 10, 20, 30, "T"], help="LearnToBranch-VGG, CelebA (Section 4.2): 8 branch points")
TREES.register("deep_wide", [2, 4, 8, 16, "T"], help="LearnToBranch-Deep-Wide, CelebA (Section 4.2): 5 conv layers")
TREES.register("synthetic", [3, 3, 3, 3, "T"],
               help="Figure 3 network (mlp_select): 4 FC blocks of 3 child nodes, then one pick per task")


def tree_counts(value: int | str | Sequence[int | str]) -> int | list[int | str]:
    """A tree as :class:`LTBConfig` takes it from a count ``k``, a list, a name of :data:`TREES` or a
    comma-separated spec.

    >>> tree_counts("deep_wide"), tree_counts("2,2,T"), tree_counts(3)
    ([2, 4, 8, 16, 'T'], [2, 2, 'T'], 3)
    """
    if isinstance(value, str):
        if value in TREES:
            return list(TREES.get(value))
        try:
            return parse_child_nodes(value)
        except argparse.ArgumentTypeError as err:
            raise ConfigError(f"{err} (or a tree name: {', '.join(TREES.names())})") from None
    if isinstance(value, int):
        return value
    return list(value)


def _tree_flag(text: str) -> list[int | str] | str:
    """``--child-nodes``: a tree name stays a name (resolved by :func:`resolve_child_nodes`), else a list."""
    if text in TREES:
        return text
    try:
        return parse_child_nodes(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err} (or a tree name: {', '.join(TREES.names())})") from None


def parse_child_nodes(text: str) -> list[int | str]:
    """``"2,4,8,16,T"`` -> ``[2, 4, 8, 16, "T"]`` (argparse type)."""
    out: list[int | str] = []
    for item in (t.strip() for t in text.split(",")):
        if item.upper() == "T":
            out.append("T")
            continue
        try:
            out.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--child-nodes expects integers or T, got {item!r}") from None
    return out


# --------------------------------------------------------------------------------------------- network
def straight_through_select(
    parents: Sequence[torch.Tensor], logits: torch.Tensor, tau: float, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Hard-forward / soft-backward parent selection (Eq. 4 and 5).

    ``d̃ = softmax((α + ε)/τ)``, ``i* = argmax(α + ε)``; returns ``y_{i*} + Σ_i (d̃_i − sg(d̃_i)) y_i`` and
    ``i*``. The value equals ``parents[i*]`` bit for bit; ``∂/∂α`` is the Gumbel-softmax gradient.

    >>> y = [torch.ones(2), 2 * torch.ones(2)]
    >>> x, i = straight_through_select(y, torch.tensor([0.0, 50.0]), tau=1.0)
    >>> i, x.tolist()
    (1, [2.0, 2.0])
    """
    scores = logits + gumbel_noise(logits, generator)
    index = int(scores.argmax())
    soft = F.softmax(scores / tau, dim=0)
    delta = soft - soft.detach()  # exact zeros in value, the relaxed gradient in the backward pass
    correction = sum(delta[i] * y for i, y in enumerate(parents))
    return parents[index] + correction, index


def layer_counts(point_counts: Sequence[int], points: Sequence[int] | None, num_layers: int) -> list[int]:
    """Child nodes per backbone layer from the counts per branch point: one node on the shared layers before
    the first branch point, a branch point's count on its layers up to the next one.

    >>> layer_counts([2, 4], [1, 3], 5)
    [1, 2, 2, 4, 4]
    """
    from branchsweep.tree_space import check_branch_points, segments

    if len(point_counts) != len(check_branch_points(points, num_layers)):
        raise ConfigError(f"{len(point_counts)} child-node counts for {len(check_branch_points(points, num_layers))} "
                          "branch points")
    out = [1] * num_layers
    for (start, end), count in zip(segments(points, num_layers), point_counts, strict=True):
        out[start:end] = [count] * (end - start)
    return out


def resolve_tree(child_nodes: Sequence[int | str] | int | None, points: Sequence[int] | None, num_layers: int,
                 num_tasks: int) -> list[int]:
    """The counts per branch point (:func:`resolve_child_nodes`); with ``--branch-points`` one entry per point."""
    from branchsweep.tree_space import check_branch_points

    n = len(check_branch_points(points, num_layers))
    what = ("the backbone has {n} branchable layers" if n == num_layers
            else "--branch-points gives {n} branch points (one count per branch point)")
    return resolve_child_nodes(child_nodes, n, num_tasks, what)


class BranchingNetwork(nn.Module):
    """All child nodes of all layers plus one head per task (see the module docstring).

    ``nodes[l][j]``: child ``j`` of layer ``l``; ``logits[l]``: ``[J_l, J_{l-1}]`` (layer 0: ``[J_0, 1]``,
    unused). In training mode children sample their parent (Eq. 4/5); in eval mode they take the
    argmax without noise (Eq. 7). ``last_choice`` records the parents used by the last forward pass.
    """

    def __init__(self, spec: BackboneSpec, tasks: Sequence[Task], child_nodes: Sequence[int],
                 branch_points: Sequence[int] | None = None) -> None:
        super().__init__()
        from branchsweep.tree_space import check_branch_points

        points = check_branch_points(branch_points, spec.num_layers)
        self.point_counts = resolve_tree(list(child_nodes), points, spec.num_layers, len(tasks))
        counts = layer_counts(self.point_counts, points, spec.num_layers)
        #: Layers whose children choose a parent (branch points after the input); on the others child ``j``
        #: reads node ``j`` of the layer before (same count), so the tree splits only at branch points.
        self.choosing = frozenset(p for p in points if p > 0)
        self.spec = spec
        self.task_names = [t.name for t in tasks]
        self.counts = counts
        self.stem = spec.stem()
        self.nodes = nn.ModuleList(nn.ModuleList(spec.layers[layer]() for _ in range(c)) for layer, c in enumerate(counts))
        self.logits = nn.ParameterList(
            nn.Parameter(torch.zeros(c, 1 if layer == 0 else counts[layer - 1])) for layer, c in enumerate(counts)
        )
        self.heads = nn.ModuleDict({t.name: spec.make_head(t) for t in tasks})
        self.tau = 1.0
        self.generator: torch.Generator | None = None
        self.last_choice: list[list[int]] = []

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.logits}
        return [p for p in self.parameters() if id(p) not in arch]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [a for layer, a in enumerate(self.logits) if layer in self.choosing]

    def probabilities(self) -> list[torch.Tensor]:
        """``softmax(α)`` per layer (row ``j``: child ``j``'s distribution over its parents)."""
        return [F.softmax(a.detach(), dim=1) for a in self.logits]

    def selected_parents(self) -> list[list[int]]:
        """Eq. 7: every child's most probable parent (layer 0: the stem, index 0)."""
        return [[0] * self.counts[0]] + [a.detach().argmax(dim=1).tolist() if layer in self.choosing
                                         else list(range(self.counts[layer]))
                                         for layer, a in enumerate(self.logits) if layer > 0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out_size = tuple(x.shape[2:]) if x.dim() == 4 else None
        stem = self.stem(x)
        outs: list[torch.Tensor] = [node(stem) for node in self.nodes[0]]
        choice: list[list[int]] = [[0] * self.counts[0]]
        history = [outs]
        for layer in range(1, len(self.counts)):
            row, new = [], []
            for j, node in enumerate(self.nodes[layer]):
                if layer not in self.choosing:
                    i, inp = j, outs[j]
                elif self.training:
                    inp, i = straight_through_select(outs, self.logits[layer][j], self.tau, generator=self.generator)
                else:
                    i = int(self.logits[layer][j].argmax())
                    inp = outs[i]
                row.append(i)
                new.append(node(inp))
            choice.append(row)
            outs = new
            history.append(outs)
        self.last_choice = choice
        results = {}
        for t, name in enumerate(self.task_names):
            node, skips = t, {}
            for layer in range(len(self.counts) - 1, -1, -1):  # walk task t's sampled path up to the stem
                if layer in self.spec.skip_layers:
                    skips[layer] = history[layer][node]
                node = choice[layer][node]
            results[name] = self.heads[name](outs[t], [skips[s] for s in self.spec.skip_layers], out_size)
        return results

    def export(self) -> BranchConfig:
        """The selected tree (Eq. 7) with unreached nodes pruned."""
        return BranchConfig.from_parents(self.task_names, self.selected_parents())


# ---------------------------------------------------------------------------------------------- search
def _val_loss(model: BranchingNetwork, dataset, tasks: Sequence[Task], runtime: Runtime, batch_size: int) -> float:
    """Mean total loss of the argmax architecture (Eq. 7) on the validation split."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in runtime.loader(dataset, batch_size):
            batch = runtime.batch(batch)
            with runtime.autocast():
                loss, _ = weighted_loss(model(batch["image"]), batch, tasks)
            bs = batch["image"].shape[0]
            total, n = total + float(loss) * bs, n + bs
    model.train()
    return total / max(n, 1)


def search_checkpoint(out_dir: Path, cfg: LTBConfig, ctx: SearchContext, child_nodes: Sequence[int],
                      iterations: int, warmup: int) -> Checkpoint:
    """The search checkpoint in ``out_dir``: it belongs to one tree (``child_nodes``, resolved), task list,
    seed, backbone and length (``iterations`` and ``warmup``, resolved from epochs) and to the settings
    that define the result (every other field of ``cfg`` but :data:`RUN_SETTINGS`), so resuming it with
    others is a :class:`ConfigError`."""
    lengths = ("iterations", "warmup_iterations", "epochs", "warmup_epochs")
    settings = {k: v for k, v in to_dict(cfg).items() if k not in RUN_SETTINGS + lengths}
    return Checkpoint(Path(out_dir) / CHECKPOINT_NAME, "Learning-to-Branch", {
        **settings, "child_nodes": list(child_nodes), "branch_points": list(ctx.branch_points or ()),
        "tasks": [t.name for t in ctx.tasks], "seed": ctx.seed,
        "backbone": ctx.spec.cache_key(), "iterations": iterations, "warmup_iterations": warmup})


def run_search(cfg: LTBConfig, ctx: SearchContext, stop_at: int | None = None) -> SearchResult | None:
    """Train weights and branching distributions jointly, export the argmax tree (module docstring).

    ``stop_at``: checkpoint after that many iterations and return None (a paused search, which
    ``ctx.resume`` continues exactly where it stopped). Resuming a checkpoint of other settings
    (:func:`search_checkpoint`: another tree, other tasks, seed …) is a :class:`ConfigError`.
    """
    start = time.perf_counter()
    runtime = ctx.runtime()
    tasks = list(ctx.tasks)
    counts = resolve_tree(cfg.child_nodes, ctx.branch_points, ctx.spec.num_layers, len(tasks))
    torch.manual_seed(ctx.seed)
    model = runtime.prepare(BranchingNetwork(ctx.spec, tasks, counts, ctx.branch_points))
    model.generator = torch.Generator().manual_seed(ctx.seed + 7919)
    w_opt = torch.optim.Adam(model.weight_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    arch_opt = torch.optim.Adam(model.arch_parameters(), lr=cfg.arch_lr)
    schedule = make_schedule(cfg.schedule, cfg.tau0, cfg.tau1)
    train_set = ctx.data.split("train", train=True)
    per_epoch = ctx.data.iterations_per_epoch(cfg.batch_size, len(train_set))  # type: ignore[arg-type]
    iterations, warmup = cfg.length(per_epoch)
    out_dir = Path(ctx.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = search_checkpoint(out_dir, cfg, ctx, counts, iterations, warmup)
    log_every = cfg.log_every or max(1, iterations // 100)
    it0, records = 0, []
    if ctx.resume:
        state = ckpt.load()
        model.load_state_dict(state["model"])
        w_opt.load_state_dict(state["w_opt"])
        arch_opt.load_state_dict(state["arch_opt"])
        model.generator.set_state(state["gumbel_rng"])
        torch.set_rng_state(state["rng"])
        it0, records = state["iteration"], state["records"]

    def save(iteration: int) -> None:
        records[:] = to_floats(records)
        ckpt.save({"model": model.state_dict(), "w_opt": w_opt.state_dict(), "arch_opt": arch_opt.state_dict(),
                   "iteration": iteration, "records": records, "child_nodes": counts,
                   "tasks": model.task_names, "rng": torch.get_rng_state(),
                   "gumbel_rng": model.generator.get_state()})

    total_steps = iterations if cfg.tau_unit == "iteration" else iterations / per_epoch
    step = TrainStep([w_opt, arch_opt], tasks, runtime)
    batches = runtime.batches(train_set, cfg.batch_size, ctx.seed, it0)

    def search_step(it: int) -> dict:
        """One joint update of weights and logits (weights only during the warm-up)."""
        model.tau = schedule(it if cfg.tau_unit == "iteration" else it // per_epoch, total_steps)
        factor = lr_factor(cfg.lr_schedule, it, iterations, per_epoch, gamma=cfg.lr_gamma, every_epochs=cfg.lr_every_epochs)
        for opt, base in ((w_opt, cfg.lr), (arch_opt, cfg.arch_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor
        # During the warm-up the children still sample (every copy is trained) but the logits stay put.
        loss, parts = step(model, runtime.batch(next(batches)), f"in the ltb search at iteration {it}",
                           update=None if it >= warmup else [w_opt])
        if (it + 1) % log_every == 0 or it + 1 == iterations:
            records.append({
                "iteration": it + 1, "epoch": (it + 1) / per_epoch, "tau": model.tau, "warmup": it < warmup,
                "loss": loss, "task_losses": parts,
                "probabilities": [p.tolist() for p in model.probabilities()[1:]],
            })
        return {"tau": float(model.tau), "loss": loss}

    loop = ResumableLoop(iterations, save=save, desc="ltb search", progress=ctx.progress,
                         checkpoint_every=cfg.checkpoint_every, report_every=log_every, on_step=ctx.on_step,
                         flush=lambda end: step.flush(f"in the ltb search before iteration {end}"))
    model.train()
    if not loop.run(it0, search_step, stop_at):
        return None
    val_loss = _val_loss(model, ctx.data.split("val", train=False), tasks, runtime, max(cfg.batch_size, 64))
    config = model.export()
    config.save(out_dir / "branch_config.json")
    header = {"method": "ltb", "config": to_dict(cfg), "iterations": iterations, "warmup_iterations": warmup,
              "iterations_per_epoch": per_epoch, "child_nodes": counts, "tasks": model.task_names,
              "layer_names": list(ctx.spec.layer_names), "seed": ctx.seed}
    summary = {"final": True, "val_loss": val_loss, "parents": model.selected_parents(),
               "probabilities": [p.tolist() for p in model.probabilities()[1:]],
               "branch_config": config.to_dict(), "arch_hash": config.arch_hash()}
    log_path = write_text(out_dir / LOG_NAME, "".join(json.dumps(rec) + "\n"
                                                       for rec in [{"header": header}, *records, summary]))
    return SearchResult(config=config, log_path=log_path, wall_time_s=time.perf_counter() - start,
                        info={"val_loss": val_loss, "child_nodes": counts, "parents": model.selected_parents(),
                              "iterations": iterations})


# ----------------------------------------------------------------------------------------- grouping
def leaf_groups(config: BranchConfig) -> list[int]:
    """Per task, the index of its group in the last *shared* layer (the 'leaf branch' of Figure 3).

    The last layer of a Learning-to-Branch tree has one node per task, so tasks are grouped by the
    layer before it (or by the last layer when the tree has a single layer).
    """
    layer = max(0, config.num_layers - 2)
    return [config.group_of(layer, t) for t in range(config.num_tasks)]


def adjusted_rand_index(a: Sequence[int], b: Sequence[int]) -> float:
    """Adjusted Rand index of two labelings (Hubert & Arabie 1985): 1 identical, ~0 chance level.

    ``ARI = (Σ_ij C(n_ij,2) − E) / (½(Σ_i C(a_i,2) + Σ_j C(b_j,2)) − E)`` with ``E = Σ_i C(a_i,2) Σ_j C(b_j,2) / C(n,2)``,
    ``n_ij`` the contingency table and ``a_i``, ``b_j`` its marginals; 1.0 when both labelings are
    trivial (all in one group, or all apart) and equal.

    >>> adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7])
    1.0
    >>> round(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), 3)
    -0.5
    """
    if len(a) != len(b):
        raise ValueError("labelings differ in length")
    _, ia = np.unique(np.asarray(a), return_inverse=True)
    _, ib = np.unique(np.asarray(b), return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) // 2).sum())

    index, sa, sb = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    n = len(a)
    expected = sa * sb / (n * (n - 1) / 2) if n > 1 else 0.0
    maximum = (sa + sb) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


# ------------------------------------------------------------------------------------------- method
@dataclass
class LTBSpace:
    """What a sweep samples for Learning to Branch: the tree, the temperature schedule and τ0.

    The tree is sampled from the first of these that is set: ``trees`` (a categorical of tree names of
    :data:`TREES` or specs such as ``"3,3,5,5,10,20,30,T"``), ``per_block`` (one ``(low, high)`` integer
    range per layer but the last, which is always ``T``), else ``child_nodes`` (``k`` for
    ``[k, …, k, T]``). τ0 is sampled log-uniformly (a range ``(x, x)`` fixes it).
    """

    child_nodes: tuple[int, ...] = (1, 2, 3)
    trees: tuple[str, ...] = ()
    per_block: tuple[tuple[int, int], ...] = ()
    schedules: tuple[str, ...] = ("inverse_sqrt", "inverse", "constant")
    tau0: tuple[float, float] = (5.0, 100.0)

    def validate(self) -> None:
        for s in self.schedules:
            SCHEDULES.get(s)
        lo, hi = self.tau0
        if not 0 < lo <= hi:
            raise ConfigError(f"ltb search space tau0: need 0 < low <= high, got ({lo}, {hi})")
        if not self.child_nodes or any(k < 1 for k in self.child_nodes):
            raise ConfigError("ltb search space child_nodes: need counts >= 1")
        for tree in self.trees:
            counts = tree_counts(tree)
            if isinstance(counts, int) or not counts or counts[-1] != "T":
                raise ConfigError(f"ltb search space trees: {tree!r} must be a tree name or a spec ending in T")
        for block in self.per_block:
            if len(block) != 2 or not 1 <= block[0] <= block[1]:
                raise ConfigError(f"ltb search space per_block: need (low, high) with 1 <= low <= high, got {block!r}")

    def suggest(self, trial: Any, prefix: str) -> None:
        if self.trees:
            trial.suggest_categorical(f"{prefix}tree", list(self.trees))
        elif self.per_block:
            for i, (lo, hi) in enumerate(self.per_block):
                trial.suggest_int(f"{prefix}child_nodes_{i + 1}", lo, hi)
        else:
            trial.suggest_categorical(f"{prefix}child_nodes", list(self.child_nodes))
        trial.suggest_categorical(f"{prefix}schedule", list(self.schedules))
        trial.suggest_float(f"{prefix}tau0", *self.tau0, log=True)


def space_settings(sampled: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`LTBConfig` field values from a sample of :class:`LTBSpace`.

    >>> space_settings({"tree": "vgg", "tau0": 10.0})["child_nodes"]
    [3, 3, 5, 5, 10, 20, 30, 'T']
    >>> space_settings({"child_nodes_1": 2, "child_nodes_2": 4, "schedule": "inverse"})
    {'schedule': 'inverse', 'child_nodes': [2, 4, 'T']}
    """
    out = {k: v for k, v in sampled.items() if k != "tree" and not k.startswith("child_nodes_")}
    if "tree" in sampled:
        out["child_nodes"] = tree_counts(sampled["tree"])
    blocks = sorted((int(k.rpartition("_")[2]), v) for k, v in sampled.items() if k.startswith("child_nodes_"))
    if blocks:
        out["child_nodes"] = [int(v) for _, v in blocks] + ["T"]
    return out


class LTBMethod(SearchMethod):
    """Learning to Branch: Gumbel-softmax parent selection in tree-structured branching blocks."""

    name = "ltb"
    config_type = LTBConfig
    space_type = LTBSpace
    divides_lr_by_sharing = False  # the paper retrains with one global lr (a BMTAS convention otherwise)

    def settings(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        return space_settings(sampled)

    def run(self, cfg: LTBConfig, ctx: SearchContext) -> SearchResult:
        result = run_search(cfg, ctx)
        assert result is not None  # only a stop_at pauses a search
        return result


SEARCH_METHODS.register("ltb", LTBMethod())
