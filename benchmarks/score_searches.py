"""Score every search method against a truth table: no retraining, each exported tree is looked up.

    python benchmarks/score_searches.py --table synthetic-dense --search-seeds 5
    python benchmarks/score_searches.py --table synthetic-dense --methods bmtas,random --search-seeds 2 --out /tmp/s

For every method of ``--methods`` and every search seed, the method runs over its grid (BMTAS: λ; Learning
to Branch: child nodes per branch point; FAFS and BMN: MAdds budgets) on the table's data, backbone and
branch points, with the table's search settings (the main job's, for ``synthetic-dense``). The trees it exports are looked up in the committed
truth table (``branchsweep/truth_tables/<table>/``) and scored:

* **hypervolume fraction**: the hypervolume of the seed's trees (their mean Δm over the table's seeds)
  over the hypervolume of every tree of the table, mean ± s.e. over search seeds;
* **regret**: the exhaustive front's Δm at a found tree's MAdds minus the tree's, mean over its trees;
* **recovery**: in how many search seeds some tree of the grid groups the tasks exactly as designed at
  some layer (the data generator's groups);
* **cost**: CPU seconds of the searches of one seed (``time.process_time`` of the search).

``random`` is the BMTAS Figure 2 baseline at equal cost: per search seed, as many random trees of the
space (the ``random`` method's distribution) as the CPU seconds of the costliest searched method's seed
would retrain (its searches plus retraining its trees, at the table's mean retrain time per tree and seed).
Searches are kept in ``--out`` as they finish, so an interrupted run continues. Writes ``scores.csv``,
``trees.csv`` and ``truth.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any


def grids(pre: Any, madds: list[float], cache: Path) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Per method: ``(settings shared by the grid, the grid)`` for the table preset ``pre`` (its ``search``
    settings). ``madds``: budgets (FAFS, BMN); ``cache``: the folder of the affinity caches."""
    bmtas, ltb = dict(pre.search["bmtas"]), dict(pre.search["ltb"])
    for cfg in (bmtas, ltb):
        cfg["checkpoint_every"] = 0
    budgets = [{"target_madds": float(m)} for m in madds]
    return {
        "bmtas": (bmtas, [{"lam": lam} for lam in (0.3, 1.0, 3.0)]),
        "ltb": (ltb, [{"child_nodes": k} for k in (1, 2, 3)]),
        # One pre-training per search seed serves every budget (the affinity cache), as in a sweep.
        "fafs": ({"affinity_cache": str(cache / "fafs")}, budgets),
        "bmn": ({"affinity_cache": str(cache / "bmn")}, budgets),
    }


_STATE: dict[str, Any] = {}


def _init(table: str, smoke: bool) -> None:
    import torch

    torch.set_num_threads(1)
    from branchsweep.truth import TableContext, preset

    _STATE["ctx"] = TableContext.build(preset(table, smoke))


def _search(job: dict[str, Any]) -> dict[str, Any]:
    """Run one search (in a worker) and return its tree and CPU seconds."""
    import tempfile

    from branchsweep.search import SEARCH_METHODS, SearchContext
    from branchsweep.search.base import run_method

    ctx = _STATE["ctx"]
    path = Path(job["path"])
    method = SEARCH_METHODS.get(job["method"])
    with tempfile.TemporaryDirectory() as tmp:
        sctx = SearchContext(data=ctx.data, spec=ctx.spec, tasks=ctx.tasks, out_dir=Path(tmp), seed=job["seed"],
                             progress=False, branch_points=ctx.preset.branch_points)
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = run_method(method, method.make_config(job["settings"]), sctx)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    out = {**job, "arch_hash": result.config.arch_hash(), "arch": result.config.to_json(indent=None),
           "cpu_s": round(cpu, 2), "wall_s": round(wall, 2)}
    tmp_path = path.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(out))
    os.replace(tmp_path, path)
    return out


