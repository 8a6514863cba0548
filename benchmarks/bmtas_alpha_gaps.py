"""Are BMTAS's decisions made by α or by the Gumbel noise? α gaps at the end of the main job's searches.

    python benchmarks/bmtas_alpha_gaps.py --seeds 5                    # the main job's budget, λ = 1
    python benchmarks/bmtas_alpha_gaps.py --seeds 5 --budget 4

Runs the main job's BMTAS search (the synthetic-dense truth table's search settings, which are the main
job's, and its branch points) with ``--seeds`` search seeds and reads α at the end of the search. For every segment and
task it takes the gap between the two largest α (the margin by which the exported choice wins) and compares
it with the spread of the Gumbel noise the samples add (standard deviation π/√6 ≈ 1.28): with gaps far
below it, the routes trained during the search are close to uniform draws and the exported argmax is
decided by small differences that another seed does not reproduce. Also prints the exported trees (their
agreement across seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

GUMBEL_STD = math.pi / math.sqrt(6)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--lam", type=float, default=1.0, help="λ (normalized, the main job's preset point: 1)")
    p.add_argument("--budget", type=float, default=1.0, help="multiply warm-up and search iterations")
    args = p.parse_args(argv)
    if args.seeds < 1 or not args.budget > 0:
        print("error: --seeds must be >= 1 and --budget > 0", file=sys.stderr)
        return 2
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the searches of a sweep trial run; restored at the end
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from branchsweep.search import SEARCH_METHODS, SearchContext
    from branchsweep.search.base import run_method
    from branchsweep.truth import TableContext, groups_label, preset

    table = preset("synthetic-dense")
    settings = dict(table.search["bmtas"], lam=args.lam, checkpoint_every=0)  # the main job's search settings
    for k in ("iterations", "warmup_iterations"):
        settings[k] = max(1, round(settings[k] * args.budget))
    ctx = TableContext.build(table)
    method = SEARCH_METHODS.get("bmtas")
    gaps_all, trees = [], []
    print(f"BMTAS, λ {args.lam} (normalized), {settings['warmup_iterations']} warm-up + {settings['iterations']} "
          f"iterations, branch points {ctx.preset.branch_points}; Gumbel noise std {GUMBEL_STD:.2f}\n")
    print("| seed | median gap | largest gap | gaps < Gumbel std | exported tree |")
    print("|---|---|---|---|---|")
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            sctx = SearchContext(data=ctx.data, spec=ctx.spec, tasks=ctx.tasks, out_dir=Path(tmp), seed=seed,
                                 progress=False, branch_points=ctx.preset.branch_points)
            result = run_method(method, method.make_config(settings), sctx)
            log = [json.loads(line) for line in (Path(tmp) / "search_log.jsonl").read_text().splitlines()]
        alpha = next(e["alpha"] for e in reversed(log) if "alpha" in e)  # [segments][task][candidate]
        gaps = []
        for seg in alpha:
            for row in seg:
                top = sorted(row, reverse=True)
                gaps.append(top[0] - top[1])
        gaps_all += gaps
        tree = groups_label(result.config, ctx.preset.branch_points)
        trees.append(tree)
        below = sum(g < GUMBEL_STD for g in gaps)
        print(f"| {seed} | {statistics.median(gaps):.2f} | {max(gaps):.2f} | {below} of {len(gaps)} | {tree} |",
              flush=True)
    below = sum(g < GUMBEL_STD for g in gaps_all)
    print(f"\nall seeds: median gap {statistics.median(gaps_all):.2f}, {below} of {len(gaps_all)} gaps below the "
          f"Gumbel std; {len(set(trees))} distinct trees in {len(trees)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
