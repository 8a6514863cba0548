"""``mlp``: the fully connected backbone of the Learning-to-Branch synthetic experiment (Section 4.1).

Four blocks of 100-unit fully connected layers; the last block is linear (its output is the task's
prediction up to a task-specific bias, as in the paper's Figure 3), the others use ReLU.

``mlp_select`` (``select=True``) is the exact network of Figure 3: the four blocks all have shared
child nodes (three each) and the tasks own nothing but a bias, so a fifth, parameter-free layer lets
each task *pick* one node of the last block. Tasks that pick the same node then predict the same
vector up to their bias, which is what makes the leaf grouping reflect task relatedness. In ``mlp``
every task owns a copy of the last block, which can absorb the differences between tasks.
"""

from __future__ import annotations

from torch import nn

from branchsweep.backbones.base import BackboneSpec, fresh_copy
from branchsweep.backbones.heads import BiasHead, LinearHead
from branchsweep.errors import ConfigError
from branchsweep.tasks import Task


def mlp(
    input_dim: int = 200, hidden: int = 100, num_layers: int = 4, width: float = 1.0, pretrained: str | None = None,
    input_size: int | None = None, select: bool = False,
) -> BackboneSpec:
    """Fully connected backbone: ``num_layers`` blocks of ``hidden·width`` units (+ a selection layer)."""
    if pretrained:
        raise ConfigError("the mlp backbone has no pretrained weights")
    if num_layers < 1:
        raise ConfigError("mlp needs at least one layer")
    h = max(1, round(hidden * width))
    templates: list[nn.Module] = []
    for i in range(num_layers):
        fin = input_dim if i == 0 else h
        last = i == num_layers - 1
        templates.append(nn.Linear(fin, h) if last else nn.Sequential(nn.Linear(fin, h), nn.ReLU()))

    def make_head(task: Task) -> nn.Module:
        return BiasHead(h) if task.out_channels == h else LinearHead(h, task.out_channels)

    layers = [(lambda t=t: fresh_copy(t, reinit=True)) for t in templates]
    names = [f"fc{i + 1}" for i in range(num_layers)]
    if select:
        layers.append(nn.Identity)
        names.append("select")
    return BackboneSpec(
        name="mlp_select" if select else "mlp",
        stem=nn.Identity,
        layers=layers,
        layer_names=names,
        make_head=make_head,
        input_shape=(input_dim,),
        params={"input_dim": input_dim, "hidden": h, "num_layers": num_layers, "select": select},
    )


def mlp_select(
    input_dim: int = 200, hidden: int = 100, num_layers: int = 4, width: float = 1.0, pretrained: str | None = None,
    input_size: int | None = None,
) -> BackboneSpec:
    """The Learning-to-Branch Figure 3 network: ``mlp`` plus a layer in which each task picks a node."""
    return mlp(input_dim, hidden, num_layers, width, pretrained, input_size, select=True)
