"""Joint image/label augmentation of the BMTAS supplement, built on ``torchvision.transforms.v2``.

Training (supplement A): random scale in ``{0.5, 0.75, ..., 2.0}``, random crop to the square input
size (padding the image with 0 and the labels with their "no label" value), random horizontal flip,
image intensities in ``[-1, 1]``. Evaluation: no resizing, only padding on the right and bottom to
the input size, so that ``meta["size"]`` (the image's own size) lets scoring crop back to the
original resolution; the padding is labelled "ignore" and never counts in a metric.

Labels travel as tv_tensors so that v2 picks the right kernel per tensor (bilinear for the image,
nearest for labels) and the right padding value per type:

* ``tv_tensors.Mask`` — class maps, saliency, edges: padded with 255 (ignore);
* :class:`ZeroPadMask` — depth: padded with 0 (invalid), divided by the random-scale factor;
* :class:`NormalsMask` — normals: padded with 0 (zero vector = invalid), and the flip negates the
  x component, because mirroring the image mirrors the surface: ``(n_x, n_y, n_z) -> (-n_x, n_y, n_z)``.

All randomness comes from the torch global RNG, so a resumed run that restores it reproduces the
same augmentations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IGNORE = 255
#: The BMTAS scale set: 0.5 to 2.0 in steps of 0.25.
BMTAS_SCALES: tuple[float, ...] = tuple(0.5 + 0.25 * i for i in range(7))


class ZeroPadMask(tv_tensors.Mask):
    """A dense label whose "no label" value is 0 (depth)."""


class NormalsMask(tv_tensors.Mask):
    """A surface-normal map ``[3, H, W]``: padded with 0, x component negated on a horizontal flip."""


class NaNPadMask(tv_tensors.Mask):
    """A real-valued dense label whose "no label" value is NaN (Taskonomy keypoints and edges)."""


#: Padding value per tv_tensor type (v2 looks the exact type up).
PAD_FILL: dict[Any, float] = {tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE, ZeroPadMask: 0.0, NormalsMask: 0.0,
                              NaNPadMask: float("nan")}
_LABEL_TYPES = {"class": tv_tensors.Mask, "binary": tv_tensors.Mask, "edge": tv_tensors.Mask,
                "depth": ZeroPadMask, "normals": NormalsMask, "continuous": NaNPadMask}


def image_to_unit_range(image: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` → ``float32 [3, H, W]`` in ``[-1, 1]``: ``x / 127.5 - 1``.

    >>> image_to_unit_range(np.array([[[0, 255, 51]]], dtype=np.uint8)).flatten().tolist()
    [-1.0, 1.0, -0.6000000238418579]
    """
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0


def to_tv_sample(sample: dict, kinds: dict[str, str]) -> dict:
    """Wrap a loaded sample (numpy image and labels) as tv_tensors; ``meta`` passes through."""
    out: dict = {"image": tv_tensors.Image(image_to_unit_range(sample["image"]))}
    for task, kind in kinds.items():
        out[task] = _LABEL_TYPES[kind](torch.from_numpy(np.ascontiguousarray(sample[task])))
    out["meta"] = dict(sample["meta"])
    return out


def to_plain_sample(sample: dict) -> dict:
    """Unwrap tv_tensors to plain tensors (what a DataLoader collates and the losses expect)."""
    return {k: (v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v) for k, v in sample.items()}


class RandomScale(v2.Transform):
    """Rescale image and labels by a factor ``s`` drawn uniformly from ``scales`` (bilinear / nearest).

    Depth labels (:class:`ZeroPadMask`) are also divided by ``s`` (as in the reference loaders): zooming
    in by ``s`` shows the scene as if seen from ``s`` times closer. Invalid depth (0) stays 0.
    """

    def __init__(self, scales: Sequence[float] = BMTAS_SCALES) -> None:
        super().__init__()
        self.scales = tuple(float(s) for s in scales)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        s = self.scales[int(torch.randint(len(self.scales), ()))]
        return {"size": [max(1, round(h * s)), max(1, round(w * s))], "scale": s}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        out = F.resize(inpt, params["size"], antialias=True)
        if isinstance(inpt, ZeroPadMask):  # depth: a scene enlarged s times looks s times closer
            out = tv_tensors.wrap(out / params["scale"], like=out)  # arithmetic unwraps tv_tensors
        return out


class HorizontalFlipWithNormals(v2.Transform):
    """Flip everything with probability ``p``; negate the x component of :class:`NormalsMask` inputs."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"flip": bool(torch.rand(()) < self.p)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["flip"] or not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        out = F.horizontal_flip(inpt)
        if isinstance(inpt, NormalsMask):
            out = out.clone()
            out[0] = -out[0]
        return out


class PadTo(v2.Transform):
    """Pad on the right and bottom to ``size``×``size`` (content stays at the top left).

    An image larger than ``size`` is first scaled down (aspect kept) to fit; ``meta["size"]`` is
    then the scaled content size. Pad values come from :data:`PAD_FILL`.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        f = min(1.0, self.size / max(h, w))
        nh, nw = (min(self.size, max(1, round(h * f))), min(self.size, max(1, round(w * f)))) if f < 1 else (h, w)
        return {"resize": [nh, nw] if f < 1 else None, "padding": [0, 0, self.size - nw, self.size - nh]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        if params["resize"] is not None:
            inpt = F.resize(inpt, params["resize"], antialias=True)
        return F.pad(inpt, params["padding"], fill=PAD_FILL[type(inpt)])


class DenseTransform:
    """Sample transform of the dense data sets: tv_tensor wrapping, v2 pipeline, unwrapping.

    ``train=True``: :class:`RandomScale` → ``v2.RandomCrop(pad_if_needed)`` → flip (unless
    ``flip=False``). ``train=False``:
    :class:`PadTo`. ``meta["size"]`` is the size of the content before cropping/padding.
    """

    def __init__(self, size: int, kinds: dict[str, str], train: bool, scales: Sequence[float] = BMTAS_SCALES,
                 flip: bool = True) -> None:
        self.kinds = kinds
        if train:
            self.pipeline = v2.Compose([
                RandomScale(scales),
                v2.RandomCrop(size, pad_if_needed=True, fill=PAD_FILL),
                *([HorizontalFlipWithNormals()] if flip else []),
            ])
        else:
            self.pipeline = PadTo(size)

    def __call__(self, sample: dict) -> dict:
        meta = sample["meta"]
        tv = to_tv_sample(sample, self.kinds)
        tensors = {k: v for k, v in tv.items() if k != "meta"}
        out = to_plain_sample(self.pipeline(tensors))
        if isinstance(self.pipeline, PadTo) and max(meta["size"]) > self.pipeline.size:
            f = self.pipeline.size / max(meta["size"])
            meta = {**meta, "size": tuple(min(self.pipeline.size, round(s * f)) for s in meta["size"])}
        out["meta"] = meta
        return out


class ImageTransform:
    """Sample transform of image-classification data sets (CelebA): resize to ``size``×``size``,
    flip horizontally in training, intensities in ``[-1, 1]``; vector labels pass through."""

    def __init__(self, size: int, train: bool) -> None:
        steps: list[v2.Transform] = [v2.Resize((size, size), antialias=True)]
        if train:
            steps.append(v2.RandomHorizontalFlip())
        self.pipeline = v2.Compose(steps)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.pipeline(tv_tensors.Image(image_to_unit_range(image))).as_subclass(torch.Tensor)
