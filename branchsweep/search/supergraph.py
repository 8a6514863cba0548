"""The BMTAS supergraph: T candidate copies of every backbone layer, routed per task.

Built from the same :class:`~branchsweep.backbones.BackboneSpec` as the branched network: one shared
stem, ``T`` non-parameter-sharing copies of each layer (candidate ``j`` of layer ``l`` is
``spec.layers[l]()``), one head per task, and the architecture parameters ``α`` of shape
``[L, T tasks, T candidates]`` (zeros). The last BatchNorm of every candidate has no affine
parameters during the search (BMTAS supplement A: it equalises the scale of the candidates), and dropout
(the (R-)ASPP's 0.1 in a retrained network) is removed, as in the reference code's search model.

Routing computes only what some task needs. The forward pass keeps *streams*: distinct feature
tensors, each with the tasks reading it. At every layer a candidate is evaluated once per stream
that needs it (weight non-zero for one of the stream's tasks), never once per task:

* **discrete routing** (``ops``: warm-up, hard samples without architecture gradient): tasks of a
  stream that pick the same candidate stay one stream, so a sampled architecture costs exactly its
  branched network (``Σ_l #groups_l`` block evaluations);
* **weighted routing** (``weights``: relaxed Gumbel-softmax samples or straight-through hard samples):
  task ``t``'s output is ``Σ_j w[l,t,j] · cand_j(x)`` over its non-zero weights; the candidate outputs
  are shared by the tasks of a stream, but mixtures differ per task, so after a weighted layer each
  task has its own stream (unless the weights carry no gradient and the rows are equal).

How a candidate is evaluated (:mod:`branchsweep.fused`; ``fuse=False`` keeps plain module
calls, the implementation the tests compare against):

* with weighted routing, the candidates one stream reads in a row run as **one wide call** — ``k``
  copies of a convolution as one convolution over ``k`` times the channels, their BatchNorms as one —
  on a GPU when all candidates of the layer are needed (stable shapes for ``cudnn.benchmark``), on a CPU
  while the tensors are small (:func:`~branchsweep.fused.worth_fusing`);
  the mixture ``Σ_j w_j · out_j`` is then one reduction over the wide output. Discrete routing runs
  candidates one by one, so a candidate that is not used keeps a ``None`` gradient;
* on a CPU, dilated depthwise convolutions take their input gradient as a convolution (PyTorch's own
  is 10–40× slower);
* evaluation order (hence BatchNorm running statistics and dropout masks) is that of the
  candidate-by-candidate code; outputs and gradients equal it up to floating-point summation order.

The paper's per-task sequential update is ``forward(x, weights=w, tasks=[t])`` per task with the
gradients accumulated (:class:`branchsweep.loop.TrainStep` with ``per_task``): one task's graph in
memory at a time, the same gradients as one joint pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from branchsweep import fused
from branchsweep.backbones import BackboneSpec
from branchsweep.search.gumbel import gumbel_noise
from branchsweep.tasks import Task

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def strip_last_bn_affine(block: nn.Module) -> bool:
    """Replace the last BatchNorm (module order) of ``block`` by one with ``affine=False``.

    Returns whether a BatchNorm was found (blocks without one are left as they are).
    """
    names = [name for name, m in block.named_modules() if isinstance(m, _BN)]
    if not names:
        return False
    *path, leaf = names[-1].split(".")
    parent = block.get_submodule(".".join(path))
    bn = getattr(parent, leaf)
    plain = type(bn)(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=False,
                     track_running_stats=bn.track_running_stats)
    setattr(parent, leaf, plain)
    return True


def strip_dropout(module: nn.Module) -> int:
    """Replace every dropout module in ``module`` by ``nn.Identity`` (the supergraph searches without
    dropout; the BMTAS reference builds its search R-ASPP with ``drop_rate=0``). Returns how many."""
    count = 0
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.dropout._DropoutNd):
                setattr(parent, name, nn.Identity())
                count += 1
    return count


def reset_batchnorm_stats(module: nn.Module) -> None:
    """Reset the running statistics of every BatchNorm in ``module`` (after an architecture change)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()


