"""GPU throughput of the BMTAS search and retraining at the paper's settings, and the projected wall time.

Settings of the paper (BMTAS supplement A; the authors' code github.com/brdav/bmtas): the search runs
at 256×256 (PASCAL-Context at half resolution), batch 16, 2 000 warm-up iterations, then 40 000
iterations of 4 weight steps per α step (80/20 split); retraining runs at 512×512, batch 16, 40 000
iterations. Data: the embedded ``synthetic-dense`` scenes at those resolutions (no data set needed),
five tasks mirroring PASCAL-Context's (semseg, parts ≈ human parts, sal, normals, edge). A pool of
batches is rendered once and kept on the device, so the numbers are the model's throughput (in a real
run, DataLoader workers with pinned memory prepare the next batches meanwhile).

Rows (each a *setting*; ``--backbones``, ``--phases``, ``--routing``, ``--amp`` choose the subset):

* ``warm-up``: candidate ``t`` trained on task ``t`` (discrete routing), one joint step;
* ``search soft`` / ``search hard``: one *iteration* = a weight step plus a quarter of an α step,
  timed over whole cycles (an α step and 4 weight steps); soft steps run one task after the other
  (the paper's sequential update, ``per_task``), hard steps jointly; the steps are the search's own
  (:class:`branchsweep.loop.TrainStep`, :func:`branchsweep.search.bmtas.arch_step`);
  ``search soft-joint`` (``--phases soft-joint``, not in the default set) runs the soft steps as one
  joint pass of all tasks (faster where memory allows);
* ``retrain shared`` / ``retrain single``: the cheapest and the most expensive tree (every found
  architecture lies between them);
* ``routing``: ``routed`` is the :class:`~branchsweep.search.supergraph.Supergraph` (only candidates
  with a non-zero weight, candidates of one stream fused into wide calls); ``naive`` runs all
  candidates for every task (:class:`~branchsweep.search.supergraph.NaiveSupergraph`, same weights);
* ``amp``: ``off`` (float32; cuDNN may use TF32), ``bf16`` or ``fp16`` (with a GradScaler) autocast.

Every setting runs channels-last with ``cudnn.benchmark`` (:class:`branchsweep.loop.Runtime`), first
one untimed warm-up cycle, then ``--cycles`` timed cycles between ``torch.cuda.synchronize()`` calls;
the peak memory is ``torch.cuda.max_memory_allocated()`` after a reset per setting. The table
(markdown) is printed and, with ``--out FILE``, written as it grows. The projection multiplies the
measured times by the schedule (2 000 warm-up + 40 000 search + 40 000 retrain iterations) and puts
it next to the paper's "3.5 days on one V100 for PASCAL-Context".

One invocation with the defaults is sized for a few minutes on an H100 (``--budget`` seconds, default
300, stops starting new settings); ``--tiny`` runs narrow networks at 32×32 on any device in seconds
(the test suite runs it on the CPU).

Run: ``.venv/bin/python benchmarks/bench_gpu.py [--backbones mobilenet_v2,resnet50]
[--phases warm-up,soft,hard,retrain] [--routing routed,naive] [--amp off,bf16] [--compile]
[--out gpu.md] [--tiny]``. Bad arguments end with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from branchsweep.arch import BranchConfig
from branchsweep.backbones import BackboneSpec, create_backbone
from branchsweep.config import DataConfig, TrainConfig
from branchsweep.data import create_data
from branchsweep.errors import ConfigError
from branchsweep.loop import AMP_MODES, Runtime, TrainStep
from branchsweep.madds import madds_table
from branchsweep.network import BranchedNetwork
from branchsweep.search.bmtas import BMTASConfig, arch_step, resource_scale, weight_optimizer
from branchsweep.search.supergraph import (
    NaiveSupergraph,
    Supergraph,
    gumbel_softmax_weights,
    reset_batchnorm_stats,
)
from branchsweep.train import make_optimizer

TASKS = ("semseg", "parts", "sal", "normals", "edge")
BACKBONES = ("mobilenet_v2", "resnet50")
PHASES = ("warm-up", "soft", "hard", "retrain", "soft-joint")
DEFAULT_PHASES = ("warm-up", "soft", "hard", "retrain")
ROUTINGS = ("routed", "naive")
#: The paper's schedule and hardware (BMTAS supplement A; "3.5 days on one V100" for PASCAL-Context).
PAPER = {"warmup": 2000, "search": 40000, "retrain": 40000, "search_size": 256, "retrain_size": 512,
         "batch": 16, "days": 3.5, "gpu": "one V100"}
TINY = {"search_size": 32, "retrain_size": 32, "batch": 2, "width": {"mobilenet_v2": 0.1, "resnet50": 0.0625}}
WEIGHT_STEPS_PER_ARCH = 4
TAU = 1.0


class UsageError(Exception):
    """A bad command line: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(message)


