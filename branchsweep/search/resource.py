"""The BMTAS resource loss: the exact expected MAdds of the sampled branched network.

Every task ``t`` samples one candidate per layer from ``p_t(l, ·)`` (independently over tasks and
layers). Tasks share layer ``l`` exactly when their sampled op indices agree on layers ``1..l``, so
the number of blocks run at layer ``l`` is the number of distinct op-index prefixes of length ``l``
and the expected cost is

    E[C] = Σ_l c_l · E[G_l],   E[G_l] = Σ_{prefixes s} (1 - Π_t (1 - P_t(s)))

Expanding the product (inclusion–exclusion over task subsets) and summing over prefixes, which
factorise over layers because the layers are sampled independently::

    E[G_l] = Σ_{∅ ≠ U ⊆ tasks} (-1)^{|U|+1} Π_{k ≤ l} q_U(k),     q_U(k) = Σ_j Π_{u ∈ U} p_u(k, j)

``q_U(k)`` is the probability that all tasks of ``U`` pick the same candidate at layer ``k``. This is
``O(2^T · L · T)`` and exact (the published code's recursion over set partitions is an upper bound and
enumerates ``T^T`` assignments). Beyond :data:`EXACT_MAX_TASKS` tasks :func:`expected_madds` switches
to :func:`expected_groups_mc`, an unbiased Monte-Carlo estimate (value and gradient) in
``O(S · T² · L)``.

:func:`paper_groups` is the published estimator (BMTAS Eq. 6 and supplement, as the authors' code
computes it), for reproducing the paper's operating points with its λ: at layer ``l`` the probability
``p(l, k)`` of each task partition ``k`` that is not fully split is the probability that the layer's
assignment induces exactly ``k`` times the probability that layer ``l - 1`` was at ``k`` or a coarser
partition; the rest of the mass counts as fully split (``T`` blocks). Its expected block count
``Σ_k p(l, k) · |k|`` bounds ``E[G_l]`` from above.
"""

from __future__ import annotations

import functools
import itertools

import torch

PAPER_MAX_TASKS = 6
"""Largest task count of :func:`paper_groups`, which enumerates the ``T^T`` task-to-candidate
assignments of a layer as the published code does (46 656 at T = 6)."""

EXACT_MAX_TASKS = 12
"""Largest task count priced exactly by default: at L = 18 the exact sum takes 7.6 ms at T = 12 and
outgrows the 64-sample Monte Carlo estimate (8.9 ms) from T = 13 (benchmarks/bench_resource.py)."""


def _check(probs: torch.Tensor) -> None:
    if probs.dim() != 3 or probs.shape[1] != probs.shape[2]:
        raise ValueError(f"probs must have shape [L, T, T], got {list(probs.shape)}")


def expected_groups_exact(probs: torch.Tensor) -> torch.Tensor:
    """``E[G_l]`` for every layer, exactly, by inclusion–exclusion over task subsets.

    ``probs[l, t, j]`` is task ``t``'s probability of candidate ``j`` at layer ``l``. Subset products
    are built by doubling (subset ``U ∪ {t}`` = subset ``U`` times ``p_t``), so all ``2^T`` products are
    one tensor of shape ``[2^T, L, T]``.

    >>> p = torch.full((1, 2, 2), 0.5, dtype=torch.float64)  # two tasks, two fair candidates
    >>> expected_groups_exact(p)  # shared with probability 1/2: E[G] = 1.5
    tensor([1.5000], dtype=torch.float64)
    """
    _check(probs)
    num_layers, num_tasks, _ = probs.shape
    prod = torch.ones(1, num_layers, probs.shape[2], dtype=probs.dtype, device=probs.device)
    sizes = torch.zeros(1, dtype=torch.long, device=probs.device)
    for t in range(num_tasks):
        prod = torch.cat([prod, prod * probs[:, t, :]], dim=0)
        sizes = torch.cat([sizes, sizes + 1])
    q = prod[1:].sum(-1)  # [2^T - 1, L]: P(all of U agree at layer k)
    shared = torch.cumprod(q, dim=1)  # P(all of U share the prefix up to layer l)
    sign = 1.0 - 2.0 * ((sizes[1:] + 1) % 2).to(probs.dtype)  # (-1)^{|U|+1}
    return (sign[:, None] * shared).sum(0)


