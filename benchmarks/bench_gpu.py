"""GPU throughput and memory of the BMTAS search and the retrain at the paper's settings.

Measures, on synthetic-dense images at the paper's resolution (no data set needed: a few batches are
generated once and cycled on the device, so the numbers are compute, not data loading):

* **search iterations/s** of the MobileNetV2 and ResNet-50 supergraphs with 5 tasks (PASCAL-Context's
  count: semseg, parts, sal, normals, edge) at the search resolution (the paper searches PASCAL at half
  resolution, 256²), batch 16 (MobileNetV2) / 8 (ResNet-50): one iteration = one weight step plus a
  quarter of an α step (the supplement's 80/20 alternation), in the modes ``soft`` (relaxed Gumbel
  weights, one joint pass), ``soft-per-task`` (the same gradients, one task's graph at a time) and
  ``hard`` (straight-through one-hot samples), and ``naive`` (every candidate for every task: the
  routing's baseline);
* **retrain iterations/s** of the Single network at full resolution (512²);
* **peak GPU memory** of each (``torch.cuda.max_memory_allocated`` after a reset), AMP off and bf16;
* the **projected wall time of the paper's schedule** — 2 000 warm-up + 40 000 search iterations +
  40 000 retrain iterations — next to the paper's "3.5 days on one V100 for PASCAL-Context".

    python benchmarks/bench_gpu.py --out gpu.md                 # on a CUDA machine (a few minutes)
    python benchmarks/bench_gpu.py --tiny                       # CPU check of the script itself

``--tiny`` shrinks everything (width 0.1, 32², 2 iterations) so it runs on a CPU in seconds; its numbers
mean nothing. Settings that run out of memory are reported as ``OOM`` and the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import torch

from branchsweep.arch import BranchConfig
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.data import create_data
from branchsweep.factory import build_model, build_spec
from branchsweep.loop import Runtime, TrainStep
from branchsweep.madds import madds_table
from branchsweep.search.base import SearchContext
from branchsweep.search.bmtas import BMTASConfig, _arch_step, _sgd, resource_scale
from branchsweep.search.supergraph import NaiveSupergraph, Supergraph, gumbel_softmax_weights
from branchsweep.train import make_optimizer

TASKS = ["semseg", "parts", "sal", "normals", "edge"]
BATCH = {"mobilenet_v2": 16, "resnet50": 8}
PAPER = {"warmup": 2000, "search": 40000, "retrain": 40000, "v100_days": 3.5}
SEARCH_MODES = ("soft", "soft-per-task", "hard", "naive")


@dataclasses.dataclass
class Setting:
    backbone: str
    kind: str  # a search mode or "retrain"
    amp: str


def _batches(size: int, batch: int, n: int, device: torch.device, channels_last: bool) -> tuple[list[dict], object]:
    data = create_data(DataConfig(dataset="synthetic-dense", size=size, train_samples=batch * n, val_samples=batch,
                                  tasks=TASKS))
    split = data.split("train", train=False)
    out = []
    for b in range(n):
        items = [split[i] for i in range(b * batch, (b + 1) * batch)]
        stacked = {k: torch.stack([it[k] for it in items]) for k in items[0] if torch.is_tensor(items[0][k])}
        out.append(Runtime(str(device), channels_last=channels_last).batch(stacked))
    return out, data


def _timed(step, batches: list[dict], warmup: int, iters: int, device: torch.device) -> tuple[float, float]:
    """Seconds per iteration (after ``warmup`` untimed ones) and peak memory in GiB."""
    cycle = itertools.cycle(batches)
    for _ in range(warmup):
        step(next(cycle))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(iters):
        step(next(cycle))
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = float("nan")
    return (time.perf_counter() - t0) / iters, peak


def search_step(setting: Setting, args, device: torch.device, batches: list[dict], data):
    """One search iteration of ``setting``: a weight step, and an α step every fourth iteration."""
    spec = build_spec(ModelConfig(backbone=setting.backbone, width=args.width), data)
    tasks = data.select_tasks(TASKS)
    runtime = Runtime(str(device), amp=setting.amp, channels_last=args.channels_last, sync_every=25)
    cfg = BMTASConfig(hard=setting.kind == "hard", per_task=setting.kind == "soft-per-task",
                      resource_mode="normalized", lam=1.0)
    torch.manual_seed(0)
    model = runtime.prepare((NaiveSupergraph if setting.kind == "naive" else Supergraph)(spec, tasks)).train()
    layer_madds = madds_table(spec, tasks).layer_tensor().to(device)
    scale = resource_scale(cfg, layer_madds, len(tasks))
    arch_opt = torch.optim.Adam([model.alpha], lr=cfg.arch_lr)
    w_opt, w_sched = _sgd(model, cfg, PAPER["search"])
    w_step = TrainStep([w_opt], tasks, runtime, schedulers=[w_sched], per_task=cfg.per_task)
    ctx = SearchContext(data, spec, tasks, Path("unused"), amp=setting.amp)
    gen = torch.Generator(device=device).manual_seed(0)
    counter = itertools.count()

    def step(batch: dict) -> None:
        i = next(counter)
        if i % cfg.weight_steps_per_arch == 0:
            _arch_step(model, ctx, cfg, batch, runtime, 1.0, gen, layer_madds, scale, "exact", arch_opt)
        weights = gumbel_softmax_weights(model.alpha.detach(), 1.0, cfg.hard, gen)
        w_step(lambda x, tasks=None: model(x, weights=weights, tasks=tasks), batch)

    return step


def retrain_step(setting: Setting, args, device: torch.device, batches: list[dict], data):
    spec = build_spec(ModelConfig(backbone=setting.backbone, width=args.width), data)
    tasks = data.select_tasks(TASKS)
    cfg = TrainConfig(amp=setting.amp, channels_last=args.channels_last, device=str(device))
    runtime = Runtime(str(device), amp=setting.amp, channels_last=args.channels_last, sync_every=25)
    model = runtime.prepare(build_model(spec, tasks, BranchConfig.single(TASKS, spec.num_layers), 0)).train()
    opt = make_optimizer(model, cfg)
    step = TrainStep([opt], tasks, runtime)
    return lambda batch: step(model, batch)


def run(args) -> list[dict]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = []
    cache: dict[tuple[int, int], tuple] = {}
    for setting in settings(args):
        search = setting.kind != "retrain"
        size = args.search_size if search else args.retrain_size
        batch = args.batch or BATCH[setting.backbone]
        if (size, batch) not in cache:
            cache[(size, batch)] = _batches(size, batch, 2, device, args.channels_last)
        batches, data = cache[(size, batch)]
        row = {"backbone": setting.backbone, "kind": setting.kind, "amp": setting.amp, "size": size, "batch": batch}
        try:
            step = (search_step if search else retrain_step)(setting, args, device, batches, data)
            seconds, peak = _timed(step, batches, args.warmup, args.iters, device)
            row.update(it_per_s=1.0 / seconds, peak_gib=peak)
        except torch.OutOfMemoryError:
            row.update(it_per_s=float("nan"), peak_gib=float("nan"), note="OOM")
        finally:
            step = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def settings(args) -> list[Setting]:
    out = []
    for backbone in args.backbones:
        for kind in args.modes:
            for amp in args.amp:
                if kind == "naive" and amp != "off":
                    continue  # the routing baseline once, in full precision
                out.append(Setting(backbone, kind, amp))
        for amp in args.amp:
            out.append(Setting(backbone, "retrain", amp))
    return out


def _line(row: dict) -> str:
    note = row.get("note", "")
    return (f"{row['backbone']:<13} {row['kind']:<14} amp={row['amp']:<5} {row['size']}² b{row['batch']:<3} "
            f"{row['it_per_s']:8.2f} it/s  peak {row['peak_gib']:6.2f} GiB {note}")


def projection(rows: list[dict]) -> list[str]:
    """The paper's schedule at the measured speeds: warm-up (≈ hard routing), search, retrain."""
    lines = []
    for backbone in sorted({r["backbone"] for r in rows}):
        for mode in ("soft", "soft-per-task", "hard"):
            for amp in sorted({r["amp"] for r in rows}):
                pick = {r["kind"]: r for r in rows if r["backbone"] == backbone and r["amp"] == amp}
                if mode not in pick or "retrain" not in pick or "hard" not in pick:
                    continue
                speeds = (pick["hard"]["it_per_s"], pick[mode]["it_per_s"], pick["retrain"]["it_per_s"])
                if any(not s == s for s in speeds):
                    continue
                hours = (PAPER["warmup"] / speeds[0] + PAPER["search"] / speeds[1] + PAPER["retrain"] / speeds[2]) / 3600
                lines.append(f"| {backbone} | {mode} | {amp} | {hours:.1f} h | {PAPER['v100_days'] * 24:.0f} h (3.5 days, V100) |")
    return lines


