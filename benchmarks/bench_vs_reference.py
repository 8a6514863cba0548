"""Side by side with the authors' BMTAS code: search iteration time and step memory (CPU).

Both supergraphs are MobileNetV2 + R-ASPP with DeepLabv3+ heads for the five PASCAL-Context tasks
(semseg, human_parts, sal, normals, edge): 5 candidates × 18 layers, the same batch of random
tensors (labels in each code base's own format) and each code base's own losses and optimizers.

* **reference** — github.com/brdav/bmtas imported from ``--reference PATH`` (this repository holds
  none of its code). Its weight step is the loop of its ``train_search``: for each task, forward
  ``model(x, task)``, its ``WeightedSumLoss`` without the resource term, backward, an Adam step; its
  α step: for each task, forward, the loss with the resource term (``BranchingLoss``), backward, then
  one Adam step of α, BatchNorm running statistics frozen. ImageNet weights are not loaded (no
  download; neither time nor memory depends on the values) and its MAdds look-up table is computed by
  its own code at the benchmark's resolution.
* **branchsweep** — ``Supergraph`` with the search's own steps: the weight step is
  :class:`branchsweep.loop.TrainStep` (SGD) and the α step :func:`branchsweep.search.bmtas.arch_step`
  (α-only gradient, exact expected-MAdds loss, Adam), followed by what the search does after every
  α step (BatchNorm statistics and momentum reset). Configurations:

  - ``soft``: relaxed Gumbel-softmax samples, one task after the other as the search runs by
    default (the paper's sequential update: per task a forward and backward pass and an SGD step, one
    task's graph alive at a time; the α step per task too, ``per_task``), the supergraph's fused
    evaluation and CPU kernels (:mod:`branchsweep.fused`), channels-last
    (``Runtime(channels_last=True)``);
  - ``soft-nchw``: the same in the default (NCHW) memory format;
  - ``soft-joint``: one joint forward/backward of all tasks and one SGD step (``task_updates
    joint``; more memory);
  - ``soft-before``: the implementation before this work (joint, candidate by candidate:
    ``Supergraph(fuse=False)``, NCHW);
  - ``hard``: straight-through hard samples, joint, fused, channels-last.

A *search iteration* is one weight step plus a quarter of an α step (``--weight-steps-per-arch 4``,
the 80/20 split of the paper). Every configuration uses τ = 1 (soft samples have no zero weights).

**Time**: one process builds every configuration and times them interleaved — each repetition runs an
α step and a weight step of every configuration in turn (after one untimed repetition), so load
from other processes hits all of them alike; the table shows medians over ``--reps`` repetitions and
ratios of those medians. ``--threads`` (default 1) sets the intra-op threads. The clock is the
process's CPU time (``--clock cpu``, the default): with one thread it equals the elapsed time on an
idle machine and, unlike the elapsed time, hardly moves when other processes share the cores;
``--clock wall`` measures elapsed time.

**Memory**: each configuration runs in a fresh process: build the model, optimizers and batch,
collect garbage, read the resident set size (VmRSS in ``/proc/self/status``), reset the peak
(``echo 5 > /proc/self/clear_refs``) and run ``--mem-iterations`` α + weight steps; the *step memory*
is the peak (VmHWM) minus that baseline: activations, gradients and optimizer state, measured the same
way for both code bases. Memory workers run with ``MALLOC_MMAP_THRESHOLD_=65536`` (timing workers with
glibc's defaults, as a search runs: with the fixed threshold every large allocation is a fresh,
page-faulting mapping, and the reference's iteration took 1.4× / 2.0× as long at 64² / 128²): glibc
otherwise raises its
mmap threshold after the first large free and keeps later freed tensors in its heap, so the resident
set would show the allocator's history rather than the live tensors. Linux only (elsewhere the
memory row reads n/a).

Run: ``.venv/bin/python benchmarks/bench_vs_reference.py --reference /path/to/bmtas [--sizes 64,128]
[--batch-size 4] [--reps 5] [--configs reference,soft,soft-before,hard] [--out table.md]``.
A missing ``--reference`` path, or one that is not that code, ends with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

TASKS = ("semseg", "human_parts", "sal", "normals", "edge")
CONFIGS = ("reference", "soft", "soft-nchw", "soft-joint", "soft-before", "hard")
DEFAULT_CONFIGS = ("reference", "soft", "soft-before", "hard")
LABELS = {"reference": "reference (soft)", "soft": "branchsweep soft", "soft-nchw": "branchsweep soft, NCHW", "soft-joint": "branchsweep soft, joint",
          "soft-before": "branchsweep soft, before", "hard": "branchsweep hard"}
REFERENCE_FILES = {"src/models.py": "class SuperMobileNetV2", "src/criterion.py": "class WeightedSumLoss",
                   "main_search.py": "train_search"}
TAU = 1.0
MMAP_THRESHOLD = 65536  # glibc: allocations from 64 KiB are mapped and unmapped at once (see the docstring)


class UsageError(Exception):
    """A bad command line: reported as one line, exit status 2."""


# --------------------------------------------------------------------------------------- arguments
def check_reference(path: str | None) -> Path:
    """The reference checkout's root, or :class:`UsageError` when it is missing or not that code."""
    if not path:
        raise UsageError("--reference PATH is required (a checkout of github.com/brdav/bmtas)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(f"--reference {path}: no such directory")
    for rel, marker in REFERENCE_FILES.items():
        file = root / rel
        if not file.is_file() or marker not in file.read_text(errors="replace"):
            raise UsageError(f"--reference {path}: not a checkout of github.com/brdav/bmtas ({rel} without {marker!r})")
    return root.resolve()


def parse_list(text: str, convert: Callable = str, allowed: tuple | None = None, what: str = "value") -> list:
    """A comma-separated list, converted and checked (:class:`UsageError` otherwise)."""
    try:
        items = [convert(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"bad {what} list {text!r}") from None
    bad = [v for v in items if allowed is not None and v not in allowed]
    if not items or bad:
        raise UsageError(f"bad {what} {bad[0] if bad else text!r}" + (f" (choose from {', '.join(allowed)})" if allowed else ""))
    return items


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="checkout of github.com/brdav/bmtas")
    parser.add_argument("--sizes", default="64,128", help="input resolutions (comma-separated)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (after one untimed)")
    parser.add_argument("--mem-iterations", type=int, default=2, help="α + weight steps of a memory run")
    parser.add_argument("--weight-steps-per-arch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: the process's CPU time (default; robust on a shared machine), wall: elapsed time")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help=f"any of {', '.join(CONFIGS)}")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    parser.add_argument("--worker", choices=("time", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    return parser


# ------------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_mib() -> float | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def peak_rss_mib() -> float | None:
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024


# ------------------------------------------------------------------------------------ configurations
@dataclass
class Harness:
    """One configuration: a weight step and an α step on a fixed batch."""

    name: str
    weight_step: Callable[[], None]
    arch_step: Callable[[], None]


def random_batch(size: int, batch: int, seed: int = 0):
    """An image batch and labels of the five tasks (values in each task's range)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, size, size, generator=g)
    labels = {
        "semseg": torch.randint(0, 21, (batch, size, size), generator=g),
        "human_parts": torch.randint(0, 7, (batch, size, size), generator=g),
        "sal": torch.randint(0, 2, (batch, 1, size, size), generator=g).float(),
        "normals": torch.nn.functional.normalize(torch.randn(batch, 3, size, size, generator=g), dim=1),
        "edge": torch.randint(0, 2, (batch, 1, size, size), generator=g).float(),
    }
    return image, labels


def import_reference(root: Path):
    """The reference's ``models`` and ``criterion`` modules, imported from ``root``."""
    sys.path.insert(0, str(root))
    try:
        from src import criterion, models  # type: ignore[import-not-found]
    except Exception as err:  # a broken checkout or a missing dependency
        raise UsageError(f"--reference {root}: cannot import its src package ({type(err).__name__}: {err})") from None
    if Path(models.__file__).resolve().parent != root / "src":
        raise UsageError(f"--reference {root}: another 'src' package shadows the reference's")
    return models, criterion


def reference_harness(root: Path, size: int, batch: int) -> Harness:
    """The authors' supergraph and losses, driven as their ``train_search`` does (see the docstring)."""
    import torch

    models, criterion = import_reference(root)
    lut: list[float] = []

    def get_flops(self):  # their look-up table, computed by their code at our resolution
        if not lut:
            with tempfile.TemporaryDirectory() as tmp:
                lut.extend(self.calculate_flops_lut(os.path.join(tmp, "flops.json"), [size, size])["per_block_flops"])
        return lut

    models.SuperMobileNetV2._load_imagenet_weights = lambda self: None
    models.BranchMobileNetV2._load_imagenet_weights = lambda self: None
    models.SuperMobileNetV2.get_flops = get_flops
    torch.manual_seed(0)
    model = models.SuperMobileNetV2(list(TASKS))
    loss = criterion.WeightedSumLoss(list(TASKS), resource_loss_weight=0.05, model=model)
    opt_w = torch.optim.Adam(lr=0.001, weight_decay=1e-4, params=model.weight_parameters())
    opt_a = torch.optim.Adam(lr=0.01, weight_decay=5e-5, params=model.arch_parameters())
    model.train()
    model.gumbel_temp = TAU
    model.warmup_flag = False
    image, labels = random_batch(size, batch)
    target = {t: (v.unsqueeze(1).float() if v.dim() == 3 else v) for t, v in labels.items()}

    def labelled(t: str) -> bool:  # their check for images without annotations of a task
        uniq = torch.unique(target[t])
        return not (len(uniq) == 1 and uniq[0] == 255)

    def weight_step() -> None:
        for t in TASKS:
            if not labelled(t):
                continue
            opt_w.zero_grad()
            out = model(image, task=t)
            total = loss(out, target, task=t, omit_resource=True)
            total.backward()
            opt_w.step()
            total.item()

    def arch_step() -> None:
        model.freeze_encoder_bn_running_stats()
        opt_a.zero_grad()
        for t in TASKS:
            if not labelled(t):
                continue
            out = model(image, task=t)
            total = loss(out, target, task=t)
            total.backward()
            total.item()
        opt_a.step()
        model.unfreeze_encoder_bn_running_stats()
        model.reset_encoder_bn_running_stats()

    return Harness("reference", weight_step, arch_step)


def branchsweep_harness(config: str, size: int, batch: int, cache_dir: str) -> Harness:
    """A branchsweep supergraph with the BMTAS search's own weight and α steps."""
    import torch

    from branchsweep.backbones import create_backbone
    from branchsweep.loop import Runtime, TrainStep
    from branchsweep.madds import madds_table
    from branchsweep.search import bmtas
    from branchsweep.search.bmtas import BMTASConfig, resource_scale, weight_optimizer
    from branchsweep.search.supergraph import Supergraph, gumbel_softmax_weights, reset_batchnorm_stats
    from branchsweep.tasks import create_task

    spec = create_backbone("mobilenet_v2", width=1.0, input_size=size)
    tasks = [create_task(t) for t in TASKS]
    table = madds_table(spec, tasks, cache_dir=Path(cache_dir))
    cfg = BMTASConfig(hard=config == "hard", per_task=config in ("soft", "soft-nchw"), batch_size=batch)
    torch.manual_seed(0)
    runtime = Runtime("cpu", channels_last=config not in ("soft-before", "soft-nchw"))
    model = runtime.prepare(Supergraph(spec, tasks, fuse=config != "soft-before").train())
    w_opt, w_sched = weight_optimizer(model, cfg, cfg.iterations)
    arch_opt = torch.optim.Adam([model.alpha], lr=cfg.arch_lr, weight_decay=cfg.arch_weight_decay)
    sequential = config in ("soft", "soft-nchw")  # the search's default: one SGD step per task and batch
    if sequential:
        task_steps = [TrainStep([w_opt], [t], runtime) for t in tasks]
    else:
        step = TrainStep([w_opt], tasks, runtime, schedulers=[w_sched], per_task=cfg.per_task)
    layer_madds = table.layer_tensor()
    scale = resource_scale(cfg, layer_madds, len(tasks))
    gen = torch.Generator().manual_seed(0)
    image, labels = random_batch(size, batch)
    data = runtime.batch({"image": image, **labels})
    ctx = SimpleNamespace(tasks=tasks)

    def weight_step() -> None:
        w = gumbel_softmax_weights(model.alpha.detach(), TAU, cfg.hard, gen)
        if sequential:  # as run_search does with the paper's phases (task_updates "sequential")
            for t, task_step in zip(tasks, task_steps):
                task_step(lambda x, name=t.name: model(x, weights=w, tasks=[name]), data)
            w_sched.step()
        else:
            step(lambda x, tasks=None: model(x, weights=w, tasks=tasks), data)

    def arch_step() -> None:
        bmtas.arch_step(model, ctx, cfg, data, runtime, TAU, gen, layer_madds, scale, "exact", arch_opt)  # type: ignore[arg-type]
        reset_batchnorm_stats(model)
        w_opt.state.clear()

    return Harness(config, weight_step, arch_step)


def make_harness(config: str, size: int, batch: int, reference: Path, cache_dir: str) -> Harness:
    if config == "reference":
        return reference_harness(reference, size, batch)
    return branchsweep_harness(config, size, batch, cache_dir)


# ------------------------------------------------------------------------------------------ workers
def time_worker(args: argparse.Namespace, reference: Path) -> dict:
    """Median weight-step and α-step times (ms) of every configuration, interleaved (see the docstring)."""
    import torch

    torch.set_num_threads(args.threads)
    configs = parse_list(args.configs, allowed=CONFIGS, what="configuration")
    with tempfile.TemporaryDirectory() as cache:
        harnesses = [make_harness(c, args.size, args.batch_size, reference, cache) for c in configs]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times: dict[str, dict[str, list[float]]] = {h.name: {"weight": [], "arch": []} for h in harnesses}
    for rep in range(args.reps + 1):
        for h in harnesses:
            for kind, fn in (("arch", h.arch_step), ("weight", h.weight_step)):
                t0 = clock()
                fn()
                if rep:
                    times[h.name][kind].append((clock() - t0) * 1e3)
    return {name: {kind: statistics.median(v) for kind, v in t.items()} | {"raw": t} for name, t in times.items()}


def memory_worker(args: argparse.Namespace, reference: Path) -> dict:
    """Peak RSS above the built model over ``--mem-iterations`` α + weight steps (see the docstring)."""
    import torch

    torch.set_num_threads(args.threads)
    (config,) = parse_list(args.configs, allowed=CONFIGS, what="configuration")
    with tempfile.TemporaryDirectory() as cache:
        harness = make_harness(config, args.size, args.batch_size, reference, cache)
    gc.collect()
    base = rss_mib()
    if base is None or not reset_peak_rss():
        return {"step_mib": None}
    peaks = {"arch": 0.0, "weight": 0.0}
    for _ in range(args.mem_iterations):
        for kind, fn in (("arch", harness.arch_step), ("weight", harness.weight_step)):
            reset_peak_rss()
            fn()
            peaks[kind] = max(peaks[kind], (peak_rss_mib() or 0.0) - base)
    return {"base_mib": base, "step_mib": max(peaks.values()), "arch_mib": peaks["arch"], "weight_mib": peaks["weight"]}


def run_worker(kind: str, args: argparse.Namespace, size: int, configs: list[str]) -> dict:
    """Run a worker in a fresh Python process and return its JSON result."""
    cmd = [sys.executable, __file__, "--worker", kind, "--reference", args.reference, "--size", str(size),
           "--batch-size", str(args.batch_size), "--reps", str(args.reps), "--threads", str(args.threads),
           "--mem-iterations", str(args.mem_iterations), "--configs", ",".join(configs), "--clock", args.clock]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if kind == "memory":  # the allocator setting that makes the resident set show live tensors; timing
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)  # runs with glibc's defaults, as users do
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{kind} worker ({', '.join(configs)}, {size}px) failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- table
def iteration_ms(t: dict, k: int) -> float:
    """Weight step plus ``1/k`` of an α step."""
    return t["weight"] + t["arch"] / k


def render_table(size: int, configs: list[str], times: dict, memory: dict, k: int, batch: int) -> str:
    """The markdown table of one resolution (ratios against the reference when it was measured)."""
    ref = "reference" if "reference" in configs else None

    def cell_time(c: str, value: float, base: float | None) -> str:
        if base is None or c == ref:
            return f"{value:.0f} ms"
        ratio = base / value
        return f"{value:.0f} ms ({ratio:.2f}× {'faster' if ratio >= 1 else 'slower'})"

    def cell_mem(c: str, key: str) -> str:
        value = memory.get(c, {}).get(key)
        if value is None:
            return "n/a"
        base = memory.get(ref, {}).get(key) if ref else None
        if base is None or c == ref:
            return f"{value:.0f} MiB"
        return f"{value:.0f} MiB ({value / base:.2f}×)"

    rows = [f"| {size}×{size}, batch {batch} | " + " | ".join(LABELS[c] for c in configs) + " |",
            "|---|" + "---|" * len(configs)]
    it = {c: iteration_ms(times[c], k) for c in configs}
    rows.append(f"| search iteration (weight step + 1/{k} α step) | "
                + " | ".join(cell_time(c, it[c], it.get(ref) if ref else None) for c in configs) + " |")
    for kind, label in (("weight", "weight step"), ("arch", "α step")):
        base = times[ref][kind] if ref else None
        rows.append(f"| {label} | " + " | ".join(cell_time(c, times[c][kind], base) for c in configs) + " |")
    if memory:
        for key, label in (("step_mib", "step memory above the built model (peak RSS)"),
                           ("weight_mib", "… of the weight step"), ("arch_mib", "… of the α step")):
            rows.append(f"| {label} | " + " | ".join(cell_mem(c, key) for c in configs) + " |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        reference = check_reference(args.reference)
        configs = parse_list(args.configs, allowed=CONFIGS, what="configuration")
        sizes = parse_list(args.sizes, int, what="size")
        for name in ("batch_size", "reps", "mem_iterations", "weight_steps_per_arch", "threads"):
            if getattr(args, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if any(s < 32 for s in sizes):
            raise UsageError("--sizes must be >= 32 (the supergraph's output stride is 16)")
        if args.worker:
            worker = time_worker if args.worker == "time" else memory_worker
            print(json.dumps(worker(args, reference)))
            return 0
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"MobileNetV2 supergraph, {len(TASKS)} PASCAL-Context tasks, batch {args.batch_size}, "
          f"{args.threads} thread(s), τ = {TAU}; medians of {args.reps} interleaved repetitions", flush=True)
    tables = []
    for size in sizes:
        memory = {}
        if not args.no_memory:
            for c in configs:
                memory[c] = run_worker("memory", args, size, [c])
        times = run_worker("time", args, size, configs)
        table = render_table(size, configs, times, memory, args.weight_steps_per_arch, args.batch_size)
        print(table + "\n", flush=True)
        tables.append(table)
    if args.out:
        Path(args.out).write_text("\n\n".join(tables) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