def expected_groups_mc(probs: torch.Tensor, samples: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
    """An unbiased Monte-Carlo estimate of ``E[G_l]`` whose gradient is unbiased too.

    ``G_l`` counts the tasks that are the *first* (lowest index) to use their prefix, so
    ``E[G_l] = Σ_t E_{s ~ P_t}[Π_{t' < t} (1 - P_{t'}(s_{≤l}))]``. We sample one path ``s`` per task
    and evaluate the product exactly; the dependence of the sampling distribution on ``p_t`` enters
    through the score-function factor ``exp(log P_t(s) - sg(log P_t(s)))`` (value 1), so both the value
    and the gradient are unbiased. Cost ``O(samples · T² · L)``.

    >>> p = torch.full((1, 2, 2), 0.5, dtype=torch.float64)
    >>> float(expected_groups_mc(p, samples=4096, generator=torch.Generator().manual_seed(0)))  # ≈ 1.5
    1.5
    """
    _check(probs)
    num_layers, num_tasks, num_ops = probs.shape
    flat = probs.detach().permute(1, 0, 2).reshape(-1, num_ops)  # [T·L, J]
    ops = torch.multinomial(flat, samples, replacement=True, generator=generator)  # [T·L, S]
    ops = ops.reshape(num_tasks, num_layers, samples).permute(2, 0, 1)  # [S, T, L]
    # p_{t'}(k, s_{t,k}) for every sample, sampling task t, other task t', layer k: [S, T, T', L]
    p_other = probs.permute(1, 0, 2)  # [T', L, J]
    idx = ops[:, :, None, :].expand(samples, num_tasks, num_tasks, num_layers)
    src = p_other[None, None].expand(samples, num_tasks, num_tasks, num_layers, num_ops)
    gathered = torch.gather(src, 4, idx[..., None]).squeeze(-1)
    prefix_prob = torch.cumprod(gathered, dim=3)  # P_{t'}(s_t up to layer l)
    earlier = torch.tril(torch.ones(num_tasks, num_tasks, dtype=torch.bool, device=probs.device), diagonal=-1)
    factors = torch.where(earlier[None, :, :, None], 1.0 - prefix_prob, torch.ones_like(prefix_prob))
    first = factors.prod(dim=2)  # [S, T, L]
    own = torch.diagonal(prefix_prob, dim1=1, dim2=2).permute(0, 2, 1)  # [S, T, L]: P_t(s_t up to l)
    log_own = torch.log(own.clamp_min(torch.finfo(probs.dtype).tiny))
    score = torch.exp(log_own - log_own.detach())
    return (first * score).sum(1).mean(0)


@functools.cache
def _partition_tables(num_tasks: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The enumeration behind :func:`paper_groups`, for ``T = num_tasks``.

    Every assignment ``a`` (task ``u`` takes candidate ``a[u]``) induces the partition of the tasks by
    equal candidates; partitions are numbered by their canonical label string (blocks labelled in
    order of first appearance). The fully split partition is left out: its probability is what the
    other partitions leave. Returns ``(assignments [N, T], partition of each [N], blocks of each
    partition [K], coarser [K, K])`` over the ``N`` assignments of the ``K`` partitions kept, where
    ``coarser[k, j]`` says that ``k`` refines ``j`` (each block of ``k`` inside one block of ``j``;
    ``k`` refines itself).
    """
    canon: dict[tuple[int, ...], int] = {}
    keys: list[tuple[int, ...]] = []
    assignments, owner = [], []
    for a in itertools.product(range(num_tasks), repeat=num_tasks):
        first: dict[int, int] = {}
        key = tuple(first.setdefault(c, len(first)) for c in a)
        if len(first) == num_tasks:
            continue  # fully split
        if key not in canon:
            canon[key] = len(keys)
            keys.append(key)
        assignments.append(a)
        owner.append(canon[key])
    blocks = [max(k) + 1 for k in keys]
    coarser = [[all(j[u] == j[v] for u in range(num_tasks) for v in range(num_tasks) if k[u] == k[v]) for j in keys]
               for k in keys]
    return (torch.tensor(assignments, dtype=torch.long).reshape(-1, num_tasks), torch.tensor(owner, dtype=torch.long),
            torch.tensor(blocks, dtype=torch.long), torch.tensor(coarser, dtype=torch.bool).reshape(len(keys), len(keys)))


def paper_groups(probs: torch.Tensor) -> torch.Tensor:
    """The published per-layer block count: BMTAS Eq. 6's partition recursion (an upper bound of ``E[G_l]``).

    With ``q(l, k)`` the probability that layer ``l``'s candidate assignment partitions the tasks exactly
    as ``k`` (a sum over the assignments inducing ``k`` of ``Π_u p_u(l, a_u)``), the recursion is
    ``p(0, k) = q(0, k)``, ``p(l, k) = q(l, k) · Σ_{j ⊒ k} p(l-1, j)`` over the partitions ``j`` that ``k``
    refines (``k`` itself included) — both over the partitions that are not fully split — and the fully
    split partition gets ``1 - Σ_k p(l, k)``. Returns ``Σ_k p(l, k) · |k|`` per layer, ``[L]``;
    differentiable in ``probs`` (``[L, T, T]`` as for :func:`expected_groups_exact`). Up to
    :data:`PAPER_MAX_TASKS` tasks.

    >>> p = torch.full((2, 2, 2), 0.5, dtype=torch.float64)  # two tasks, two fair candidates per layer
    >>> paper_groups(p)  # layer 2 counts only "shared at layer 2 and layer 1" as shared: 2 - 1/4
    tensor([1.5000, 1.7500], dtype=torch.float64)
    """
    _check(probs)
    num_layers, num_tasks, _ = probs.shape
    if num_tasks > PAPER_MAX_TASKS:
        raise ValueError(f"the paper's resource estimator enumerates T^T assignments: at most {PAPER_MAX_TASKS} "
                         f"tasks, got {num_tasks}")
    assignments, owner, blocks, coarser = (x.to(probs.device) for x in _partition_tables(num_tasks))
    if blocks.numel() == 0:  # one task: always one block
        return probs.new_full((num_layers,), float(num_tasks))
    tasks = torch.arange(num_tasks, device=probs.device)
    joint = probs[:, tasks[None, :], assignments].prod(-1)  # [L, N]: probability of each assignment
    cond = probs.new_zeros(num_layers, blocks.numel()).index_add(1, owner, joint)  # q(l, k)
    coarser = coarser.to(probs.dtype)
    rows = [cond[0]]
    for layer in range(1, num_layers):
        rows.append(cond[layer] * (coarser @ rows[-1]))
    p = torch.stack(rows)  # [L, K]
    return num_tasks - (p * (num_tasks - blocks).to(probs.dtype)).sum(-1)


def expected_groups(probs: torch.Tensor, method: str = "auto", samples: int = 64,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``E[G_l]`` per layer: ``method`` is ``"exact"``, ``"mc"`` or ``"auto"`` (exact up to
    :data:`EXACT_MAX_TASKS` tasks); ``"paper"`` gives the published upper bound (:func:`paper_groups`)."""
    if method == "auto":
        method = "exact" if probs.shape[1] <= EXACT_MAX_TASKS else "mc"
    if method == "exact":
        return expected_groups_exact(probs)
    if method == "mc":
        return expected_groups_mc(probs, samples, generator)
    if method == "paper":
        return paper_groups(probs)
    raise ValueError(f"unknown resource estimator {method!r} (exact, mc, paper or auto)")


def expected_madds(probs: torch.Tensor, layer_madds: torch.Tensor, method: str = "auto", samples: int = 64,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Expected MAdds of the layers of the sampled branched network, ``Σ_l c_l · E[G_l]``.

    ``probs``: ``[L, T, T]`` (row ``t`` of layer ``l``: task ``t``'s candidate probabilities);
    ``layer_madds``: ``[L]`` MAdds of one copy of each layer. Differentiable in ``probs``. The stem and
    heads cost the same for every architecture and are not included.

    >>> p = torch.full((2, 2, 2), 0.5, dtype=torch.float64)
    >>> float(expected_madds(p, torch.tensor([10.0, 100.0], dtype=torch.float64)))  # 10·1.5 + 100·1.75
    190.0
    """
    if layer_madds.shape != probs.shape[:1]:
        raise ValueError(f"layer_madds must have shape [{probs.shape[0]}], got {list(layer_madds.shape)}")
    groups = expected_groups(probs, method, samples, generator)
    return (groups * layer_madds.to(groups.dtype)).sum()
