"""``taskonomy``: the Taskonomy tiny split (Zamir et al. 2018) with the five tasks of Learning to Branch §4.3.

Layout written by the official download tool (``omnitools.download ... --components taskonomy
--subset tiny --dest ROOT``), one folder per domain, component and building::

    ROOT/rgb/taskonomy/<building>/point_<p>_view_<v>_domain_rgb.png                           RGB, 8 bit
    ROOT/segment_semantic/taskonomy/<building>/point_<p>_view_<v>_domain_segment_semantic.png  grey, 8 bit
    ROOT/normal/taskonomy/<building>/point_<p>_view_<v>_domain_normal.png                      RGB, 8 bit
    ROOT/depth_zbuffer/taskonomy/<building>/point_<p>_view_<v>_domain_depth_zbuffer.png        grey, 16 bit
    ROOT/keypoints2d/taskonomy/<building>/point_<p>_view_<v>_domain_keypoints2d.png            grey, 16 bit
    ROOT/edge_texture/taskonomy/<building>/point_<p>_view_<v>_domain_edge_texture.png          grey, 16 bit
    ROOT/train_val_test_tiny.csv      the official building split: header ``id,train,val,test``, then
                                      ``<building>,1,0,0`` (train), ``…,0,1,0`` (val), ``…,0,0,1`` (test)

The older per-building layout without the ``taskonomy/`` component level (``ROOT/<domain>/<building>/``)
is read too. The images of a split are the RGB files of its buildings; every label file is required.

Labels (Learning to Branch, Appendix A, after Sun et al. 2019), in the shared conventions of
:mod:`branchsweep.data.base`:

* ``segment_semantic``: values 0 (uncertain) and 1 (background) are ignored (255); the 16 object
  classes 2..17 become 0..15.
* ``normal``: ``rgb / 127.5 - 1`` (``[0, 255] → [-1, 1]``), not re-normalised, no mask.
* ``depth_zbuffer``: raw values in 1/512 m; pixels above 64500 (≈ 126 m: no geometry) are invalid (0);
  the rest become ``log(d) / log(2^16)`` in ``[0, 1]`` (``d ≤ 1`` gives 0, i.e. invalid as well).
* ``keypoints2d``: ``v / 2^16`` mapped linearly from ``[0, 0.005]`` to ``[-1, 1]``, no mask.
* ``edge_texture``: ``v / 2^16`` mapped linearly from ``[0, 0.08]`` to ``[-1, 1]``, no mask.

Resolution: the files are 512×512. ``size`` (default 256, the retraining resolution) rescales images
and labels on load (images bilinear with antialiasing; class maps, normals and depth nearest;
keypoints and edges by area averaging); the Learning-to-Branch search reads the data at ``search_size`` (option, default
128) through :meth:`~branchsweep.data.base.MultiTaskData.for_search`. Training augmentation (§4.3:
"random clipping, scaling, and cropping"; no flip is named): random scale in ``{1, 1.25, 1.5}`` and a
random crop back to the input size.

Epochs: option ``epoch_images`` (e.g. 275000, the tiny split's training images as Learning to Branch
counts them) makes an epoch of every epoch-based length and schedule (lr decay, temperature) that many
images, i.e. 4,296 iterations at batch 64, whatever the download holds; without it an epoch is one pass
over the training buildings on disk.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from branchsweep.config import DataConfig
from branchsweep.data._files import (
    IGNORE,
    DenseSplit,
    Label,
    _open_image,
    read_png,
    require_root,
    select_task_names,
)
from branchsweep.data.base import DATASETS, MultiTaskData, check_options
from branchsweep.data.transforms import DenseTransform
from branchsweep.errors import ConfigError, DataError
from branchsweep.tasks import create_task

NATIVE_SIZE = 512
COMPONENT = "taskonomy"
SPLITS = ("train", "val", "test")
#: Task name → label kind of :mod:`branchsweep.data._files` (how it is padded and resized).
KINDS = {"segment_semantic": "class", "normal": "normals", "depth_zbuffer": "depth",
         "keypoints2d": "continuous", "edge_texture": "continuous"}
NUM_SEMSEG_CLASSES = 16
DEPTH_INVALID_ABOVE = 64500
KEYPOINT_RANGE = 0.005
EDGE_RANGE = 0.08
#: Random scales of the training augmentation ("random clipping, scaling and cropping", §4.3):
#: zoom in by up to 1.5 and crop back, so no padding enters a training label.
TRAIN_SCALES = (1.0, 1.25, 1.5)
_RGB_NAME = re.compile(r"^(point_\d+_view_\d+)_domain_rgb\.png$")


def semseg_labels(png: np.ndarray) -> np.ndarray:
    """Taskonomy class map → 16 classes: 0 (uncertain) and 1 (background) → 255, ``c`` → ``c - 2``.

    >>> semseg_labels(np.array([0, 1, 2, 17])).tolist()
    [255, 255, 0, 15]
    """
    out = png.astype(np.int64) - 2
    out[out < 0] = IGNORE
    return out


def normal_labels(rgb: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` → ``float32 [3, H, W]`` in ``[-1, 1]``: ``x / 127.5 - 1``.

    >>> [round(float(v), 2) for v in normal_labels(np.array([[[0, 255, 51]]], dtype=np.uint8))[:, 0, 0]]
    [-1.0, 1.0, -0.6]
    """
    return np.ascontiguousarray((rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1))