@dataclass(frozen=True)
class Setting:
    """One row: what runs (phase, mode, routing or tree) and how (amp, compile)."""

    backbone: str
    phase: str  # warm-up | search | retrain
    variant: str  # soft/hard (search), routed/naive (warm-up, search), shared/single (retrain)
    routing: str = "routed"
    amp: str = "off"
    compiled: bool = False

    def label(self) -> str:
        what = {"warm-up": "warm-up", "search": f"search {self.variant}",
                "retrain": f"retrain {self.variant}"}[self.phase]
        return what + (" (compiled)" if self.compiled else "")


@dataclass
class Result:
    setting: Setting
    ms: float | None  # per iteration
    peak_gib: float | None
    note: str = ""


# ----------------------------------------------------------------------------------------- arguments
def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """A comma-separated subset of ``allowed`` (:class:`UsageError` otherwise)."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if not items or bad:
        raise UsageError(f"--{what}: {bad[0] if bad else text!r} is not one of {', '.join(allowed)}")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--phases", default=",".join(DEFAULT_PHASES),
                   help=f"any of {', '.join(PHASES)} (soft-joint: soft steps as one joint pass, more memory)")
    p.add_argument("--routing", default=",".join(ROUTINGS), help="routed and/or naive (warm-up and search)")
    p.add_argument("--amp", default="off,bf16", help=f"any of {', '.join(AMP_MODES)}")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd retraining")
    p.add_argument("--cycles", type=int, default=1, help="timed cycles per setting (after one untimed)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cuda:N or cpu")
    p.add_argument("--budget", type=float, default=300.0, help="seconds after which no new setting starts")
    p.add_argument("--batch", type=int, default=PAPER["batch"], help="batch size (the paper's: 16)")
    p.add_argument("--search-size", type=int, default=PAPER["search_size"], help="search resolution (256)")
    p.add_argument("--retrain-size", type=int, default=PAPER["retrain_size"], help="retrain resolution (512)")
    p.add_argument("--tiny", action="store_true", help="narrow networks at 32×32, batch 2 (any device, seconds)")
    p.add_argument("--out", help="also write the markdown table here")
    return p


def plan(args: argparse.Namespace) -> list[Setting]:
    """The settings to run: per backbone the routed search rows, the retraining rows, then the naive
    rows (what the projection needs comes first, should ``--budget`` run out)."""
    backbones = parse_list(args.backbones, BACKBONES, "backbones")
    phases = parse_list(args.phases, PHASES, "phases")
    routings = parse_list(args.routing, ROUTINGS, "routing")
    amps = parse_list(args.amp, AMP_MODES, "amp")
    search = [p for p in phases if p != "retrain"]

    def supergraph_rows(bb: str, routing: str) -> list[Setting]:
        return [Setting(bb, "warm-up", "ops", routing, amp) if p == "warm-up" else Setting(bb, "search", p, routing, amp)
                for amp in amps for p in search]

    out = []
    for bb in backbones:
        if "routed" in routings:
            out += supergraph_rows(bb, "routed")
        if "retrain" in phases:
            for amp in amps:
                out += [Setting(bb, "retrain", tree, amp=amp) for tree in ("shared", "single")]
                if args.compile:
                    out += [Setting(bb, "retrain", tree, amp=amp, compiled=True) for tree in ("shared", "single")]
        if "naive" in routings:
            out += supergraph_rows(bb, "naive")
    return out


# -------------------------------------------------------------------------------------------- setup
def make_spec(backbone: str, size: int, tiny: bool) -> BackboneSpec:
    width = TINY["width"][backbone] if tiny else 1.0  # type: ignore[index]
    return create_backbone(backbone, width=width, input_size=size)


def batch_pool(size: int, batch: int, runtime: Runtime) -> tuple[list[dict], list]:
    """Two batches of synthetic-dense scenes at ``size`` on the device (channels-last images), and the tasks."""
    data = create_data(DataConfig(dataset="synthetic-dense", size=size, train_samples=2 * batch, seed=0))
    tasks = data.select_tasks(list(TASKS))
    split = data.split("train", train=True)
    items = [split[i] for i in range(2 * batch)]
    pool = []
    for b in range(2):
        chunk = items[b * batch:(b + 1) * batch]
        pool.append(runtime.batch({k: torch.stack([it[k] for it in chunk]) for k in ["image", *TASKS]}))
    return pool, tasks


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------- one setting
def supergraph_cycle(model: Supergraph, setting: Setting, tasks, runtime: Runtime, pool: list[dict],
                     table) -> tuple[Callable[[int], None], int]:
    """A function running one cycle of the warm-up or the search, and the iterations per cycle."""
    hard = setting.variant == "hard"
    cfg = BMTASConfig(hard=hard, per_task=setting.variant == "soft", batch_size=pool[0]["image"].shape[0])
    w_opt, w_sched = weight_optimizer(model, cfg, cfg.iterations)
    step = TrainStep([w_opt], tasks, runtime, schedulers=[w_sched], per_task=cfg.per_task)
    if setting.phase == "warm-up":
        ops = model.warmup_ops()

        def warm(i: int) -> None:
            step(lambda x: model(x, ops=ops), pool[i % 2])

        return warm, 1
    arch_opt = torch.optim.Adam([model.alpha], lr=cfg.arch_lr, weight_decay=cfg.arch_weight_decay)
    layer_madds = table.layer_tensor().to(runtime.device)
    scale = resource_scale(cfg, layer_madds, len(tasks))
    gen = torch.Generator(device=runtime.device).manual_seed(0)
    ctx = SimpleNamespace(tasks=tasks)

    def cycle(i: int) -> None:
        arch_step(model, ctx, cfg, pool[0], runtime, TAU, gen, layer_madds, scale, "exact", arch_opt)  # type: ignore[arg-type]
        reset_batchnorm_stats(model)
        w_opt.state.clear()
        for j in range(WEIGHT_STEPS_PER_ARCH):
            w = gumbel_softmax_weights(model.alpha.detach(), TAU, hard, gen)
            step(lambda x, tasks=None, w=w: model(x, weights=w, tasks=tasks), pool[(i + j) % 2])

    return cycle, WEIGHT_STEPS_PER_ARCH


def retrain_cycle(spec: BackboneSpec, setting: Setting, tasks, runtime: Runtime, pool: list[dict]
                  ) -> tuple[Callable[[int], None], int]:
    names = [t.name for t in tasks]
    tree = BranchConfig.single(names, spec.num_layers) if setting.variant == "single" else \
        BranchConfig.shared(names, spec.num_layers)
    torch.manual_seed(0)
    model = runtime.prepare(BranchedNetwork(spec, tasks, tree)).train()
    cfg = TrainConfig()
    opt = make_optimizer(model, cfg)
    step = TrainStep([opt], tasks, runtime)
    forward = torch.compile(model) if setting.compiled else model

    def cycle(i: int) -> None:
        step(forward, pool[i % 2])

    return cycle, 1


def measure(cycle: Callable[[int], None], per_cycle: int, cycles: int, device: torch.device) -> tuple[float, float | None]:
    """ms per iteration over ``cycles`` timed cycles (after one untimed), and the peak memory in GiB."""
    cycle(0)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for i in range(cycles):
        cycle(i + 1)
    sync(device)
    ms = (time.perf_counter() - t0) * 1e3 / (cycles * per_cycle)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return ms, peak


# -------------------------------------------------------------------------------------------- report
def render(results: list[Result], header: str) -> str:
    rows = [header, "", "| backbone | phase | routing | amp | it/s | ms/it | peak GPU memory |", "|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.setting
        routing = s.routing if s.phase != "retrain" else "—"
        if r.ms is None:
            rows.append(f"| {s.backbone} | {s.label()} | {routing} | {s.amp} | — | — | {r.note} |")
            continue
        peak = f"{r.peak_gib:.1f} GiB" if r.peak_gib is not None else "n/a (CPU)"
        rows.append(f"| {s.backbone} | {s.label()} | {routing} | {s.amp} | {1e3 / r.ms:.2f} | {r.ms:.0f} | {peak} |")
    return "\n".join(rows)


def projection(results: list[Result]) -> list[str]:
    """Projected wall time of the paper's schedule per backbone and amp (routed, soft search)."""
    ms = {(r.setting.backbone, r.setting.phase, r.setting.variant, r.setting.routing, r.setting.amp): r.ms
          for r in results if r.ms is not None and not r.setting.compiled}
    lines = []
    for bb, amp in sorted({(k[0], k[4]) for k in ms}):
        warm, soft = ms.get((bb, "warm-up", "ops", "routed", amp)), ms.get((bb, "search", "soft", "routed", amp))
        shared, single = ms.get((bb, "retrain", "shared", "routed", amp)), ms.get((bb, "retrain", "single", "routed", amp))
        if None in (warm, soft, shared, single):
            continue
        base = PAPER["warmup"] * warm + PAPER["search"] * soft  # type: ignore[operator]
        lo = (base + PAPER["retrain"] * shared) / 3.6e6  # type: ignore[operator]
        hi = (base + PAPER["retrain"] * single) / 3.6e6  # type: ignore[operator]
        lines.append(f"- {bb}, amp {amp}: {lo:.1f}–{hi:.1f} h ({lo / 24:.2f}–{hi / 24:.2f} days: warm-up "
                     f"{PAPER['warmup'] * warm / 3.6e6:.1f} h + search {PAPER['search'] * soft / 3.6e6:.1f} h + "  # type: ignore[operator]
                     f"retrain {PAPER['retrain'] * shared / 3.6e6:.1f}–{PAPER['retrain'] * single / 3.6e6:.1f} h) "  # type: ignore[operator]
                     f"vs the paper's {PAPER['days']} days on {PAPER['gpu']}")
    return lines


