"""The (R-)ASPP layer follows the BMTAS reference code: ReLU6 for MobileNetV2, dropout 0.1 on the
concatenated branches before the projection when a branched network is trained, none in the supergraph."""

import pytest
import torch
from torch import nn

from branchsweep.backbones import create_backbone
from branchsweep.search.supergraph import Supergraph
from branchsweep.tasks import create_task


@pytest.mark.parametrize(("backbone", "act"), [("mobilenet_v2", nn.ReLU6), ("resnet50", nn.ReLU)])
def test_aspp_layer_dropout_and_activation(backbone, act):
    spec = create_backbone(backbone, width=0.25, input_size=32)
    layer = spec.layers[-1]()
    drops = [m for m in layer.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.1]
    assert isinstance(layer.project[0], nn.Dropout)  # before the 1×1 projection, as in the reference
    acts = [m for m in layer.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert acts and all(type(m) is act for m in acts)


def test_supergraph_has_no_dropout_and_its_aspp_is_deterministic():
    spec = create_backbone("mobilenet_v2", width=0.25, input_size=32)
    tasks = [create_task("semseg", num_classes=3), create_task("sal")]
    model = Supergraph(spec, tasks)
    assert not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
    aspp = model.candidates[-1][0].train()
    x = torch.randn(2, spec.layers[-1]().convs[0][0].in_channels, 4, 4)
    assert torch.equal(aspp(x), aspp(x))