class Supergraph(nn.Module):
    """Stem + ``L × T`` candidate blocks + per-task heads + ``α`` (see the module docstring)."""

    def __init__(self, spec: BackboneSpec, tasks: Sequence[Task], strip_affine: bool = True, fuse: bool = True,
                 branch_points: Sequence[int] | None = None) -> None:
        super().__init__()
        from branchsweep.tree_space import segment_of_layer, segments
        self.spec = spec
        self.task_names = [t.name for t in tasks]
        num_tasks = len(tasks)
        self.stem = spec.stem()
        self.candidates = nn.ModuleList(
            nn.ModuleList(spec.layers[layer]() for _ in range(num_tasks)) for layer in range(spec.num_layers)
        )
        if strip_affine:
            for layer in self.candidates:
                for block in layer:
                    strip_last_bn_affine(block)
        self.heads = nn.ModuleDict({t.name: spec.make_head(t) for t in tasks})
        strip_dropout(self)
        # One α per free segment (:mod:`branchsweep.tree_space`): the layers between two branch points share
        # their α and their Gumbel sample, so a routing can only change at a branch point; the layers
        # before the first branch point route every task through candidate 0 (one shared block).
        self.branch_points = tuple(p for p, _ in segments(branch_points, spec.num_layers))
        seg = segment_of_layer(branch_points, spec.num_layers)
        self.num_shared = sum(s is None for s in seg)
        self.register_buffer("segment_index", torch.tensor([s or 0 for s in seg], dtype=torch.long), persistent=False)
        self.alpha = nn.Parameter(torch.zeros(len(self.branch_points), num_tasks, num_tasks))
        self.evaluations = 0  # candidate block evaluations, for tests and benchmarks
        self.fuse = fuse  # evaluate the candidates one stream reads in one wide call where possible
        self._fusable = [fused.fusable(list(layer)) for layer in self.candidates]
        self._random_ops = [fused.random_ops(layer[0]) for layer in self.candidates]

    @property
    def num_layers(self) -> int:
        return len(self.candidates)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter except ``α``."""
        return [p for name, p in self.named_parameters() if name != "alpha" and p.requires_grad]

    def warmup_ops(self) -> torch.Tensor:
        """Op indices ``[L, T]`` routing task ``t`` through candidate ``t`` everywhere (warm-up)."""
        return torch.arange(self.num_tasks).expand(self.num_layers, -1).clone()

    def argmax_ops(self) -> torch.Tensor:
        """The discretised architecture: ``argmax_j α[l, t, j]`` as op indices ``[L, T]``."""
        return self.layer_alpha(self.alpha.detach()).argmax(dim=-1)

    def expand(self, per_segment: torch.Tensor, shared_value: float = 1.0, other_value: float = 0.0) -> torch.Tensor:
        """``[S, T, T]`` (one row per segment) -> ``[L, T, T]`` (one per layer); the shared layers before the
        first branch point get ``shared_value`` at candidate 0 and ``other_value`` elsewhere."""
        full = per_segment.index_select(0, self.segment_index)
        if self.num_shared == 0:
            return full
        fixed = torch.full((self.num_shared, self.num_tasks, self.num_tasks), other_value,
                           dtype=per_segment.dtype, device=per_segment.device)
        fixed[..., 0] = shared_value
        return torch.cat([fixed, full[self.num_shared:]], dim=0)

    def layer_alpha(self, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """``α`` per layer ``[L, T, T]`` (default: the parameter; differentiable): a segment's α on each of its
        layers, and on the shared layers logits that put all probability on candidate 0."""
        return self.expand(self.alpha if alpha is None else alpha, 0.0, -1e4)

    def sample_weights(self, tau: float, hard: bool = False, generator: torch.Generator | None = None,
                       alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Gumbel-softmax routing weights ``[L, T, T]``: one sample per segment, repeated on its layers."""
        return self.expand(gumbel_softmax_weights(self.alpha if alpha is None else alpha, tau, hard, generator))

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None, ops: torch.Tensor | None = None,
                tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Predictions of ``tasks`` (default: all) routed by ``weights`` ``[L,T,T]`` or ``ops`` ``[L,T]``.

        Exactly one of ``weights`` / ``ops`` must be given.
        """
        if (weights is None) == (ops is None):
            raise ValueError("give exactly one of weights (relaxed/straight-through) or ops (discrete)")
        active = [self.task_names.index(n) for n in (tasks or self.task_names)]
        out_size = tuple(x.shape[2:]) if x.dim() == 4 else None
        feats: list[torch.Tensor] = [self.stem(x)]
        stream_of = {t: 0 for t in active}
        skips: dict[int, dict[int, torch.Tensor]] = {}
        ops_list = ops.tolist() if ops is not None else None
        # The routing decisions (which weights are exactly zero, which rows are equal) are read on the host
        # once per forward pass: one device-to-host copy, not one synchronisation per layer and task.
        host = weights.detach().cpu().tolist() if weights is not None else None
        everything = list(range(self.num_tasks))
        for layer in range(self.num_layers):
            reads = []  # (task, stream, candidates with a non-zero weight), in task order
            for t in active:
                if ops_list is not None:
                    reads.append((t, stream_of[t], [ops_list[layer][t]]))
                else:
                    reads.append((t, stream_of[t], [j for j, w in enumerate(host[layer][t]) if w != 0]))  # type: ignore[index]
            outputs, wide = self._run_layer(layer, feats, [(s, js) for _, s, js in reads], ops_list is None)
            new_feats: list[torch.Tensor] = []
            new_stream: dict[int, int] = {}
            keys: dict[tuple, int] = {}
            for t, s, js in reads:
                if ops_list is not None:
                    key: tuple = (s, js[0])
                    if key not in keys:
                        keys[key] = len(new_feats)
                        new_feats.append(outputs[key])
                else:
                    row = weights[layer, t]  # type: ignore[index]
                    # Rows that carry no α gradient (detached samples; the fixed candidate-0 rows of the shared
                    # layers before the first branch point) merge tasks with equal routes into one stream.
                    constant = layer < self.num_shared or not row.requires_grad
                    key = (s, tuple(host[layer][t])) if constant else (s, "task", t)  # type: ignore[index]
                    if key not in keys:
                        keys[key] = len(new_feats)
                        block = wide.get((s, tuple(js)))
                        if block is not None:
                            new_feats.append(mix(block, row if js == everything else row[js]))
                        else:
                            new_feats.append(sum(row[j] * outputs[(s, j)] for j in js))  # type: ignore[arg-type]
                new_stream[t] = keys[key]
            feats, stream_of = new_feats, new_stream
            if layer in self.spec.skip_layers:
                skips[layer] = {t: feats[stream_of[t]] for t in active}
        result = {}
        for t in active:
            name = self.task_names[t]
            task_skips = [skips[s][t] for s in self.spec.skip_layers]
            result[name] = self.heads[name](feats[stream_of[t]], task_skips, out_size)
        return result

    def _run_layer(self, layer: int, feats: list[torch.Tensor], reads: list[tuple[int, list[int]]], fuse: bool
                   ) -> tuple[dict[tuple[int, int], torch.Tensor], dict[tuple[int, tuple[int, ...]], torch.Tensor]]:
        """Evaluate the candidates of ``layer`` that the ``(stream, candidates)`` reads need, each once.

        The evaluation order is that of the reads (stream by stream, candidate by candidate, first use
        first), so BatchNorm running statistics and random numbers advance exactly as in a
        candidate-by-candidate evaluation. With ``fuse``, consecutive candidates on one stream run as one
        wide call when the layer allows it (:mod:`branchsweep.fused`). Returns every output by
        ``(stream, candidate)`` and the wide outputs by ``(stream, candidates)``.
        """
        blocks = self.candidates[layer]
        runs: list[tuple[int, list[int]]] = []
        seen: set[tuple[int, int]] = set()
        for s, js in reads:
            for j in js:
                if (s, j) in seen:
                    continue
                seen.add((s, j))
                if runs and runs[-1][0] == s:
                    runs[-1][1].append(j)
                else:
                    runs.append((s, [j]))
        known = self.fuse and self._fusable[layer]
        together = fuse and known and (not blocks[0].training or self._random_ops[layer] <= 1)
        outputs: dict[tuple[int, int], torch.Tensor] = {}
        wide: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
        for s, js in runs:
            self.evaluations += len(js)
            x = feats[s]
            if len(js) > 1 and together and fused.worth_fusing(x, len(js), len(blocks)):
                out = fused.evaluate([blocks[j] for j in js], x)
                wide[(s, tuple(js))] = out
                outputs.update(((s, j), part) for j, part in zip(js, fused.split(out, len(js))))
            elif known:
                outputs.update(((s, j), fused.evaluate([blocks[j]], x)) for j in js)
            else:
                outputs.update(((s, j), blocks[j](x)) for j in js)
        return outputs, wide


def mix(wide: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``Σ_j w[j] · out_j`` of the ``k = len(w)`` candidate outputs in a wide tensor ``[B, k·C, ...]``."""
    k = w.shape[0]
    return (wide.unflatten(1, (k, -1)) * w.view(1, k, *([1] * (wide.dim() - 1)))).sum(1)