# ---------------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> list[Result]:
    settings = plan(args)
    if args.cycles < 1:
        raise UsageError(f"--cycles must be >= 1, got {args.cycles}")
    try:
        probe = Runtime(args.device)
        for amp in {s.amp for s in settings}:
            Runtime(args.device, amp)  # fp16 on a CPU and unknown devices fail here, before any work
    except ConfigError as err:
        raise UsageError(str(err)) from None
    device = probe.device
    sizes = (TINY["search_size"], TINY["retrain_size"], TINY["batch"]) if args.tiny else \
        (args.search_size, args.retrain_size, args.batch)
    search_size, retrain_size, batch = sizes
    if min(sizes) < 1 or min(search_size, retrain_size) < 32:
        raise UsageError("--batch must be >= 1 and the sizes >= 32")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    header = (f"{where}; search {search_size}×{search_size}, retrain {retrain_size}×{retrain_size}, batch {batch}, "
              f"{len(TASKS)} tasks ({', '.join(TASKS)}), channels-last, {args.cycles} timed cycle(s) per setting"
              + (" — tiny networks" if args.tiny else ""))
    print(header, flush=True)
    results: list[Result] = []
    start = time.perf_counter()
    pools: dict[int, tuple[list[dict], list]] = {}
    built: dict[str, tuple[BackboneSpec, Supergraph | None, object]] = {}
    for setting in settings:
        if time.perf_counter() - start > args.budget:
            results.append(Result(setting, None, None, "skipped (budget)"))
            continue
        runtime = Runtime(args.device, setting.amp, channels_last=True)
        size = retrain_size if setting.phase == "retrain" else search_size
        if size not in pools:
            pools[size] = batch_pool(size, batch, runtime)
        pool, tasks = pools[size]
        key = f"{setting.backbone}/{setting.phase == 'retrain'}"
        if key not in built:
            built.clear()  # one model at a time on the device
            if device.type == "cuda":
                torch.cuda.empty_cache()
            spec = make_spec(setting.backbone, size, args.tiny)
            model = table = None
            if setting.phase != "retrain":
                table = madds_table(spec, tasks)
                torch.manual_seed(0)
                model = runtime.prepare(Supergraph(spec, tasks)).train()
            built[key] = (spec, model, table)
        spec, model, table = built[key]
        try:
            if setting.phase == "retrain":
                cycle, per = retrain_cycle(spec, setting, tasks, runtime, pool)
            else:
                model.__class__ = NaiveSupergraph if setting.routing == "naive" else Supergraph
                cycle, per = supergraph_cycle(model, setting, tasks, runtime, pool, table)
            ms, peak = measure(cycle, per, args.cycles, device)
            results.append(Result(setting, ms, peak))
        except torch.cuda.OutOfMemoryError:
            results.append(Result(setting, None, None, "out of memory"))
            torch.cuda.empty_cache()
        r = results[-1]
        print(f"  {setting.backbone} {setting.label()} {setting.routing} amp={setting.amp}: "
              + (f"{r.ms:.0f} ms/it" if r.ms is not None else r.note), flush=True)
        if args.out:
            Path(args.out).write_text(render(results, header) + "\n")
    table_md = render(results, header)
    lines = projection(results)
    text = table_md + ("\n\nProjected wall time of the paper's schedule (2 000 warm-up + 40 000 search + 40 000 "
                       "retrain iterations; retrain between the shared and the single tree):\n\n" + "\n".join(lines)
                       if lines else "")
    print("\n" + text, flush=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    try:
        run(build_parser().parse_args(argv))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
