"""``--resource-estimator paper`` side by side with the authors' ``BranchingLoss`` on random α states.

The authors' code (github.com/brdav/bmtas, imported from ``--reference PATH``; this repository holds
none of it) builds its resource loss from a supergraph's ``alphas`` (one ``[T, T]`` tensor per layer)
and its per-layer FLOPs table. Here it is given branchsweep's MAdds look-up tables in the paper's unit
— GFLOPs, 2 × MAdds / 1e9 — of two of the paper's settings (counted on the meta device, nothing
downloaded):

* MobileNetV2 on PASCAL-Context at 512² (Table 1): 18 layers, T = 5 (51 partitions + fully split);
* ResNet-50 on NYUD-v2 (Table 2): T = 4 (14 partitions + fully split).

Each α state is ``α = s · N(0, 1)`` drawn from ``torch.Generator().manual_seed(seed)`` in float64,
``s`` cycling through :data:`SHARPNESS`. Both losses run in float64 (the reference's look-up buffer is
float32 by construction; it is replaced by the same numbers in float64 so that only the formula is
compared). Printed per table: the largest relative difference of the loss value, and of the
α-gradient (per state, ``max |Δg| / max |g_ref|``), over the states, and the time of one value +
gradient of each.

``--write FILE`` also writes the frozen table that tests/search/test_resource_paper.py checks
(states by seed and sharpness, per-layer GFLOPs, the reference's loss and gradient)::

    python benchmarks/bmtas_resource_reference.py --reference /path/to/bmtas --states 20 \\
        --write tests/search/bmtas_paper_resource.json

A missing ``--reference`` path, or one that is not that code, ends with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_reference import UsageError, check_reference, import_reference  # noqa: E402
from bmtas_lambda_mapping import _Model, lut  # noqa: E402

from branchsweep.search.resource import paper_groups  # noqa: E402

#: name: backbone, input size (square), tasks (name, classes) — the settings of the paper's tables.
TABLES = {
    "mobilenet_v2/pascal-context": ("mobilenet_v2", 512, [("semseg", 21), ("human_parts", 7), ("sal", 0),
                                                          ("normals", 0), ("edge", 0)]),
    "resnet50/nyud": ("resnet50", 560, [("semseg", 40), ("depth", 0), ("normals", 0), ("edge", 0)]),
}
SHARPNESS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def alpha_state(seed: int, sharpness: float, num_layers: int, num_tasks: int) -> torch.Tensor:
    """The α state ``[L, T, T]`` of one seed (the frozen table's convention)."""
    gen = torch.Generator().manual_seed(seed)
    return sharpness * torch.randn(num_layers, num_tasks, num_tasks, generator=gen, dtype=torch.float64)


def reference_loss(criterion, layer_gflops: torch.Tensor, num_tasks: int):
    """The authors' ``BranchingLoss`` on ``layer_gflops`` (float64), and a function of α → (value, grad)."""
    alpha0 = torch.zeros(len(layer_gflops), num_tasks, num_tasks, dtype=torch.float64)
    model = _Model(alpha0, [float(g) * 1e9 for g in layer_gflops])
    loss = criterion.BranchingLoss(model)
    # its buffer is GFLOPs (float32) × blocks per partition; the same in float64:
    blocks = (loss.weights[0] / loss.weights[0, -1] * num_tasks).round().double()
    loss.weights = layer_gflops[:, None] * blocks[None, :]

    def run(alpha: torch.Tensor) -> tuple[float, torch.Tensor]:
        params = [torch.nn.Parameter(a.clone()) for a in alpha]
        loss.alphas = params
        value = loss()
        grads = torch.autograd.grad(value, params)
        return float(value.detach()), torch.stack(grads)

    return run


def ours(layer_gflops: torch.Tensor, alpha: torch.Tensor) -> tuple[float, torch.Tensor]:
    a = alpha.clone().requires_grad_(True)
    value = (paper_groups(torch.softmax(a, dim=-1)) * layer_gflops).sum()
    (grad,) = torch.autograd.grad(value, [a])
    return float(value), grad


def timed(fn, *args, reps: int = 5) -> tuple[float, tuple]:
    out = fn(*args)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(*args)
    return (time.perf_counter() - t0) / reps, out


def compare(criterion, name: str, states: int, seed: int) -> dict:
    backbone, size, tasks = TABLES[name]
    layer_gflops = 2 * lut(backbone, size, tasks) / 1e9
    num_layers, num_tasks = len(layer_gflops), len(tasks)
    ref = reference_loss(criterion, layer_gflops, num_tasks)
    rows, loss_rel, grad_rel, t_ref, t_ours = [], 0.0, 0.0, 0.0, 0.0
    for i in range(states):
        s = SHARPNESS[i % len(SHARPNESS)]
        state_seed = seed * 1000 + i
        alpha = alpha_state(state_seed, s, num_layers, num_tasks)
        dt_ref, (v_ref, g_ref) = timed(ref, alpha, reps=1 if i else 3)
        dt_ours, (v_ours, g_ours) = timed(ours, layer_gflops, alpha, reps=1 if i else 3)
        t_ref, t_ours = t_ref + dt_ref, t_ours + dt_ours
        loss_rel = max(loss_rel, abs(v_ours - v_ref) / abs(v_ref))
        grad_rel = max(grad_rel, float((g_ours - g_ref).abs().max() / g_ref.abs().max()))
        rows.append({"seed": state_seed, "sharpness": s, "loss": v_ref,
                     "grad": [float(f"{v:.10g}") for v in g_ref.flatten().tolist()]})
    return {"table": name, "num_layers": num_layers, "num_tasks": num_tasks,
            "layer_gflops": layer_gflops.tolist(), "states": rows, "loss_rel": loss_rel, "grad_rel": grad_rel,
            "ms_ref": 1e3 * t_ref / states, "ms_ours": 1e3 * t_ours / states}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", default=None, help="checkout of github.com/brdav/bmtas")
    p.add_argument("--states", type=int, default=20, help="random α states per table (default 20)")
    p.add_argument("--seed", type=int, default=0, help="states use seeds 1000·seed + i")
    p.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated, of {', '.join(TABLES)}")
    p.add_argument("--write", type=Path, default=None, help="also write the frozen table (JSON) here")
    args = p.parse_args(argv)
    try:
        names = [n.strip() for n in args.tables.split(",") if n.strip()]
        bad = [n for n in names if n not in TABLES]
        if bad or not names:
            raise UsageError(f"unknown table {bad[0] if bad else args.tables!r} (choose from {', '.join(TABLES)})")
        if args.states < 1:
            raise UsageError(f"--states must be >= 1, got {args.states}")
        root = check_reference(args.reference)
        _, criterion = import_reference(root)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    results = [compare(criterion, name, args.states, args.seed) for name in names]
    print("| table | T | layers | α states | max rel. diff, loss | max rel. diff, α-gradient | "
          "ms per value + gradient, reference | branchsweep |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['table']} | {r['num_tasks']} | {r['num_layers']} | {len(r['states'])} | {r['loss_rel']:.1e} | "
              f"{r['grad_rel']:.1e} | {r['ms_ref']:.1f} | {r['ms_ours']:.1f} |")
    if args.write is not None:
        source = (root / "src" / "criterion.py").read_bytes()
        fixture = {
            "about": "values and α-gradients of the authors' BranchingLoss (github.com/brdav/bmtas, src/criterion.py) "
                     "on branchsweep's MAdds tables in GFLOPs; α = sharpness · randn([L, T, T], float64, "
                     "torch.Generator().manual_seed(seed)); written by benchmarks/bmtas_resource_reference.py --write",
            "reference_criterion_sha256": hashlib.sha256(source).hexdigest(),
            "tables": {r["table"]: {k: r[k] for k in ("num_layers", "num_tasks", "layer_gflops", "states")}
                       for r in results},
        }
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
