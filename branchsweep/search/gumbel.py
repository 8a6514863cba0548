"""Gumbel noise: the one sampler both searches draw from.

``g = −log(−log u)``, ``u ~ U(0, 1)`` clamped away from 0 and 1 so ``g`` is always finite. Adding
``g`` to logits and taking the argmax samples the categorical ``softmax(logits)`` exactly (the
Gumbel-max trick); ``softmax((logits + g) / τ)`` is its Gumbel-softmax relaxation.

>>> g = torch.Generator().manual_seed(0)
>>> noise = gumbel_noise(torch.zeros(2, 3), g)
>>> noise.shape, bool(torch.isfinite(noise).all())
(torch.Size([2, 3]), True)
"""

from __future__ import annotations

import torch


def gumbel_noise(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel samples shaped and typed like ``like``, on its device.

    The uniforms are drawn on ``generator``'s device (a seeded CPU generator gives the same noise
    whatever the model's device) and moved to ``like``'s.
    """
    device = generator.device if generator is not None else like.device
    u = torch.rand(like.shape, generator=generator, dtype=like.dtype, device=device).to(like.device)
    return -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
