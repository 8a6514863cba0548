"""MAdds against measured latency for every architecture of a sweep (e.g. the main job's).

    python benchmarks/madds_vs_latency.py RUN_DIR --out /tmp/latency
    python benchmarks/madds_vs_latency.py RUN_DIR --runtimes torch,onnxruntime --batch 1 --threads 1 --rounds 3

Every distinct architecture of the sweep's results (one per ``arch_hash``: Single, Shared, the searched
trees and the control trees) is rebuilt from its ``arch_json`` with the sweep's data set and backbone
(untrained weights: they do not change the time of a forward pass) and timed in this process with
:func:`branchsweep.latency.measure`, once per runtime. The architectures are timed round-robin for
``--rounds`` rounds (each a warm-up and ``--repeats`` timed passes) and each gets the median of its
round medians, so a slow spell of the machine hits every architecture alike; every latency is also
given as a ratio to Single's, measured in the same rounds, and with its spread (slowest minus fastest
round median, in % of the median), the noise of the measurement.

Prints one table (MAdds, parameters, mean Δm, on the front or not, median latency and ratio to Single
per runtime) and Spearman's rank correlation between MAdds and each runtime's latency over the
architectures; writes ``latency.csv`` and ``madds_vs_latency.png`` (the first runtime) into ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a sweep folder (results.parquet and sweep.json)")
    p.add_argument("--out", type=Path, default=None, help="folder for latency.csv and the figure (default: RUN_DIR/latency)")
    p.add_argument("--runtimes", default="torch,onnxruntime", help="comma-separated: torch, onnxruntime")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30, help="timed passes per architecture and round")
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds over the architectures")
    p.add_argument("--root", default=None, help="data root, if the sweep's moved")
    return p.parse_args(argv)


def architectures(run_dir: Path):
    """One row per distinct successful architecture: label (a baseline's label first), method, MAdds,
    params, mean Δm over the rows of that architecture, and whether it is on the sweep's front."""
    import pandas as pd

    from branchsweep.runs import sweep_report

    report = sweep_report(run_dir)
    results, front = report.results, report.front
    ok = results[(results["status"] == "ok") & results["arch_json"].notna()].copy()
    ok["_order"] = ~ok["is_baseline"].fillna(False).astype(bool)  # Single/Shared name their trees
    rows = []
    for arch_hash, group in ok.sort_values(["_order", "madds"]).groupby("arch_hash", sort=False):
        first = group.iloc[0]
        rows.append({"arch_hash": arch_hash, "label": first["label"], "method": first["method"],
                     "is_baseline": bool(first["is_baseline"]), "madds": int(first["madds"]),
                     "params": int(first["params"]), "delta_m": float(pd.to_numeric(group["delta_m"]).mean()),
                     "on_front": arch_hash in set(front["arch_hash"].astype(str)), "arch_json": first["arch_json"]})
    return pd.DataFrame(rows).sort_values("madds", kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from analysis.plots import cost_plot, save
    from analysis.report import cost_rank_correlation
    from analysis.tables import markdown_table
    from branchsweep.arch import BranchConfig
    from branchsweep.commands.report import sweep_recipe
    from branchsweep.errors import BranchsweepError
    from branchsweep.latency import LatencySettings, measure
    from branchsweep.runs import build_network, validation_batch

    try:
        recipe = sweep_recipe(args.run_dir)
        if recipe is None:
            raise BranchsweepError(f"{args.run_dir} holds no readable sweep.json: not a sweep folder")
        data_cfg, model_cfg, _ = recipe
        runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        settings = {r: LatencySettings(device=args.device, batch=args.batch, threads=args.threads,
                                       warmup=args.warmup, repeats=args.repeats, runtime=r) for r in runtimes}
        for s in settings.values():
            s.check_available()
        if args.rounds < 1:
            raise BranchsweepError(f"--rounds must be >= 1, got {args.rounds}")
        archs = architectures(args.run_dir)
    except BranchsweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.run_dir / "latency"
    out.mkdir(parents=True, exist_ok=True)
    nets = []
    for _, row in archs.iterrows():
        config = BranchConfig.from_json(row["arch_json"], source=f"arch_json of {row['label']}")
        data, _, _, model = build_network(data_cfg, model_cfg, config, root=args.root)
        nets.append(model.eval())
    example = validation_batch(data, 1)
    print(f"{len(nets)} architectures of {args.run_dir}; {args.device}, batch {args.batch}, {args.threads} "
          f"thread(s), {args.rounds} rounds x ({args.warmup} warm-up + {args.repeats} timed passes); "
          f"torch {torch.__version__}", flush=True)
    times: dict[str, list[list[float]]] = {r: [[] for _ in nets] for r in runtimes}
    t0 = time.perf_counter()
    for round_ in range(args.rounds):
        for runtime in runtimes:
            for i, model in enumerate(nets):
                times[runtime][i].append(measure(model, example, settings[runtime]).median_ms)
        print(f"round {round_ + 1}/{args.rounds} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    table = archs.drop(columns=["arch_json"])
    single = int(table.index[table["method"] == "single"][0]) if (table["method"] == "single").any() else None
    for runtime in runtimes:
        medians = [statistics.median(t) for t in times[runtime]]
        table[f"{runtime} ms"] = [round(m, 4) for m in medians]
        # how far the rounds disagree: (slowest − fastest round median) / median, in %
        table[f"{runtime} spread %"] = [round(100 * (max(t) - min(t)) / m, 1) for t, m in zip(times[runtime], medians)]
        if single is not None:
            table[f"{runtime} / Single"] = [round(m / medians[single], 3) for m in medians]
    table.to_csv(out / "latency.csv", index=False)
    shown = table.assign(MMAdds=(table["madds"] / 1e6).round(3), params=(table["params"] / 1e3).round(1),
                         delta_m=table["delta_m"].round(2), front=table["on_front"].map({True: "★", False: ""}))
    cols = ["label", "method", "front", "MMAdds", "params", "delta_m",
            *[c for c in table.columns if c.endswith((" ms", "/ Single", " spread %"))]]
    print(markdown_table(shown[cols].rename(columns={"params": "params [k]", "delta_m": "Δm [%]"})))
    first = runtimes[0]
    for runtime in runtimes:
        rho = cost_rank_correlation(table.assign(latency_ms=table[f"{runtime} ms"], status="ok"))
        if rho is not None:
            print(f"Spearman ρ(MAdds, {runtime} latency) = {rho[0]:.2f} over {rho[1]} architectures")
    rho = cost_rank_correlation(table.assign(latency_ms=table[f"{first} ms"], status="ok"))
    fig = cost_plot(table.assign(latency_ms=table[f"{first} ms"], status="ok"), rho=rho[0] if rho else None)
    save(fig, out / "madds_vs_latency.png")
    print(f"wrote {out / 'latency.csv'} and {out / 'madds_vs_latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
