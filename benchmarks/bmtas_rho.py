"""ρ(s): how the paper's resource gradient compares with the exact loss's as α sharpens.

branchsweep's exact loss ``E[C]`` (expected MAdds, ``--resource-estimator exact``) and the paper's
``UB`` (Eq. 6's upper bound, ``--resource-estimator paper``; both in MAdds here) have gradients of
different size *and* direction. The λ mapping ``λ = 2·T·λ_paper·ρ`` (branchsweep.paper) uses one
scalar

    ρ = <∇UB, ∇E> / ‖∇E‖²        (least-squares scale of the paper's gradient onto the exact one)

and this script shows how ρ and the cosine between the two gradients move with the sharpness ``s`` of
α: on ``--samples`` random trees (groups split at random layers and never merge) per ``s``,
``α = s · onehot(tree)``, for s = 0, 1, …, 10. At s = 0 both gradients vanish by symmetry (ρ is
undefined). No reference code is needed: the paper's loss is branchsweep's ``paper`` estimator, which
equals the authors' ``BranchingLoss`` (benchmarks/bmtas_resource_reference.py). Tables are the
paper's, counted on the meta device.

Writes the table (``--csv``, default docs/img/bmtas-rho.csv) and a plot (``--plot``, default
docs/img/bmtas-rho.png) and prints the table in Markdown::

    python benchmarks/bmtas_rho.py                      # the paper's three tables, 40 trees per s
    python benchmarks/bmtas_rho.py --tables table1 --csv /tmp/rho.csv --plot /tmp/rho.png
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bmtas_lambda_mapping import TABLES, lut, random_tree  # noqa: E402

from branchsweep.search.resource import expected_madds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"table1": "Table 1 (MobileNetV2, PASCAL-Context)", "tableS2": "Table S2 (ResNet-50, PASCAL-Context)",
         "table2": "Table 2 (ResNet-50, NYUD-v2)"}
SHARPNESS = tuple(float(s) for s in range(11))


def gradients(alpha: torch.Tensor, costs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∇E, ∇UB)`` w.r.t. α of the exact and the paper loss, both in MAdds."""
    out = []
    for method in ("exact", "paper"):
        a = alpha.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(expected_madds(torch.softmax(a, -1), costs, method), [a])
        out.append(g)
    return out[0], out[1]


def measure(costs: torch.Tensor, num_tasks: int, samples: int, seed: int) -> list[dict]:
    """Per sharpness: ρ and cosine, median and quartiles over ``samples`` random trees."""
    gen = torch.Generator().manual_seed(seed)
    trees = [torch.nn.functional.one_hot(random_tree(len(costs), num_tasks, gen), num_tasks).double()
             for _ in range(samples)]
    rows = []
    for s in SHARPNESS:
        rho, cos = [], []
        for onehot in trees:
            g_e, g_ub = gradients(s * onehot, costs)
            norm = float(g_e.norm() * g_ub.norm())
            if norm <= 1e-12 * float(costs.sum()) ** 2:
                continue  # s = 0: both gradients vanish
            rho.append(float((g_ub * g_e).sum() / (g_e * g_e).sum()))
            cos.append(float((g_ub * g_e).sum()) / norm)
        if len(rho) < 2:
            rows.append({"s": s, "states": len(rho)})
            continue
        q = statistics.quantiles(rho, n=4)
        rows.append({"s": s, "states": len(rho), "rho_median": statistics.median(rho), "rho_q1": q[0], "rho_q3": q[2],
                     "cos_median": statistics.median(cos), "cos_min": min(cos)})
    return rows


def plot(results: dict[str, list[dict]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    ax_rho, ax_cos = fig.subplots(1, 2)
    for name, rows in results.items():
        ok = [r for r in rows if "rho_median" in r]
        s = [r["s"] for r in ok]
        line = ax_rho.plot(s, [r["rho_median"] for r in ok], marker="o", label=SHORT[name])[0]
        ax_rho.fill_between(s, [r["rho_q1"] for r in ok], [r["rho_q3"] for r in ok], alpha=0.2,
                            color=line.get_color())
        ax_cos.plot(s, [r["cos_median"] for r in ok], marker="o", color=line.get_color())
    ax_rho.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax_rho.set(xlabel="sharpness s (α = s · onehot(tree))", ylabel="ρ = ⟨∇UB, ∇E⟩ / ‖∇E‖²",
               title="ρ: median, quartiles shaded")
    ax_cos.set(xlabel="sharpness s", ylabel="cos(∇UB, ∇E)", title="cosine between the gradients (median)")
    ax_rho.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", default="all", help=f"comma-separated of {', '.join(SHORT)}, or all (the default)")
    p.add_argument("--samples", type=int, default=40, help="random trees per sharpness (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", type=Path, default=ROOT / "docs" / "img" / "bmtas-rho.csv")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "bmtas-rho.png")
    args = p.parse_args(argv)
    names = list(SHORT) if args.tables == "all" else [n.strip() for n in args.tables.split(",") if n.strip()]
    bad = [n for n in names if n not in SHORT]
    if bad or not names or args.samples < 2:
        print(f"error: {'unknown table ' + bad[0] if bad else 'bad --tables or --samples < 2'} "
              f"(tables: {', '.join(SHORT)}, all)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    results = {}
    for name in names:
        backbone, size, tasks, _, _ = TABLES[SHORT[name]]
        results[name] = measure(lut(backbone, size, tasks), len(tasks), args.samples, args.seed)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    fields = ["table", "s", "states", "rho_median", "rho_q1", "rho_q3", "cos_median", "cos_min"]
    with args.csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for name, rows in results.items():
            for r in rows:
                writer.writerow({"table": name, **{k: (f"{v:.4f}" if isinstance(v, float) and k != "s" else v)
                                                   for k, v in r.items()}})
    plot(results, args.plot)
    print("| table | s | ρ median [quartiles] | cosine median (min) |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        for r in rows:
            if "rho_median" not in r:
                print(f"| {name} | {r['s']:g} | — (gradients vanish) | — |")
                continue
            print(f"| {name} | {r['s']:g} | {r['rho_median']:.3f} [{r['rho_q1']:.3f}, {r['rho_q3']:.3f}] | "
                  f"{r['cos_median']:.3f} ({r['cos_min']:.3f}) |")
    print(f"wrote {args.csv} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
