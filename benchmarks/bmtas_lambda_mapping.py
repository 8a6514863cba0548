"""Calibrate the paper's λ for branchsweep's exact resource loss, on the MAdds look-up tables.

The reference code (github.com/brdav/bmtas) adds ``λ_paper · UB(α)`` to the loss of *every task* of an
α step (T times per step), where ``UB`` is its partition recursion in GFLOPs (multiplies + adds, ≈ 2 ×
MAdds) — an upper bound of the expected cost. branchsweep adds ``λ · E[C] / 1e9`` once, with ``E[C]``
the exact expected MAdds. Adam normalises the *sum* of task and resource gradients, so a λ lands on
the paper's operating point when ``λ ∇E[C]/1e9 ≈ T λ_paper ∇UB``, i.e.

    λ = 2 · T · λ_paper · ρ,    ρ = <∇UB_MAdds, ∇E> / ‖∇E‖²

(``ρ``: least-squares scale of the reference's gradient onto ours, ``UB_MAdds`` = UB with the LUT in
MAdds). ``ρ`` depends on where α is; this script measures it on the paper's LUTs (512² PASCAL-Context,
560² NYUD-v2, counted on the meta device) at α = 0 (every search starts there) and along random
tree architectures ``α = s · onehot(arch)`` (s = 0.1, 0.5, 1, 2, 4) as the search sharpens (at
α = 0 both gradients vanish by symmetry: the warm-up breaks it), and prints ρ per s, its median over
all states and the mapped grids. Needs the reference checkout (``--reference``) for its
``BranchingLoss``::

    python benchmarks/bmtas_lambda_mapping.py --reference ../bmtas
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_reference import check_reference, import_reference  # noqa: E402

from branchsweep.backbones import create_backbone  # noqa: E402
from branchsweep.madds import measure_table  # noqa: E402
from branchsweep.search.resource import expected_madds  # noqa: E402
from branchsweep.tasks import create_task  # noqa: E402

TABLES = {  # name: backbone, input size, tasks (name, classes), paper λ grid, paper BMTAS-1/2/3 GMAdds
    "Table 1 (MobileNetV2, PASCAL-Context)": ("mobilenet_v2", 512, [("semseg", 21), ("human_parts", 7), ("sal", 0),
                                                                     ("normals", 0), ("edge", 0)],
                                              [0.1, 0.05, 0.02], [7.5, 9.1, 12.5]),
    "Table S2 (ResNet-50, PASCAL-Context)": ("resnet50", 512, [("semseg", 21), ("human_parts", 7), ("sal", 0),
                                                                ("normals", 0), ("edge", 0)],
                                             [0.02, 0.005, 0.001], [199.0, 225.8, 298.2]),
    "Table 2 (ResNet-50, NYUD-v2)": ("resnet50", 560, [("semseg", 40), ("depth", 0), ("normals", 0), ("edge", 0)],
                                     [5e-3, 1e-3, 2e-4], [155.8, 223.7, 248.3]),
}


def lut(backbone: str, size: int, tasks: list[tuple[str, int]]) -> torch.Tensor:
    with torch.device("meta"):
        spec = create_backbone(backbone, input_size=size)
        made = [create_task(n, num_classes=c) if c else create_task(n) for n, c in tasks]
        table = measure_table(spec, made)
    return torch.tensor(table.layers, dtype=torch.float64)


class _Model:
    """What the reference's ``BranchingLoss`` reads from its supergraph: ``alphas``, ``tasks``,
    ``encoder`` (its length) and ``get_flops()`` (FLOPs per layer)."""

    def __init__(self, alpha: torch.Tensor, flops: list[float]) -> None:
        self.alphas = [torch.nn.Parameter(a.clone()) for a in alpha]
        self.tasks = list(range(alpha.shape[1]))
        self.encoder = [None] * alpha.shape[0]
        self._flops = flops

    def get_flops(self) -> list[float]:
        return self._flops


def random_tree(num_layers: int, num_tasks: int, gen: torch.Generator) -> torch.Tensor:
    """Op indices ``[L, T]`` of a random tree: groups split at random layers, never merge."""
    ops = torch.zeros(num_layers, num_tasks, dtype=torch.long)
    groups = [list(range(num_tasks))]
    for layer in range(num_layers):
        if torch.rand((), generator=gen) < 0.25:
            g = groups.pop(int(torch.randint(len(groups), (), generator=gen)))
            if len(g) > 1:
                cut = int(torch.randint(1, len(g), (), generator=gen))
                groups += [g[:cut], g[cut:]]
            else:
                groups.append(g)
        for g in groups:
            for t in g:
                ops[layer, t] = g[0]  # a group uses the candidate of its first task
    return ops


SCALES = (0.1, 0.5, 1.0, 2.0, 4.0)


def ratios(criterion, costs: torch.Tensor, num_tasks: int, samples: int, seed: int) -> list[tuple[float, float]]:
    gen = torch.Generator().manual_seed(seed)
    num_layers = len(costs)
    states = []
    for _ in range(samples):
        onehot = torch.nn.functional.one_hot(random_tree(num_layers, num_tasks, gen), num_tasks).double()
        states += [(s, s * onehot) for s in SCALES]
    out = []
    for s, alpha in states:
        model = _Model(alpha.float(), [float(c) for c in costs])  # UB in MAdds (×1: the 2 is applied below)
        ub = criterion.BranchingLoss(model)
        ub.weights = ub.weights.double() * 1e9  # back from "G" to MAdds, float64
        model.alphas = [torch.nn.Parameter(a) for a in alpha]
        ub.alphas = model.alphas
        g_ub = torch.stack(torch.autograd.grad(ub(), model.alphas))
        a = alpha.clone().requires_grad_(True)
        (g_e,) = torch.autograd.grad(expected_madds(torch.softmax(a, -1), costs, "exact"), [a])
        out.append((s, float((g_ub * g_e).sum() / (g_e * g_e).sum())))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="checkout of github.com/brdav/bmtas")
    p.add_argument("--samples", type=int, default=40, help="random tree architectures per table")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    _, criterion = import_reference(check_reference(args.reference))
    print("| table | T | " + " | ".join(f"ρ, s = {s:g}" for s in SCALES) + " | ρ median [quartiles] | paper λ | "
          "mapped λ = 2·T·λ·ρ | paper BMTAS-1/2/3 GMAdds |")
    print("|---|---|" + "---|" * len(SCALES) + "---|---|---|---|")
    for name, (backbone, size, tasks, grid, gmadds) in TABLES.items():
        costs = lut(backbone, size, tasks)
        r = ratios(criterion, costs, len(tasks), args.samples, args.seed)
        values = [v for _, v in r]
        q = statistics.quantiles(values, n=4)
        med = statistics.median(values)
        per_s = " | ".join(f"{statistics.median(v for s2, v in r if s2 == s):.3f}" for s in SCALES)
        mapped = [2 * len(tasks) * lam * med for lam in grid]
        print(f"| {name} | {len(tasks)} | {per_s} | {med:.3f} [{q[0]:.3f}, {q[2]:.3f}] | "
              f"{', '.join(f'{v:g}' for v in grid)} | {', '.join(f'{v:.3g}' for v in mapped)} | "
              f"{', '.join(f'{v:g}' for v in gmadds)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
