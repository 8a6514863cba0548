"""Time the exact expected-MAdds loss against a partition-enumeration baseline (forward + backward).

Both compute ``Σ_l c_l · E[#groups at layer l]`` for per-task candidate probabilities ``[L, T, T]``:

* ``exact``: inclusion–exclusion over task subsets, ``O(2^T · L · T)``
  (:func:`branchsweep.search.resource.expected_madds`);
* ``partition``: the straightforward way — a distribution over the prefix *partition* of the tasks
  (which tasks still share), pushed through each layer by enumerating all ``T^T`` op assignments,
  ``O(L · Bell(T) · T^T)``; differentiable too (probabilities stay torch tensors);
* ``mc``: the unbiased Monte-Carlo estimator (64 samples) used above ``EXACT_MAX_TASKS``.

Run: ``.venv/bin/python benchmarks/bench_resource.py [--max-tasks 12] [--layers 18] [--budget 20]``.
The baseline is skipped once its previous size took more than ``--budget`` seconds (the next size costs
far more: Bell(T)·T^T grows super-exponentially).
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from branchsweep.search.resource import expected_madds


def partition_baseline(probs: torch.Tensor, layer_madds: torch.Tensor) -> torch.Tensor:
    """E[cost] by enumerating op assignments per layer over the distribution of prefix partitions."""
    num_layers, num_tasks, num_ops = probs.shape
    assignments = torch.tensor(list(itertools.product(range(num_ops), repeat=num_tasks)), dtype=torch.long)
    task_idx = torch.arange(num_tasks)
    cache: dict[tuple[int, ...], tuple[torch.Tensor, list[tuple[int, ...]], list[int]]] = {}

    def transitions(state: tuple[int, ...]):
        if state not in cache:
            keys = torch.tensor(state)[None, :] * num_ops + assignments  # [N, T]
            eq = keys[:, :, None] == keys[:, None, :]
            first = eq.int().argmax(dim=2)  # canonical label: first task with the same key
            uniq, inverse = torch.unique(first, dim=0, return_inverse=True)
            relabel = []
            for row in uniq.tolist():
                order = {v: i for i, v in enumerate(dict.fromkeys(row))}
                relabel.append(tuple(order[v] for v in row))
            groups = [len(set(r)) for r in relabel]
            cache[state] = (inverse, relabel, groups)
        return cache[state]

    dist: dict[tuple[int, ...], torch.Tensor] = {tuple([0] * num_tasks): probs.new_ones(())}
    total = probs.new_zeros(())
    for layer in range(num_layers):
        p_assign = probs[layer][task_idx, assignments].prod(dim=1)  # [N]
        new: dict[tuple[int, ...], torch.Tensor] = {}
        for state, pr in dist.items():
            inverse, relabel, groups = transitions(state)
            mass = torch.zeros(len(relabel), dtype=probs.dtype).index_add(0, inverse, p_assign) * pr
            for i, nxt in enumerate(relabel):
                new[nxt] = new[nxt] + mass[i] if nxt in new else mass[i]
                total = total + layer_madds[layer] * groups[i] * mass[i]
        dist = new
    return total


def time_call(fn, probs_alpha: torch.Tensor, costs: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        alpha = probs_alpha.clone().requires_grad_(True)
        t0 = time.perf_counter()
        value = fn(torch.softmax(alpha, -1), costs)
        value.backward()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-tasks", type=int, default=2)
    parser.add_argument("--max-tasks", type=int, default=12)
    parser.add_argument("--layers", type=int, default=18)
    parser.add_argument("--budget", type=float, default=20.0, help="skip the baseline after a size slower than this (s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    costs = torch.rand(args.layers, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1e8
    print(f"expected_madds forward+backward, L = {args.layers}, float64, 1 thread (best of {args.repeats})")
    print("| T | exact (ms) | Monte Carlo, 64 samples (ms) | partition baseline (ms) | |exact − baseline| / value |")
    print("|---|---|---|---|---|")
    baseline_ok = True
    for num_tasks in range(args.min_tasks, args.max_tasks + 1):
        alpha = torch.randn(args.layers, num_tasks, num_tasks, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(num_tasks))
        exact = time_call(lambda p, c: expected_madds(p, c, method="exact"), alpha, costs, args.repeats)
        mc = time_call(lambda p, c: expected_madds(p, c, method="mc", samples=64), alpha, costs, args.repeats)
        base_s, err = "skipped", "—"
        if baseline_ok:
            base = time_call(partition_baseline, alpha, costs, 1)
            base_s = f"{base * 1e3:.1f}"
            with torch.no_grad():
                p = torch.softmax(alpha, -1)
                ref = float(partition_baseline(p, costs))
                err = f"{abs(float(expected_madds(p, costs, method='exact')) - ref) / ref:.1e}"
            baseline_ok = base < args.budget
        print(f"| {num_tasks} | {exact * 1e3:.2f} | {mc * 1e3:.2f} | {base_s} | {err} |", flush=True)


if __name__ == "__main__":
    main()
