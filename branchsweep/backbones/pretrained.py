"""Optional ImageNet initialisation: torchvision weights by name, or a local checkpoint file.

Never required and never fetched in tests. ``"imagenet"`` asks torchvision for its published weights
(downloaded once into torch's hub cache when the network is reachable); any other value is a path to a
``state_dict`` of the torchvision classification model, loaded with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from branchsweep.errors import ConfigError


def load_pretrained(model: nn.Module, pretrained: str, weights_enum, width: float) -> None:
    """Load ``pretrained`` (``"imagenet"`` or a checkpoint path) into torchvision ``model`` in place."""
    if width != 1.0:
        raise ConfigError(f"pretrained weights need width 1.0 (got width {width})")
    if pretrained == "imagenet":
        try:
            state = weights_enum.get_state_dict(progress=False)
        except Exception as err:  # network errors come in many types
            raise ConfigError(
                f"could not fetch torchvision weights {weights_enum} ({type(err).__name__}); "
                "pass --pretrained PATH to a local checkpoint instead"
            ) from None
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise ConfigError(f"pretrained checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ConfigError(f"cannot read pretrained checkpoint {path}: {err}") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"pretrained checkpoint {pretrained} does not hold a state_dict")
    missing, unexpected = model.load_state_dict(state, strict=False)
    usable = [k for k in model.state_dict() if not k.startswith(("fc.", "classifier."))]
    if len([k for k in missing if k in usable]) == len(usable):
        raise ConfigError(f"pretrained checkpoint {pretrained} matches none of the {type(model).__name__} weights")
