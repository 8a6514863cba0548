"""``celeba``: CelebA with its 40 binary attributes (the Learning to Branch classification benchmark).

Published layout (the "Align&Cropped" release)::

    ROOT/img_align_celeba/<file>.jpg      178×218 aligned faces
    ROOT/list_attr_celeba.txt             line 1: image count; line 2: the 40 attribute names;
                                          then "<file> a_1 ... a_40" with a_i in {-1, 1}
    ROOT/list_eval_partition.txt          "<file> p" with p = 0 train, 1 val, 2 test (162770/19867/19962)

Each attribute is one ``binary`` task named as in the header (``5_o_Clock_Shadow``, ``Smiling``, ...);
labels ``-1/1`` become ``0/1`` as ``float32 [1]``. Images are resized to ``size``×``size`` (default 64),
flipped horizontally in training, intensities in ``[-1, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from branchsweep.config import DataConfig
from branchsweep.data._files import read_rgb, require_root, select_task_names
from branchsweep.data.base import DATASETS, MultiTaskData, check_options
from branchsweep.data.transforms import ImageTransform
from branchsweep.errors import DataError
from branchsweep.tasks import create_task

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def read_attribute_names(path: Path) -> list[str]:
    """The attribute names of line 2 of ``list_attr_celeba.txt``."""
    if not path.is_file():
        raise DataError(f"{path}: attribute file is missing")
    try:
        with path.open() as f:
            f.readline()
            names = f.readline().split()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: attribute file is unreadable ({err})") from None
    if not names:
        raise DataError(f"{path}: line 2 must list the attribute names")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: an attribute name is listed twice on line 2")
    return names


@dataclass
class Attributes:
    """The parsed attribute table: ``labels[i]`` are the 0/1 attributes of ``files[i]``."""

    names: list[str]
    files: list[str]
    labels: np.ndarray  # uint8 [N, A]
    index: dict[str, int]


def read_attributes(path: Path) -> Attributes:
    """Parse ``list_attr_celeba.txt`` completely, checking the count, row widths and values.

    pandas' C tokenizer reads the 202,599 rows in about a second (a Python loop takes several).
    """
    names = read_attribute_names(path)
    with path.open() as f:
        first = f.readline().strip()
    try:
        count = int(first)
    except ValueError:
        raise DataError(f"{path}: line 1 must be the image count, got {first[:40]!r}") from None
    try:
        table = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None, names=["file", *names],
                            dtype=str, engine="c")
    except (pd.errors.ParserError, ValueError) as err:
        raise DataError(f"{path}: malformed attribute table ({str(err).strip().splitlines()[-1]})") from None
    if len(table) != count:
        raise DataError(f"{path}: header says {count} images but {len(table)} rows follow (truncated file?)")
    values = table[names].to_numpy()
    valid = (values == "1") | (values == "-1")  # NaN (a short row) is neither
    if not valid.all():
        row = int(np.flatnonzero(~valid.all(axis=1))[0])
        raise DataError(f"{path}: line {row + 3} has a missing value or one other than -1 or 1")
    files = table["file"].tolist()
    index = {f: i for i, f in enumerate(files)}
    if len(index) != len(files):
        raise DataError(f"{path}: an image is listed twice")
    return Attributes(names, files, (values == "1").astype(np.uint8), index)


def read_partition(path: Path, attrs: Attributes, attr_path: Path) -> dict[str, list[str]]:
    """Image files per split from ``list_eval_partition.txt``; every file must have attributes."""
    if not path.is_file():
        raise DataError(f"{path}: partition file is missing")
    splits: dict[str, list[str]] = {s: [] for s in SPLIT_CODES}
    by_code = {c: s for s, c in SPLIT_CODES.items()}
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}: line {i + 1} must be '<file> 0|1|2', got {line[:60]!r}")
        if parts[0] not in attrs.index:
            raise DataError(f"{path}: line {i + 1}: image {parts[0]} has no row in {attr_path.name}")
        splits[by_code[int(parts[1])]].append(parts[0])
    return splits


class CelebASplit(Dataset):
    """One CelebA split: resized image and one ``float32 [1]`` 0/1 label per selected attribute."""

    def __init__(self, root: Path, files: list[str], attrs: Attributes, tasks: list[str], transform: ImageTransform):
        self.root, self.files, self.attrs, self.transform = root, files, attrs, transform
        self.columns = [(t, attrs.names.index(t)) for t in tasks]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.files):
            raise IndexError(index)
        name = self.files[index]
        image = read_rgb(self.root / IMAGE_DIR / name)
        row = self.attrs.labels[self.attrs.index[name]]
        item: dict = {"image": self.transform(image)}
        for task, col in self.columns:
            item[task] = torch.tensor([float(row[col])], dtype=torch.float32)
        item["meta"] = {"id": name, "size": (int(image.shape[0]), int(image.shape[1]))}
        return item

    def scan_item(self, index: int) -> tuple[set[str], list[str]]:
        """Check that item ``index``'s image decodes; its attributes were validated on parsing."""
        try:
            read_rgb(self.root / IMAGE_DIR / self.files[index])
        except DataError as err:
            return set(), [str(err)]
        return {t for t, _ in self.columns}, []


@DATASETS.register("celeba")
def celeba(cfg: DataConfig) -> MultiTaskData:
    """CelebA aligned faces: 40 binary attributes, train/val/test = 160K/20K/20K, 64×64 input."""
    check_options(cfg, set())
    root = require_root(cfg, f"the CelebA folder with {IMAGE_DIR}/ and {ATTR_FILE}")
    size = cfg.size or 64
    attr_path = root / ATTR_FILE
    names = select_task_names(cfg, read_attribute_names(attr_path))
    cache: dict[str, object] = {}

    def make_split(split: str, train: bool) -> CelebASplit:
        if "splits" not in cache:
            attrs = read_attributes(attr_path)
            cache["attrs"], cache["splits"] = attrs, read_partition(root / PARTITION_FILE, attrs, attr_path)
        files = cache["splits"][split]  # type: ignore[index]
        if not files:
            raise DataError(f"{root / PARTITION_FILE}: split {split!r} lists no images")
        return CelebASplit(root, files, cache["attrs"], names, ImageTransform(size, train))  # type: ignore[arg-type]

    return MultiTaskData(
        name="celeba", tasks={t: create_task("binary", name=t) for t in names}, make_split=make_split,
        input_shape=(3, size, size), default_backbone="celeba_vgg", splits=("train", "val", "test"),
        info={"root": str(root)},
    )
