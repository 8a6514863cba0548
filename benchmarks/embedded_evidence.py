"""Does the embedded benchmark mean something? The main job's claims, rerun with more seeds.

With the recipe of ``sweeps/synthetic_pareto.py`` (data, backbone, retrain settings, search settings),
this script retrains fixed trees with ``--seeds`` retrain seeds each and runs the searches with
``--search-seeds`` seeds, then prints (markdown):

1. every task's margin over the trivial predictor (fitted on the training labels), per model, with the
   thresholds the main job must meet (semseg mIoU ≥ 2×, saliency maxF ≥ 2×, depth RMSE ≤ 0.7×,
   normals mean angular error ≤ 0.8× the trivial one);
2. Single vs Shared: Δm ± s.e. (Δm against Single's mean over its seeds);
3. the related tree vs its permutations at equal MAdds: the tree that shares the first ``k`` layers
   and then keeps ``RELATED_GROUPS`` together, against every distinct permutation of its task
   assignment (and the vanilla tree at its MAdds): Δm gap ± s.e.;
4. how often BMTAS (at the main job's BMTAS point) and Learning to Branch (its LTB point) export a tree
   whose deepest shared groups are ``RELATED_GROUPS`` (restricted to the job's tasks), out of
   ``--search-seeds`` search seeds.

Retrains go through the sweep's pipeline (:func:`branchsweep.pipeline.run_trial`), with its retrain
cache in ``--out`` (a rerun reuses what is there) and ``--workers`` processes.

    .venv/bin/python benchmarks/embedded_evidence.py --seeds 5 --search-seeds 5 --out /tmp/evidence
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The main job's thresholds on the ratio model / trivial of each task's metric.
THRESHOLDS = {"semseg/mIoU": (">=", 2.0), "sal/maxF": (">=", 2.0), "depth/rmse": ("<=", 0.7),
              "normals/mean": ("<=", 0.8)}


def load_preset():
    """``PRESET`` of ``sweeps/synthetic_pareto.py`` (the main job's recipe)."""
    sys.path.insert(0, str(ROOT / "sweeps"))
    spec = importlib.util.spec_from_file_location("synthetic_pareto", ROOT / "sweeps" / "synthetic_pareto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mean_se(values: list[float]) -> tuple[float, float]:
    from branchsweep.pipeline import mean_and_se

    return mean_and_se([float(v) for v in values])


def fmt(mean: float, se: float, digits: int = 2, sign: bool = False) -> str:
    s = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return s + (f" ± {se:.{digits}f}" if math.isfinite(se) else "")


def deepest_grouping(tree) -> list[list[str]] | None:
    """The partition of the deepest layer where some tasks still share a block (None: they never do)."""
    for layer in reversed(range(tree.num_layers)):
        groups = tree.groups(layer)
        if any(len(g) > 1 for g in groups):
            return sorted(sorted(g) for g in groups)
    return None


def related_partition(tasks: list[str]) -> list[list[str]]:
    from branchsweep.data.synthetic_dense import RELATED_GROUPS

    return sorted(sorted(t for t in g if t in tasks) for g in RELATED_GROUPS if any(t in tasks for t in g))


def related_tree(tasks: list[str], num_layers: int, branch_at: int):
    """Layers ``[0, branch_at)`` shared by every task, then one branch per related group to the end."""
    from branchsweep.arch import BranchConfig

    groups = related_partition(tasks)
    return BranchConfig.from_groups(tasks, [[tasks]] * branch_at + [groups] * (num_layers - branch_at))


def _trial(payload: dict[str, Any]) -> dict[str, Any]:
    """One retrain job in a worker process (a fixed tree, R seeds, via the sweep pipeline)."""
    import torch

    torch.set_num_threads(1)
    from branchsweep.pipeline import SweepCaches, TrialConfig, run_trial

    cfg = TrialConfig.from_dict(payload["trial"])
    return run_trial(cfg, payload["work"], SweepCaches(Path(payload["cache"])))


def _search(payload: dict[str, Any]) -> dict[str, Any]:
    """One search in a worker process: the exported tree only (no retrain)."""
    import torch

    torch.set_num_threads(1)
    from branchsweep.data import create_data
    from branchsweep.factory import build_spec
    from branchsweep.pipeline import SweepCaches, TrialConfig
    from branchsweep.search import SEARCH_METHODS, SearchContext
    from branchsweep.search.base import run_method

    cfg = TrialConfig.from_dict(payload["trial"])
    caches = SweepCaches(Path(payload["cache"]))
    data = create_data(cfg.data)
    tasks = data.select_tasks(cfg.data.tasks)
    spec = build_spec(cfg.model, data)
    ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=Path(payload["work"]), seed=cfg.seed,
                        progress=False, cache_dir=caches.madds, branch_points=cfg.branch_points)
    t0 = time.perf_counter()
    result = run_method(SEARCH_METHODS.get(cfg.method), cfg.method_config(caches.method_dir(cfg.method)), ctx)
    return {"arch_json": result.config.to_json(indent=None), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5, help="retrain seeds per tree (default 5)")
    p.add_argument("--search-seeds", type=int, default=5, help="search seeds per method (default 5; 0 skips)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--out", type=Path, default=None, help="folder for caches and the table (default: a temp folder)")
    args = p.parse_args(argv)
    if args.seeds < 2 or args.search_seeds < 0 or args.workers < 1:
        print("error: --seeds must be >= 2, --search-seeds >= 0, --workers >= 1", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import tempfile

    from branchsweep.arch import BranchConfig
    from branchsweep.data import create_data
    from branchsweep.factory import build_spec
    from branchsweep.madds import madds_table
    from branchsweep.pipeline import TrialConfig, compute_delta_m, primary_directions
    from branchsweep.search.baselines import closest_branch_layer, distinct_permutations, vanilla_tree
    from branchsweep.sweep.space import SweepBase, to_trial_config

    job = load_preset()
    preset = job.PRESET
    out = args.out or Path(tempfile.mkdtemp(prefix="embedded-evidence-"))
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    data = create_data(preset.data)
    tasks = data.select_tasks(preset.data.tasks)
    names = [t.name for t in tasks]
    spec = build_spec(preset.model, data)
    table = madds_table(spec, tasks, cache_dir=cache)
    directions = primary_directions(tasks)
    t_start = time.perf_counter()
    print(f"# Embedded evidence: {preset.name} recipe, {args.seeds} retrain seeds, {args.search_seeds} search seeds\n")
    print(f"data {preset.data.dataset} {preset.data.size}² ({preset.data.train_samples} train / "
          f"{preset.data.val_samples} val scenes), tasks {', '.join(names)}; backbone {spec.name} width "
          f"{preset.model.width}; retrain {preset.train.iterations} iterations, batch {preset.train.batch_size}, "
          f"{preset.train.optimizer} lr {preset.train.lr}\n", flush=True)

    related = related_tree(names, spec.num_layers, job.RELATED_BRANCH_AT)
    perms = distinct_permutations(related, 10, seed=0)
    vanilla = vanilla_tree(names, spec.num_layers, closest_branch_layer(table, names, table.madds(related)))
    trees = {"Single": BranchConfig.single(names, spec.num_layers), "Shared": BranchConfig.shared(names, spec.num_layers),
             "related": related, **{f"permuted {i + 1}": t for i, t in enumerate(perms)}, "vanilla": vanilla}
    (out / "trees").mkdir(exist_ok=True)

    def trial_payload(label: str, tree) -> dict[str, Any]:
        path = out / "trees" / f"{label.replace(' ', '_')}.json"
        tree.save(path)
        cfg = TrialConfig(method="fixed", arch=str(path), data=preset.data, model=preset.model, train=preset.train,
                          label=label, replicates=args.seeds)
        return {"trial": cfg.to_dict(), "work": str(out / "trials" / label.replace(" ", "_")), "cache": str(cache)}

    rows: dict[str, dict[str, Any]] = {}
    with cf.ProcessPoolExecutor(args.workers) as pool:
        jobs = {pool.submit(_trial, trial_payload(label, tree)): label for label, tree in trees.items()}
        search_jobs = {}
        if args.search_seeds:
            for point in preset.points:
                for s in range(args.search_seeds):
                    base = SweepBase(data=preset.data, model=preset.model, train=preset.train,
                                     search_defaults=preset.search_defaults, search_seed=s)
                    cfg = to_trial_config(dict(point), base)
                    payload = {"trial": cfg.to_dict(), "cache": str(cache),
                               "work": str(out / "searches" / f"{point['method']}-{s}")}
                    search_jobs[pool.submit(_search, payload)] = (point["method"], s)
        for fut in cf.as_completed(jobs):
            rows[jobs[fut]] = fut.result()
            print(f"  retrained {jobs[fut]} ({args.seeds} seeds)", file=sys.stderr, flush=True)
        searches = {key: fut.result() for fut, key in ((f, search_jobs[f]) for f in cf.as_completed(search_jobs))}

    # Δm of every replicate against Single's mean
    single = {k: mean_se([r[k] for r in json.loads(rows["Single"]["replicates_json"])])[0] for k in directions}
    reps = {label: json.loads(row["replicates_json"]) for label, row in rows.items()}
    dms = {label: [compute_delta_m(r, single, directions) for r in rs] for label, rs in reps.items()}
    trivial = json.loads(rows["Single"].get("trivial_json") or "{}")
    if not trivial:
        from branchsweep.trivial import trivial_metrics

        trivial = trivial_metrics(data, tasks, preset.train)

    print("## 1. Margin over the trivial predictor (model / trivial; mean ± s.e. of the metric)\n")
    shown = [k for k in THRESHOLDS if k in trivial] + [k for k in directions if k not in THRESHOLDS]
    print("| model | MAdds (M) | " + " | ".join(f"{k} (trivial {trivial[k]:.3g})" for k in shown) + " |")
    print("|---" * (2 + len(shown)) + "|")
    failures = []
    for label, rs in reps.items():
        cells = []
        for k in shown:
            m, se = mean_se([r[k] for r in rs])
            ratio = m / trivial[k] if trivial[k] else math.inf
            ok = ""
            if k in THRESHOLDS:
                op, bound = THRESHOLDS[k]
                good = ratio >= bound if op == ">=" else ratio <= bound
                ok = "" if good else " ✗"
                if not good:
                    failures.append(f"{label} {k}")
            cells.append(f"{fmt(m, se, 3)} ({ratio:.2f}×{ok})" if math.isfinite(ratio) else f"{fmt(m, se, 3)}")
        print(f"| {label} | {table.madds(trees[label]) / 1e6:.2f} | " + " | ".join(cells) + " |")
    print(f"\nthresholds: {', '.join(f'{k} {op} {b}×' for k, (op, b) in THRESHOLDS.items())}; "
          f"{'all met' if not failures else 'NOT met: ' + ', '.join(failures)}\n")

    print("## 2. Single vs Shared\n")
    s_m, s_se = mean_se(dms["Single"])
    h_m, h_se = mean_se(dms["Shared"])
    gap_se = math.sqrt(s_se ** 2 + h_se ** 2)
    pair = mean_se([a - b for a, b in zip(dms["Single"], dms["Shared"])])
    print(f"Δm Single {fmt(s_m, s_se, sign=True)} %, Shared {fmt(h_m, h_se, sign=True)} %: Single − Shared = "
          f"{s_m - h_m:+.2f} ± {gap_se:.2f} % unpaired ({(s_m - h_m) / gap_se:.1f} s.e.), "
          f"{fmt(*pair, sign=True)} % paired by retrain seed ({pair[0] / pair[1]:.1f} s.e.)\n")

    print("## 3. Related tree vs its permutations at equal MAdds\n")
    print(f"related tree (shared layers [0, {job.RELATED_BRANCH_AT}), then {related_partition(names)}), "
          f"{len(perms)} distinct permutation(s), vanilla at its MAdds (branch at layer "
          f"{closest_branch_layer(table, names, table.madds(related))})\n")
    print("| tree | groups after the shared layers | MAdds (M) | Δm % (mean ± s.e.) |")
    print("|---|---|---|---|")
    for label in ["related", *[f"permuted {i + 1}" for i in range(len(perms))], "vanilla", "Shared", "Single"]:
        tree = trees[label]
        print(f"| {label} | {tree.groups(tree.num_layers - 1)} | {table.madds(tree) / 1e6:.2f} | "
              f"{fmt(*mean_se(dms[label]), sign=True)} |")
    perm_all = [v for i in range(len(perms)) for v in dms[f"permuted {i + 1}"]]
    perm_seed = [mean_se([dms[f"permuted {i + 1}"][r] for i in range(len(perms))])[0] for r in range(args.seeds)]
    r_m, r_se = mean_se(dms["related"])
    p_m, p_se = mean_se(perm_seed)
    gap = r_m - p_m
    se = math.sqrt(r_se ** 2 + p_se ** 2)
    paired = mean_se([a - b for a, b in zip(dms["related"], perm_seed)])
    print(f"\nrelated − permutations: Δm {gap:+.2f} ± {se:.2f} % unpaired ({gap / se:.1f} s.e.), "
          f"{fmt(*paired, sign=True)} % paired by retrain seed ({paired[0] / paired[1]:.1f} s.e.; "
          f"{len(perm_all)} permuted retrains)\n")

    if searches:
        print("## 4. Do the searches recover the designed groups?\n")
        want = related_partition(names)
        print(f"designed groups: {want}\n")
        print("| method | search seed | deepest shared groups | MAdds (M) | match | search (s) |")
        print("|---|---|---|---|---|---|")
        hits: dict[str, int] = {}
        for (method, s), res in sorted(searches.items()):
            tree = BranchConfig.from_json(res["arch_json"])
            got = deepest_grouping(tree)
            match = got == want
            hits[method] = hits.get(method, 0) + int(match)
            print(f"| {method} | {s} | {got} | {table.madds(tree) / 1e6:.2f} | {'yes' if match else 'no'} | "
                  f"{res['seconds']:.0f} |")
        print("\n" + ", ".join(f"{m}: {n} of {args.search_seeds} search seeds" for m, n in hits.items()) + "\n")
    print(f"wall time {time.perf_counter() - t_start:.0f} s; caches and trees in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