def recovers(arch: str, designed: list[list[str]]) -> bool:
    """True when some layer of the tree groups the tasks exactly as ``designed``."""
    from branchsweep.arch import BranchConfig

    tree = BranchConfig.from_json(arch)
    want = sorted(sorted(g) for g in designed)
    return any(sorted(sorted(g) for g in tree.groups(layer)) == want for layer in range(tree.num_layers))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", default="synthetic-dense", help="truth table (default synthetic-dense)")
    p.add_argument("--methods", default="bmtas,ltb,fafs,bmn,random", help="comma-separated (default: all)")
    p.add_argument("--search-seeds", type=int, default=5, help="search seeds per method (default 5)")
    p.add_argument("--workers", type=int, default=2, help="processes of one thread each (default 2)")
    p.add_argument("--tables-root", type=Path, default=None, help="folder of truth tables (default: the committed)")
    p.add_argument("--budget", type=float, default=1.0,
                   help="multiply every search's length (iterations, warm-up, pre-training) by this (default 1: the "
                        "main job's budget); for the curve of score against search budget")
    p.add_argument("--smoke", action="store_true", help="seconds-scale check: tiny data and 2-iteration searches")
    p.add_argument("--out", type=Path, default=None, help="where searches, scores and the plot go (default: a temp folder)")
    args = p.parse_args(argv)
    from branchsweep.errors import BranchsweepError

    try:
        return run(args)
    except BranchsweepError as err:
        print(f"error: {str(err).strip(chr(39))}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np
    import pandas as pd

    import analysis
    from branchsweep.errors import ConfigError
    from branchsweep.search import SEARCH_METHODS
    from branchsweep.search.baselines import random_tree
    from branchsweep.tree_space import from_segments, segments
    from branchsweep.truth import load_table, preset, run_jobs

    if args.search_seeds < 1 or args.workers < 1 or not args.budget > 0:
        raise ConfigError("--search-seeds and --workers must be >= 1, --budget > 0")
    rows, manifest = load_table(args.table, args.tables_root)
    pre = preset(args.table, args.smoke)
    means = analysis.tree_means(rows)
    ref = analysis.table_reference(means)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    quantiles = [float(np.quantile(means["madds"], q)) for q in (0.25, 0.5, 0.75)]
    out = args.out or Path(tempfile.mkdtemp(prefix="score-searches-"))
    grid = grids(pre, quantiles, out / "cache")
    if args.budget != 1.0:
        import dataclasses

        for m, (shared, _) in grid.items():
            defaults = ({f.name: f.default for f in dataclasses.fields(SEARCH_METHODS.get(m).config_type)}
                        if m in SEARCH_METHODS else {})
            for k in ("iterations", "warmup_iterations", "pretrain_iterations"):
                base = shared.get(k, defaults.get(k))
                if isinstance(base, int):
                    shared[k] = max(1, round(base * args.budget))
    if args.smoke:  # seconds-scale searches
        import dataclasses

        for m, (shared, _) in grid.items():
            fields = {f.name for f in dataclasses.fields(SEARCH_METHODS.get(m).config_type)} if m in SEARCH_METHODS else set()
            small = {"iterations": 2, "warmup_iterations": 1, "pretrain_iterations": 2, "batch_size": 4,
                     "affinity_images": 8}
            shared.update({k: v for k, v in small.items() if k in fields})
    unknown = [m for m in methods if m != "random" and (m not in grid or m not in SEARCH_METHODS)]
    if unknown:
        raise ConfigError(f"--methods: no grid or no registered method {unknown[0]!r} (have: {', '.join(grid)}, random)")
    (out / "searches").mkdir(parents=True, exist_ok=True)
    jobs, found = [], []
    for m in methods:
        if m == "random":
            continue
        shared, points = grid[m]
        for s in range(args.search_seeds):
            for i, point in enumerate(points):
                path = out / "searches" / f"{m}-{i}-s{s}{'' if args.budget == 1 else f'-x{args.budget:g}'}.json"
                job = {"method": m, "grid": i, "seed": s, "settings": {**shared, **point}, "path": str(path)}
                if path.is_file():
                    found.append(json.loads(path.read_text()))
                else:
                    jobs.append(job)
    print(f"{args.table}: {len(means)} trees × {int(means['seeds'].max())} seeds; {len(jobs)} searches to run "
          f"({len(found)} done earlier), {args.workers} worker(s)", flush=True)
    t0 = time.perf_counter()
    if jobs:
        for i, res in enumerate(run_jobs(_search, jobs, args.workers, _init, (args.table, args.smoke)), start=1):
            found.append(res)
            point = {k: v for k, v in res["settings"].items() if k in ("lam", "child_nodes", "target_madds")}
            print(f"[{i}/{len(jobs)}] {res['method']} {json.dumps(point)} seed {res['seed']}: {res['cpu_s']:.0f} CPU s, "
                  f"tree {res['arch_hash']}, {time.perf_counter() - t0:.0f} s elapsed", flush=True)
    trees = pd.DataFrame(found)
    if "random" in methods:
        retrain = float(rows["time_s"].mean())  # one tree, one seed (1 thread)
        per_seed = trees.groupby(["method", "seed"])["cpu_s"].sum() if len(trees) else pd.Series(dtype=float)
        grid_size = trees.groupby(["method", "seed"])["arch_hash"].size() if len(trees) else pd.Series(dtype=float)
        budget = float((per_seed + grid_size * retrain).groupby("method").mean().max()) if len(per_seed) else 10 * retrain
        k = max(1, round(budget / retrain))
        names = manifest["tasks"]
        num_layers = int(manifest["num_layers"])
        nseg = len(segments(pre.branch_points, num_layers))
        extra = []
        for s in range(args.search_seeds):
            rng = random.Random(1000 + s)
            for j in range(k):
                coarse = random_tree(names, nseg, rng)
                tree = from_segments(names, pre.branch_points, num_layers, coarse.partitions)
                extra.append({"method": "random", "grid": j, "seed": s, "arch_hash": tree.arch_hash(),
                              "arch": tree.to_json(indent=None), "cpu_s": retrain, "settings": {}})
        print(f"random: {k} trees per seed (the CPU budget of the costliest method's seed, {budget:.0f} s, "
              f"at {retrain:.1f} s per retrained tree)")
        trees = pd.concat([trees, pd.DataFrame(extra)], ignore_index=True)
    missing = sorted(set(trees["arch_hash"]) - set(means.index))
    if missing:
        raise ConfigError(f"{len(missing)} exported tree(s) are not in the table (e.g. {missing[0]}): another space?")
    trees["madds"] = trees["arch_hash"].map(means["madds"])
    trees["delta_m"] = trees["arch_hash"].map(means["delta_m"])
    trees["regret"] = [analysis.regret(means, h) for h in trees["arch_hash"]]
    trees["recovers"] = [recovers(a, manifest["designed"]) for a in trees["arch"]]
    scores = []
    for m in methods:
        part = trees[trees["method"] == m]
        per = []
        for s, seed_part in part.groupby("seed"):
            hashes = list(seed_part["arch_hash"])
            per.append({"seed": s, "hv": analysis.hypervolume_fraction(means, hashes, ref),
                        "regret": float(seed_part["regret"].mean()), "recovered": bool(seed_part["recovers"].any()),
                        "cpu_s": float(seed_part["cpu_s"].sum()), "trees": len(set(hashes))})
        per = pd.DataFrame(per)
        scores.append({"method": m, "hv_fraction": per["hv"].mean(), "hv_fraction/se": analysis.standard_error(per["hv"]),
                       "regret": per["regret"].mean(), "regret/se": analysis.standard_error(per["regret"]),
                       "recovered": int(per["recovered"].sum()), "seeds": len(per),
                       "cpu_s": per["cpu_s"].mean(), "trees_per_seed": per["trees"].mean()})
    scores = pd.DataFrame(scores)
    scores.to_csv(out / "scores.csv", index=False)
    trees.drop(columns=["path"], errors="ignore").to_csv(out / "trees.csv", index=False)
    designed = manifest.get("designed_hash")
    print(f"\n# {args.table}: searches scored against {len(means)} trees × {int(means['seeds'].max())} seeds "
          f"(table commit {manifest.get('commit', '?')[:12]})\n")
    print("| method | hypervolume (% of exhaustive) | regret (Δm points) | designed groups recovered | CPU s per seed | trees per seed |")
    print("|---|---|---|---|---|---|")
    for r in scores.to_dict("records"):
        print(f"| {r['method']} | {analysis.format_mean_se(100 * r['hv_fraction'], 100 * r['hv_fraction/se'])} | "
              f"{analysis.format_mean_se(r['regret'], r['regret/se'])} | {r['recovered']} of {r['seeds']} | "
              f"{r['cpu_s']:.0f} | {r['trees_per_seed']:.1f} |")
    front = analysis.exhaustive_front(means)
    arch_of = rows.drop_duplicates("arch_hash").set_index("arch_hash")["arch"]
    grouped = sum(recovers(arch_of[h], manifest["designed"]) for h in front.index)
    print(f"| exhaustive front | 100 | 0 | {grouped} of {len(front)} front trees have the designed "
          f"groups (the designed tree {'is' if designed in set(front.index) else 'is not'} on the front) | — | "
          f"{len(front)} |")
    if hasattr(analysis, "truth_plot"):
        from analysis.plots import save

        by_method = {m: list(dict.fromkeys(trees.loc[trees["method"] == m, "arch_hash"])) for m in methods}
        fig = analysis.truth_plot(means, {m: means.loc[h] for m, h in by_method.items() if h},
                                  title=f"{args.table}: every tree and the searches' trees")
        save(fig, out / "truth.png")
    print(f"\nwrote {out / 'scores.csv'}, {out / 'trees.csv'}" + (f", {out / 'truth.png'}" if (out / "truth.png").exists() else ""))
    if not math.isfinite(float(scores["hv_fraction"].iloc[0])):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