def depth_labels(raw: np.ndarray) -> np.ndarray:
    """16-bit z-buffer → ``log(d) / log(2^16)``; ``d > 64500`` → 0 (invalid). ``[1, H, W]`` float32.

    >>> [round(float(v), 4) for v in depth_labels(np.array([[256, 65535, 64500]], dtype=np.uint16)).flat]
    [0.5, 0.0, 0.9986]
    """
    d = raw.astype(np.float64)
    out = np.log(np.maximum(d, 1.0)) / math.log(2**16)
    out[d > DEPTH_INVALID_ABOVE] = 0.0
    return out.astype(np.float32)[None]


def scaled_labels(raw: np.ndarray, top: float) -> np.ndarray:
    """16-bit map → ``v / 2^16`` mapped linearly from ``[0, top]`` to ``[-1, 1]`` (no clipping).

    >>> [round(float(v), 3) for v in scaled_labels(np.array([[0, 164, 328]], dtype=np.uint16), 0.005).flat]
    [-1.0, 0.001, 1.002]
    """
    v = raw.astype(np.float64) / 2**16
    return (v / top * 2.0 - 1.0).astype(np.float32)[None]


def read_png16(path: Path, what: str) -> np.ndarray:
    """A single-channel 16-bit PNG as ``uint16 [H, W]``; an 8-bit or colour file is a DataError."""
    img = _open_image(path, what)
    if img.mode not in ("I;16", "I;16B", "I"):
        raise DataError(f"{path}: {what} must be a single-channel 16-bit PNG, got mode {img.mode}")
    array = np.asarray(img)
    if array.min() < 0 or array.max() > 65535:
        raise DataError(f"{path}: {what} has values outside the 16-bit range")
    return array.astype(np.uint16)


def read_split_csv(path: Path) -> dict[str, list[str]]:
    """Buildings per split from the official ``train_val_test_<subset>.csv`` (``id,train,val,test``)."""
    if not path.is_file():
        raise DataError(f"{path}: building split file is missing (the official train_val_test_<subset>.csv)")
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: building split file is unreadable ({err})") from None
    if not rows or [c.strip() for c in rows[0]] != ["id", *SPLITS]:
        raise DataError(f"{path}: first line must be the header 'id,train,val,test'")
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        flags = [c.strip() for c in row[1:]]
        if len(row) != 4 or sorted(flags) != ["0", "0", "1"]:
            raise DataError(f"{path}: line {n} must be '<building>,a,b,c' with exactly one 1, got {','.join(row)!r}")
        out[SPLITS[flags.index("1")]].append(row[0].strip())
    return out


