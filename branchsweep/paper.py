"""The BMTAS paper's recipe per data set and backbone (Bruggemann et al., BMVC 2020, supplement A).

One place for the numbers the ``search`` and ``train`` commands default to on the paper's data sets,
the sweep presets of the paper's tables and docs/fidelity.md:

* batch size per backbone, in the search and in retraining: MobileNetV2 16, ResNet-50 8;
* 40 000 search and retrain iterations after 2 000 warm-up iterations on PASCAL-Context, halved on
  NYUD-v2 ("the number of training iterations was halved"; the reference's warm-up is a fixed 1/20
  of the search epochs, so it halves too);
* ImageNet initialisation;
* λ: the paper's grids per table, mapped onto branchsweep's exact resource loss (absolute mode) by
  ``λ = 2 · T · λ_paper · ρ`` (:func:`map_lambda`; ρ measured by benchmarks/bmtas_lambda_mapping.py).

>>> paper_batch("resnet50"), paper_iterations("nyud"), map_lambda(0.05, 5, "mobilenet_v2", "pascal-context")
(8, 20000, 0.242)
"""

from __future__ import annotations

#: Batch size of search and retraining per backbone (supplement A).
BATCH = {"mobilenet_v2": 16, "resnet50": 8}
#: Search = retrain iterations, and warm-up iterations, per data set.
ITERATIONS = {"pascal-context": 40000, "nyud": 20000}
WARMUP_ITERATIONS = {"pascal-context": 2000, "nyud": 1000}
#: The paper's λ grids (BMTAS-1, -2, -3) per (backbone, data set): Table 1, Table S2, Table 2.
LAMBDAS = {("mobilenet_v2", "pascal-context"): (0.1, 0.05, 0.02),
           ("resnet50", "pascal-context"): (0.02, 0.005, 0.001),
           ("resnet50", "nyud"): (5e-3, 1e-3, 2e-4)}
#: ρ: least-squares scale of the reference's resource gradient (upper-bound loss, MAdds) onto the exact
#: loss's, median over random tree states of α on the paper's MAdds tables (docs/fidelity.md).
RHO = {("mobilenet_v2", "pascal-context"): 0.485, ("resnet50", "pascal-context"): 0.675,
       ("resnet50", "nyud"): 0.742}


def paper_batch(backbone: str) -> int | None:
    return BATCH.get(backbone)


def paper_iterations(dataset: str) -> int | None:
    return ITERATIONS.get(dataset)


def map_lambda(lam_paper: float, num_tasks: int, backbone: str, dataset: str) -> float:
    """branchsweep's absolute λ for the paper's ``lam_paper`` (3 significant digits).

    The reference adds ``λ_paper · UB`` (GFLOPs ≈ 2 × GMAdds) once per task of an α step; ρ corrects
    for the exact loss's steeper gradient. Unmeasured pairs use the median ρ of the measured ones.
    """
    rho = RHO.get((backbone, dataset), sorted(RHO.values())[len(RHO) // 2])
    return float(f"{2 * num_tasks * lam_paper * rho:.3g}")


def paper_lambdas(backbone: str, dataset: str, num_tasks: int) -> list[float] | None:
    """The mapped λ of BMTAS-1/2/3 for the paper's table of ``backbone`` on ``dataset`` (None: no table)."""
    grid = LAMBDAS.get((backbone, dataset))
    return None if grid is None else [map_lambda(lam, num_tasks, backbone, dataset) for lam in grid]