def gumbel_softmax_weights(alpha: torch.Tensor, tau: float, hard: bool = False,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel-softmax samples ``softmax((α + g) / τ)`` per layer and task, ``g ~ Gumbel(0, 1)``.

    With ``hard`` the forward value is the one-hot argmax and the gradient that of the relaxed sample
    (straight-through: ``onehot + soft - sg(soft)``, whose non-selected entries are exactly 0, so the
    routing runs only the selected candidate).
    """
    soft = torch.softmax((alpha + gumbel_noise(alpha, generator)) / tau, dim=-1)
    if not hard:
        return soft
    onehot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return onehot + (soft - soft.detach())


class NaiveSupergraph(Supergraph):
    """Reference routing that evaluates all T candidates for every task at every layer (benchmarks).

    Same parameters and same outputs as :class:`Supergraph`; only the amount of computation differs.
    """

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None, ops: torch.Tensor | None = None,
                tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        if weights is None:
            weights = torch.nn.functional.one_hot(ops, self.num_tasks).to(x.dtype)  # type: ignore[arg-type]
        out_size = tuple(x.shape[2:]) if x.dim() == 4 else None
        stem = self.stem(x)
        outputs = {}
        for t, name in enumerate(self.task_names):
            if tasks is not None and name not in tasks:
                continue
            h, skips = stem, []
            for layer, blocks in enumerate(self.candidates):
                outs = [blk(h) for blk in blocks]
                self.evaluations += len(outs)
                h = sum(weights[layer, t, j] * o for j, o in enumerate(outs))
                if layer in self.spec.skip_layers:
                    skips.append(h)
            outputs[name] = self.heads[name](h, skips, out_size)
        return outputs
