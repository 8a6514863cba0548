"""Retrain every tree of a branch-point space with several seeds: a truth table (branchsweep/truth.py).

    python benchmarks/exhaustive_table.py --table synthetic-dense          # ~1 h on 2 cores
    python benchmarks/exhaustive_table.py --table ltb-regressions
    python benchmarks/exhaustive_table.py --table synthetic-dense --limit 3 --seeds 2 --out /tmp/t   # a check

Enumerates every distinct tree of the preset's tasks over its branch points (154 for 4 tasks and 3
branch points; the count is checked against the closed form), retrains each with ``--seeds`` seeds under
the preset's recipe (the seeds of one tree as one fused network, ``--workers`` processes of one thread),
and writes ``rows.csv`` (one row per tree × seed: tree, MAdds, parameters, every task metric, Δm against
Single's mean and against Single of the same seed) and ``manifest.json`` (recipe and its hash, commit,
command, wall time) into ``--out`` (default: the committed ``branchsweep/truth_tables/<table>/``). Each
tree's rows are kept in ``--work`` as they finish, so an interrupted run continues where it stopped.
At the end it prints whether the grouping matters in this table (:func:`analysis.grouping_evidence`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

_CTX = None



def _worker_init(name: str, smoke: bool) -> None:
    import torch

    torch.set_num_threads(1)
    global _CTX
    from branchsweep.truth import TableContext, preset

    _CTX = TableContext.build(preset(name, smoke))


def _retrain(job: tuple[str, list[int], str]) -> tuple[str, list[dict]]:
    from branchsweep.arch import BranchConfig
    from branchsweep.truth import retrain_rows

    arch, seeds, path = job
    tree = BranchConfig.from_json(arch)
    rows = retrain_rows(_CTX, [tree], seeds, say=lambda _: None)
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, path)
    return path, rows


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return out + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    from branchsweep.errors import BranchsweepError
    from branchsweep.truth import TABLES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True, help=f"preset: {', '.join(TABLES.names())}")
    p.add_argument("--seeds", type=int, default=None, help="retrain seeds per tree (default: the preset's, 5)")
    p.add_argument("--workers", type=int, default=2, help="processes of one thread each (default 2)")
    p.add_argument("--limit", type=int, default=None, help="only the first N trees, Single always included (a check)")
    p.add_argument("--smoke", action="store_true", help="seconds-scale check: tiny data, 2 iterations per retrain")
    p.add_argument("--out", type=Path, default=None, help="where rows.csv and manifest.json go")
    p.add_argument("--work", type=Path, default=None, help="per-tree rows as they finish (default OUT/.work)")
    args = p.parse_args(argv)
    try:
        return run(args)
    except BranchsweepError as err:
        print(f"error: {str(err).strip(chr(39))}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    import analysis
    from branchsweep.arch import BranchConfig
    from branchsweep.config import to_dict
    from branchsweep.errors import ConfigError
    from branchsweep.madds import madds_table
    from branchsweep.tree_space import count_trees, enumerate_trees, segments
    from branchsweep.truth import (
        MANIFEST_FILE,
        ROWS_FILE,
        TABLE_VERSION,
        TableContext,
        add_delta_m,
        preset,
        recipe,
        recipe_hash,
        run_jobs,
        table_dir,
    )

    if args.workers < 1 or (args.seeds is not None and args.seeds < 1) or (args.limit is not None and args.limit < 1):
        raise ConfigError("--workers, --seeds and --limit must be >= 1")
    commit = _commit()  # the code that trains the table, recorded before it runs
    pre = preset(args.table, args.smoke)
    seeds = list(range(args.seeds or pre.seeds))
    ctx = TableContext.build(pre)
    names = [t.name for t in ctx.tasks]
    trees = enumerate_trees(names, pre.branch_points, ctx.spec.num_layers)
    expected = count_trees(len(names), len(segments(pre.branch_points, ctx.spec.num_layers)))
    if len(trees) != expected:
        raise AssertionError(f"enumerated {len(trees)} trees, the closed form says {expected}")
    single = BranchConfig.single(names, ctx.spec.num_layers)
    if args.limit is not None:
        designed = pre.designed_tree(ctx.spec.num_layers)
        trees = [single, designed, *[t for t in trees if t not in (single, designed)]][: max(args.limit, 2)]
    if args.smoke and args.out is None:
        raise ConfigError("--smoke needs --out (a smoke table is never committed)")
    out = args.out or table_dir(pre.name)
    work = args.work or out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    key = recipe_hash(pre.data, pre.model, pre.train)
    jobs, done = [], {}
    for tree in trees:
        # The recipe hash in the name: rows of another recipe (an edited preset) are never reused.
        path = work / f"{key}-{tree.arch_hash()}-s{'-'.join(map(str, seeds))}.json"
        if path.is_file():
            done[tree.arch_hash()] = json.loads(path.read_text())
        else:
            jobs.append((tree.to_json(indent=None), seeds, str(path)))
    # Costliest trees first, so the last ones to finish are short and the workers end together.
    table = madds_table(ctx.spec, ctx.tasks)
    jobs.sort(key=lambda j: -table.madds(BranchConfig.from_json(j[0])))
    print(f"{pre.name}: {len(trees)} trees × {len(seeds)} seeds ({expected} in the space); {len(done)} trees done "
          f"earlier, {len(jobs)} to train with {args.workers} worker(s)", flush=True)
    t0 = time.perf_counter()
    if jobs:
        results = run_jobs(_retrain, jobs, args.workers, _worker_init, (args.table, args.smoke))
        for i, (_path, rows) in enumerate(results, start=1):
            done[rows[0]["arch_hash"]] = rows
            elapsed = time.perf_counter() - t0
            eta = elapsed / i * (len(jobs) - i)
            print(f"[{i}/{len(jobs)}] {rows[0]['tree']}: {elapsed:.0f} s elapsed, ~{eta:.0f} s left", flush=True)
    wall = time.perf_counter() - t0
    order = {t.arch_hash(): i for i, t in enumerate(trees)}
    rows = pd.DataFrame([r for h in sorted(done, key=lambda h: order.get(h, len(order))) for r in done[h]
                         if h in order])
    from branchsweep.truth import groups_label

    rows["tree"] = [groups_label(BranchConfig.from_json(a), pre.branch_points) for a in rows["arch"]]
    rows = add_delta_m(rows, ctx.tasks)
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / ROWS_FILE, index=False, float_format="%.6g")
    import torch

    manifest = {
        "version": TABLE_VERSION, "table": pre.name, "description": pre.description,
        "recipe_hash": recipe_hash(pre.data, pre.model, pre.train),
        "recipe": recipe(pre.data, pre.model, pre.train), "train": to_dict(pre.train),
        "branch_points": list(pre.branch_points), "num_layers": ctx.spec.num_layers, "tasks": names,
        "designed": [list(g) for g in pre.designed], "designed_at": pre.designed_at,
        "designed_hash": pre.designed_tree(ctx.spec.num_layers).arch_hash(),
        "trees": len(trees), "trees_in_space": expected, "seeds": seeds,
        "commit": commit, "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
        "wall_time_s": round(wall, 1), "workers": args.workers, "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {out / ROWS_FILE} ({len(rows)} rows) and {out / MANIFEST_FILE} in {wall:.0f} s")
    designed = manifest["designed_hash"] if manifest["designed_hash"] in set(rows["arch_hash"]) else None
    for line in analysis.grouping_evidence(rows, designed):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
