"""``nyud``: NYUD-v2 multi-task (795 train / 654 val) in the MTL-PyTorch / ATRC layout::

    ROOT/images/<id>.jpg              RGB, 425×560 in the published copy
    ROOT/segmentation/<id>.png        40 classes as 1..40, 0 = unlabelled
    ROOT/depth/<id>.npy               float depth in metres [H, W], 0 = invalid
    ROOT/normals/<id>.npy             float normals [H, W, 3] in [-1, 1], zero vector = invalid
    ROOT/edge/<id>.npy                edge map [H, W] in {0, 1}
    ROOT/gt_sets/{train,val}.txt      one image id per line

Labels are converted to the shared conventions: ``semseg = png - 1`` with the unlabelled 0 becoming
255 (ignore), so the classes are 0..39; depth ``[1, H, W]``; normals ``[3, H, W]`` normalised to unit
length (zero stays zero); edges ``[1, H, W]``. The BMTAS paper searches at 2/3 resolution
(:data:`SEARCH_RESOLUTION`; the ``bmtas`` search method rescales a full-resolution data set on its own
and prices at full resolution); option ``resolution`` (a factor in (0, 1]) rescales images and labels
on load for everything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from branchsweep.config import DataConfig
from branchsweep.data._files import (
    IGNORE,
    DenseSplit,
    Label,
    at_resolution,
    check_classes,
    read_npy,
    read_png,
    read_split_file,
    require_root,
    resolution_option,
    select_task_names,
)
from branchsweep.data.base import DATASETS, MultiTaskData, check_options
from branchsweep.data.pascal_context import edge_task
from branchsweep.data.transforms import DenseTransform
from branchsweep.errors import DataError
from branchsweep.tasks import create_task

#: The BMTAS paper's search resolution (Section 4.1); retraining and pricing use full resolution.
SEARCH_RESOLUTION = 2 / 3
NUM_SEMSEG_CLASSES = 40
#: The images' size (H, W). Loaders crop and pad to 560² squares; networks are priced at 425×560, as
#: the BMTAS paper prices them (Table 2: Single 254.4 B, Shared 122.2 B MAdds).
IMAGE_SIZE = (425, 560)
EDGE_POS_WEIGHT = 0.8
EDGE_MAX_DIST = 0.011
KINDS = {"semseg": "class", "depth": "depth", "normals": "normals", "edge": "edge"}


def shift_semseg(png: np.ndarray) -> np.ndarray:
    """NYUD class map 0..40 (0 = unlabelled) → 0..39 with 255 = ignore: ``(png - 1) mod 256``.

    >>> shift_semseg(np.array([0, 1, 40])).tolist()
    [255, 0, 39]
    """
    out = png.astype(np.int64) - 1
    out[out < 0] = IGNORE
    return out


def _finite_array(path: Path, what: str, array: np.ndarray) -> np.ndarray:
    """``array`` as float32 after checking it is numeric and finite."""
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: {what} must be numeric, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: {what} contains NaN or infinite values")
    return array.astype(np.float32)


def _read_plane(path: Path, what: str) -> np.ndarray:
    """A finite ``[H, W]`` array from ``path`` (``[H, W, 1]`` accepted); DataError naming the file otherwise."""
    array = read_npy(path, what)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise DataError(f"{path}: {what} must be [H, W], got shape {array.shape}")
    return _finite_array(path, what, array)


class NyudFiles:
    """Label readers for one NYUD-v2 multi-task root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def image(self, image_id: str) -> Path:
        return self.root / "images" / f"{image_id}.jpg"

    def semseg(self, image_id: str) -> Label:
        path = self.root / "segmentation" / f"{image_id}.png"
        png = read_png(path, "semseg label").astype(np.int64)
        check_classes(png, NUM_SEMSEG_CLASSES + 1, path, "semseg label (0 = unlabelled, 1..40)")
        return Label(shift_semseg(png), path)

    def depth(self, image_id: str) -> Label:
        path = self.root / "depth" / f"{image_id}.npy"
        depth = _read_plane(path, "depth label")
        if (depth < 0).any():
            raise DataError(f"{path}: depth label has negative values (metres expected, 0 = invalid)")
        return Label(depth[None], path)

    def normals(self, image_id: str) -> Label:
        path = self.root / "normals" / f"{image_id}.npy"
        n = read_npy(path, "normals label")
        if n.ndim != 3 or n.shape[-1] != 3:
            raise DataError(f"{path}: normals label must be [H, W, 3], got shape {n.shape}")
        n = _finite_array(path, "normals label", n).transpose(2, 0, 1)
        norm = np.linalg.norm(n, axis=0, keepdims=True)
        n = np.where(norm > 0, n / np.maximum(norm, 1e-12), 0.0)
        return Label(np.ascontiguousarray(n, dtype=np.float32), path)

    def edge(self, image_id: str) -> Label:
        path = self.root / "edge" / f"{image_id}.npy"
        e = _read_plane(path, "edge label")
        if ((e != 0) & (e != 1)).any():
            raise DataError(f"{path}: edge label must contain only 0 and 1")
        return Label(e[None], path)


@DATASETS.register("nyud")
def nyud(cfg: DataConfig) -> MultiTaskData:
    """NYUD-v2 (MTL-PyTorch/ATRC layout): semseg (40), depth, normals, edge; tensors 560×560 (the 425×560
    images, padded), networks priced at 425×560 (:meth:`MultiTaskData.price_shape`)."""
    check_options(cfg, {"resolution"})
    root = require_root(cfg, "the NYUD-v2 folder with images/ and gt_sets/")
    resolution = resolution_option(cfg)
    size = cfg.size or round(560 * resolution)
    all_tasks = {
        "semseg": create_task("semseg", num_classes=NUM_SEMSEG_CLASSES),
        "depth": create_task("depth"),
        "normals": create_task("normals"),
        "edge": edge_task(EDGE_POS_WEIGHT, EDGE_MAX_DIST),
    }
    names = select_task_names(cfg, list(all_tasks))
    files = NyudFiles(root)
    readers = {t: getattr(files, t) for t in names}
    kinds = {t: KINDS[t] for t in names}

    def make_split(split: str, train: bool) -> DenseSplit:
        ids = read_split_file(root / "gt_sets" / f"{split}.txt")
        return DenseSplit(ids, files.image, readers, kinds, DenseTransform(size, kinds, train), resolution)

    return MultiTaskData(
        name="nyud", tasks={t: all_tasks[t] for t in names}, make_split=make_split,
        input_shape=(3, size, size), default_backbone="resnet50", image_size=IMAGE_SIZE,
        info={"root": str(root), "resolution": resolution, "search_resolution": SEARCH_RESOLUTION,
              "ignore_index": IGNORE},
        rescale=lambda factor: nyud(at_resolution(cfg, factor, resolution)),
    )
