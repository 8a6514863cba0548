"""``BranchedNetwork``: a backbone whose layers are shared by groups of tasks, one head per task.

The tree comes from a :class:`~branchsweep.arch.BranchConfig`: at layer ``l`` there is one copy of the
backbone's layer per task group, fed by the block of the parent group at ``l - 1``. One forward pass
computes every block exactly once and returns every task's prediction. ``Single`` and ``Shared`` are
just two configs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from branchsweep.arch import BranchConfig
from branchsweep.backbones import BackboneSpec
from branchsweep.tasks import Task


class BranchedNetwork(nn.Module):
    """A tree-structured multi-task network built from ``spec`` and ``config``.

    ``blocks[l][g]`` is the block of group ``g`` at layer ``l`` (group order as in
    ``config.partitions[l]``); ``heads[task]`` the task's head.
    """

    def __init__(self, spec: BackboneSpec, tasks: Sequence[Task], config: BranchConfig) -> None:
        super().__init__()
        names = [t.name for t in tasks]
        config.check_tasks(names, spec.num_layers)
        config = config.reorder(names)
        self.spec = spec
        self.task_names = names
        self.config = config
        self.stem = spec.stem()
        self.blocks = nn.ModuleList(
            nn.ModuleList(spec.layers[layer]() for _ in range(config.num_groups(layer)))
            for layer in range(config.num_layers)
        )
        self.heads = nn.ModuleDict({t.name: spec.make_head(t) for t in tasks})
        # parent[l][g]: group index at l-1 feeding group g at l (layer 0 is fed by the stem).
        self._parent = [
            [0 if layer == 0 else config.parent_group(layer, g) for g in range(config.num_groups(layer))]
            for layer in range(config.num_layers)
        ]
        self._leaf = [config.group_of(config.num_layers - 1, t) for t in range(len(names))]
        self._skip_group = {s: [config.group_of(s, t) for t in range(len(names))] for s in spec.skip_layers}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out_size = tuple(x.shape[2:]) if x.dim() == 4 else None
        feats = [self.stem(x)]
        skips: dict[int, list[torch.Tensor]] = {}
        for layer, blocks in enumerate(self.blocks):
            parents = self._parent[layer]
            feats = [block(feats[parents[g]]) for g, block in enumerate(blocks)]
            if layer in self._skip_group:
                skips[layer] = feats
        outputs = {}
        for t, name in enumerate(self.task_names):
            task_skips = [skips[s][self._skip_group[s][t]] for s in self.spec.skip_layers]
            outputs[name] = self.heads[name](feats[self._leaf[t]], task_skips, out_size)
        return outputs

    def sharing(self) -> dict[str, int]:
        """Number of tasks sharing each parameter's block (heads: 1, stem: all tasks).

        BMTAS divides a shared block's learning rate by this number, since it receives updates from
        every task that uses it (:meth:`parameter_groups`; the Single tree's stem is not divided).
        """
        counts: dict[str, int] = {}
        for name, _ in self.named_parameters():
            if name.startswith("blocks."):
                _, layer, group, *_ = name.split(".")
                counts[name] = len(self.config.partitions[int(layer)][int(group)])
            elif name.startswith("stem."):
                counts[name] = len(self.task_names)
            else:
                counts[name] = 1
        return counts

    def is_single(self) -> bool:
        """Whether the tree is the Single baseline: every task has its own block from layer 0 on."""
        return self.config.num_groups(0) == len(self.task_names)

    def parameter_groups(self, lr: float, divide_by_sharing: bool) -> list[dict]:
        """Optimiser parameter groups, with the lr of shared blocks divided by their task count.

        The Single tree's stem is the exception: the BMTAS paper's Single is T separate networks, with
        nothing shared and so nothing divided; this project shares its stem only to keep one network
        format, so the stem keeps the full lr (group ``sharing`` 1).
        """
        if not divide_by_sharing:
            return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]
        by_count: dict[int, list[nn.Parameter]] = {}
        sharing = self.sharing()
        single = self.is_single()
        for name, p in self.named_parameters():
            if p.requires_grad:
                count = 1 if single and name.startswith("stem.") else sharing[name]
                by_count.setdefault(count, []).append(p)
        return [{"params": ps, "lr": lr / n, "sharing": n} for n, ps in sorted(by_count.items())]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