def markdown(rows: list[dict], device_name: str) -> str:
    out = [f"GPU benchmark on {device_name} (torch {torch.__version__})", "",
           "| backbone | what | AMP | input | batch | it/s | peak GPU memory |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = "OOM" if r.get("note") == "OOM" else ("n/a" if r["peak_gib"] != r["peak_gib"] else f"{r['peak_gib']:.2f} GiB")
        out.append(f"| {r['backbone']} | {r['kind']} | {r['amp']} | {r['size']}² | {r['batch']} | "
                   f"{r['it_per_s']:.2f} | {mem} |")
    proj = projection(rows)
    if proj:
        out += ["", "Paper schedule (2 000 warm-up + 40 000 search + 40 000 retrain iterations) at these speeds:", "",
                "| backbone | search mode | AMP | projected | paper |", "|---|---|---|---|---|", *proj]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="mobilenet_v2,resnet50")
    p.add_argument("--modes", default=",".join(SEARCH_MODES), help=f"search modes: {', '.join(SEARCH_MODES)}")
    p.add_argument("--amp", default="off,bf16", help="precisions to compare: off, bf16, fp16")
    p.add_argument("--search-size", type=int, default=256, help="search resolution (PASCAL at half resolution)")
    p.add_argument("--retrain-size", type=int, default=512)
    p.add_argument("--batch", type=int, default=None, help="batch size (default 16 MobileNetV2, 8 ResNet-50)")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--iters", type=int, default=10, help="timed iterations per setting")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per setting (cuDNN autotuning)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="CPU check: width 0.1, 32², batch 4, 2 iterations")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = p.parse_args(argv)
    args.backbones = [b for b in args.backbones.split(",") if b]
    args.modes = [m for m in args.modes.split(",") if m]
    args.amp = [a for a in args.amp.split(",") if a]
    bad = [m for m in args.modes if m not in SEARCH_MODES] + [b for b in args.backbones if b not in BATCH]
    if bad:
        print(f"bench_gpu: unknown mode or backbone {bad[0]!r}", file=sys.stderr)
        return 2
    if args.tiny:
        args.width, args.search_size, args.retrain_size, args.batch, args.iters, args.warmup = 0.1, 32, 32, 4, 2, 1
        torch.set_num_threads(1)
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    rows = run(args)
    table = markdown(rows, device_name)
    print("\n" + table)
    if args.out is not None:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