class TaskonomySplit(DenseSplit):
    """A split whose images and labels are rescaled on load to ``size`` × ``size`` (from any file size)."""

    def __init__(self, *args, size: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.size = size

    def load(self, index: int) -> tuple[dict, dict[str, bool]]:
        try:
            with Image.open(self.image_path(self.ids[index])) as img:  # header only
                self.resolution = self.size / max(img.size)
        except (OSError, UnidentifiedImageError):
            pass  # the full read in DenseSplit.load raises the DataError naming the file
        return super().load(index)


class TaskonomyFiles:
    """Paths and label readers of one Taskonomy root (component folder ``taskonomy/`` or none)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.component = (root / "rgb" / COMPONENT).is_dir()

    def folder(self, domain: str, building: str) -> Path:
        return self.root / domain / COMPONENT / building if self.component else self.root / domain / building

    def path(self, domain: str, image_id: str) -> Path:
        building, view = image_id.split("/")
        return self.folder(domain, building) / f"{view}_domain_{domain}.png"

    def image(self, image_id: str) -> Path:
        return self.path("rgb", image_id)

    def list_images(self, buildings: list[str]) -> list[str]:
        """``<building>/point_<p>_view_<v>`` of every RGB file of ``buildings``, sorted."""
        ids: list[str] = []
        for building in buildings:
            folder = self.folder("rgb", building)
            if not folder.is_dir():
                raise DataError(f"{folder}: RGB folder of building {building!r} is missing (not downloaded?)")
            views = sorted(m.group(1) for p in folder.iterdir() if (m := _RGB_NAME.match(p.name)))
            if not views:
                raise DataError(f"{folder}: building {building!r} has no point_<p>_view_<v>_domain_rgb.png file")
            ids += [f"{building}/{v}" for v in views]
        return ids

    def segment_semantic(self, image_id: str) -> Label:
        path = self.path("segment_semantic", image_id)
        img = _open_image(path, "segment_semantic label")
        if img.mode in ("RGB", "RGBA"):  # some copies store the grey map three times
            rgb = np.asarray(img.convert("RGB"))
            if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 0] == rgb[..., 2])).all():
                raise DataError(f"{path}: segment_semantic label must be a grey class map, got distinct RGB channels")
            png = rgb[..., 0]
        else:
            png = read_png(path, "segment_semantic label")
        png = png.astype(np.int64)
        if png.max(initial=0) > NUM_SEMSEG_CLASSES + 1:
            raise DataError(f"{path}: segment_semantic label has unknown class {int(png.max())} (valid: 0..17)")
        return Label(semseg_labels(png), path)

    def normal(self, image_id: str) -> Label:
        path = self.path("normal", image_id)
        return Label(normal_labels(read_png(path, "normal label", channels=3)), path)

    def depth_zbuffer(self, image_id: str) -> Label:
        path = self.path("depth_zbuffer", image_id)
        return Label(depth_labels(read_png16(path, "depth_zbuffer label")), path)

    def keypoints2d(self, image_id: str) -> Label:
        path = self.path("keypoints2d", image_id)
        return Label(scaled_labels(read_png16(path, "keypoints2d label"), KEYPOINT_RANGE), path)

    def edge_texture(self, image_id: str) -> Label:
        path = self.path("edge_texture", image_id)
        return Label(scaled_labels(read_png16(path, "edge_texture label"), EDGE_RANGE), path)


def _size_option(cfg: DataConfig, name: str, default: int) -> int:
    value = cfg.options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"data set {cfg.dataset!r}: option {name} must be a positive integer, got {value!r}")
    return value


def _subset_option(cfg: DataConfig) -> str:
    subset = cfg.options.get("subset", "tiny")
    if subset not in ("debug", "tiny", "medium", "full", "fullplus"):
        raise ConfigError(f"data set {cfg.dataset!r}: option subset must be debug, tiny, medium, full or fullplus,"
                          f" got {subset!r}")
    return subset


def _build(cfg: DataConfig, root: Path, size: int, search_size: int) -> MultiTaskData:
    all_tasks = {
        "segment_semantic": create_task("segment_semantic"),
        "normal": create_task("normal"),
        "depth_zbuffer": create_task("depth_zbuffer"),
        "keypoints2d": create_task("keypoints2d"),
        "edge_texture": create_task("edge_texture"),
    }
    names = select_task_names(cfg, list(all_tasks))
    files = TaskonomyFiles(root)
    readers = {t: getattr(files, t) for t in names}
    kinds = {t: KINDS[t] for t in names}
    split_file = root / f"train_val_test_{_subset_option(cfg)}.csv"
    buildings = read_split_csv(split_file)
    limits = {"train": cfg.train_samples, "val": cfg.val_samples, "test": cfg.val_samples}

    def make_split(split: str, train: bool) -> DenseSplit:
        if not buildings[split]:
            raise DataError(f"{split_file}: split {split!r} lists no building")
        ids = files.list_images(buildings[split])
        if limits[split]:
            ids = ids[: limits[split]]
        transform = DenseTransform(size, kinds, train, scales=TRAIN_SCALES, flip=False)
        return TaskonomySplit(ids, files.image, readers, kinds, transform, size=size)

    data = MultiTaskData(
        name="taskonomy", tasks={t: all_tasks[t] for t in names}, make_split=make_split,
        input_shape=(3, size, size), default_backbone="resnet34", splits=SPLITS,
        info={"root": str(root), "ignore_index": IGNORE, "size": size, "search_size": search_size, "split_file": str(split_file),
              "layout": f"<domain>/{COMPONENT}/<building>" if files.component else "<domain>/<building>"},
    )
    if "epoch_images" in cfg.options:
        data.epoch_samples = _size_option(cfg, "epoch_images", 1)
    if search_size != size:
        data.search_view = lambda: _build(cfg, root, search_size, search_size)
    return data


@DATASETS.register("taskonomy")
def taskonomy(cfg: DataConfig) -> MultiTaskData:
    """Taskonomy (omnitools layout): segment_semantic, normal, depth_zbuffer, keypoints2d, edge_texture;
    retrained at 256×256 (``size``), searched at 128×128 (option ``search_size``)."""
    check_options(cfg, {"search_size", "subset", "epoch_images"})
    root = require_root(cfg, "the omnitools download folder with rgb/ and train_val_test_tiny.csv")
    size = cfg.size or 256
    search_size = _size_option(cfg, "search_size", 128)
    for name, value in (("size", size), ("search_size", search_size)):
        if value > NATIVE_SIZE:
            raise ConfigError(f"data set 'taskonomy': {name} {value} exceeds the files' {NATIVE_SIZE}x{NATIVE_SIZE}")
    return _build(cfg, root, size, search_size)
