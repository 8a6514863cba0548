import pytest
import torch
from torchvision.models import mobilenet_v2

from branchsweep.backbones import create_backbone
from branchsweep.errors import ConfigError


def test_local_checkpoint_initialises_every_copy(tmp_path):
    torch.manual_seed(0)
    reference = mobilenet_v2(weights=None)
    path = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), path)
    spec = create_backbone("mobilenet_v2", pretrained=str(path), input_size=32)
    a, b = spec.layers[5](), spec.layers[5]()
    ref = reference.features[6].conv[0][0].weight
    assert torch.equal(a.conv[0][0].weight, ref) and torch.equal(b.conv[0][0].weight, ref)
    assert a.conv[0][0].weight is not b.conv[0][0].weight  # independent copies


def test_random_copies_differ():
    spec = create_backbone("mobilenet_v2", width=0.25, input_size=32)
    a, b = spec.layers[5](), spec.layers[5]()
    assert not torch.equal(a.conv[0][0].weight, b.conv[0][0].weight)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pretrained": "/nonexistent.pth"}, "not found"),
        ({"pretrained": "imagenet", "width": 0.5}, "need width 1.0"),
        ({"depth": 3}, "takes no option 'depth'"),
        ({"width": 0}, "width must be"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_backbone("mobilenet_v2", **kwargs)


def test_garbage_checkpoint(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read pretrained checkpoint"):
        create_backbone("resnet50", pretrained=str(path))
