"""Reading the files of the published data sets, and the split class the dense loaders share.

Every reader raises :class:`~branchsweep.errors.DataError` naming the file and what is wrong with it
(missing, truncated, unreadable, wrong shape), so that nothing is skipped silently. The same code
path serves training (errors surface when an item is loaded) and ``branchsweep check-data`` (which
calls :meth:`DenseSplit.scan_item` on every item up front and collects the errors instead).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from branchsweep.config import DataConfig
from branchsweep.errors import ConfigError, DataError

IGNORE = 255

#: Fill value of a missing label, per label kind (see :mod:`branchsweep.data.base`).
_FILL = {"class": IGNORE, "binary": IGNORE, "edge": IGNORE, "depth": 0.0, "normals": 0.0, "continuous": float("nan")}


def require_root(cfg: DataConfig, hint: str) -> Path:
    """The data set's root folder; a one-line ConfigError when ``--root`` is missing or wrong."""
    if cfg.root is None:
        raise ConfigError(f"data set {cfg.dataset!r} needs --root DIR ({hint}); see docs/datasets.md")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data set root of {cfg.dataset!r} is not a directory")
    return root


def read_split_file(path: Path) -> list[str]:
    """Image ids listed one per line (blank lines skipped); duplicates are an error."""
    if not path.is_file():
        raise DataError(f"{path}: split file is missing")
    try:
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: split file is unreadable ({err})") from None
    if not ids:
        raise DataError(f"{path}: split file lists no images")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise DataError(f"{path}: image id {i!r} is listed twice")
        seen.add(i)
    return ids


def _open_image(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise DataError(f"{path}: {what} file is missing")
    try:
        img = Image.open(path)
        img.load()  # decodes fully: a truncated file fails here, not later in a worker
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(f"{path}: {what} file is truncated or unreadable ({err})") from None
    return img


def read_rgb(path: Path) -> np.ndarray:
    """An RGB image as ``uint8 [H, W, 3]``."""
    return np.array(_open_image(path, "image").convert("RGB"), dtype=np.uint8)  # writable copy


def read_png(path: Path, what: str, channels: int = 1) -> np.ndarray:
    """A PNG label: ``[H, W]`` for ``channels=1`` (palette indices or grey values), else ``[H, W, 3]``."""
    img = _open_image(path, what)
    if channels == 3:
        if img.mode not in ("RGB", "RGBA"):
            raise DataError(f"{path}: {what} PNG must be RGB, got mode {img.mode}")
        return np.asarray(img.convert("RGB"))
    if img.mode not in ("L", "P", "I", "I;16"):
        raise DataError(f"{path}: {what} PNG must be single-channel (L or P), got mode {img.mode}")
    return np.asarray(img)


def read_npy(path: Path, what: str) -> np.ndarray:
    """A ``.npy`` array (no pickles)."""
    if not path.is_file():
        raise DataError(f"{path}: {what} file is missing")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: {what} file is truncated or unreadable ({err})") from None


def read_mat(path: Path, what: str, key: str) -> np.ndarray:
    """Variable ``key`` of a MATLAB ``.mat`` file (as ``scipy.io.loadmat`` returns it)."""
    if not path.is_file():
        raise DataError(f"{path}: {what} file is missing")
    try:
        content = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, zipfile.BadZipFile, NotImplementedError) as err:
        raise DataError(f"{path}: {what} file is truncated or unreadable ({err})") from None
    if key not in content:
        raise DataError(f"{path}: {what} file has no variable {key!r}")
    return content[key]


def check_classes(label: np.ndarray, num_classes: int, path: Path, what: str) -> None:
    """Every value of a class map is in ``0..num_classes-1`` or the ignore index 255."""
    bad = (label >= num_classes) & (label != IGNORE) | (label < 0)
    if bad.any():
        values = sorted({int(v) for v in np.unique(label[bad])})[:5]
        raise DataError(
            f"{path}: {what} has unknown class index {values[0]} (valid: 0..{num_classes - 1} and 255;"
            f" unknown values: {values})"
        )


@dataclass(frozen=True)
class Label:
    """A label in the conventions of :mod:`branchsweep.data.base` and the file it came from."""

    array: np.ndarray  # class: int64 [H, W]; binary/edge/depth: float32 [1, H, W]; normals: float32 [3, H, W]
    path: Path


#: ``reader(image_id) -> Label | None``; None means "this image has no label for the task" (e.g. no
#: person for human parts) and becomes an all-ignore label.
LabelReader = Callable[[str], "Label | None"]


def resize_label(array: np.ndarray, kind: str, size: tuple[int, int]) -> np.ndarray:
    """Rescale a label to ``size`` (H, W): nearest for most kinds; edges keep thin lines.

    Nearest sampling of a one-pixel edge map at factor 1/2 drops every other edge pixel, so edges
    are area-averaged and every output pixel touching an edge becomes an edge (``area > 0``).
    """
    t = torch.from_numpy(np.ascontiguousarray(array))
    squeeze = t.dim() == 2
    t = (t[None, None] if squeeze else t[None]).float()
    if kind == "edge":
        out = (torch.nn.functional.interpolate(t, size=size, mode="area") > 0).float()
    elif kind == "continuous":  # a real-valued map (Taskonomy keypoints, edges): area average
        out = torch.nn.functional.interpolate(t, size=size, mode="area")
    else:
        out = torch.nn.functional.interpolate(t, size=size, mode="nearest")
    out = out[0, 0] if squeeze else out[0]
    return out.numpy().astype(array.dtype)


class DenseSplit(Dataset):
    """One split of a dense-prediction data set read from disk.

    ``readers[task]`` loads one task's label at the image's resolution; ``kinds[task]`` is its label
    kind (``class``, ``binary``, ``edge``, ``depth``, ``normals``, ``continuous``) for the ignore fill
    and resizing (``continuous``: a real-valued map whose "no label" value is NaN).
    ``resolution`` < 1 rescales image and labels on load (the BMTAS search runs at reduced
    resolution). ``transform`` is a sample transform of :mod:`branchsweep.data.transforms`.
    """

    def __init__(
        self,
        ids: list[str],
        image_path: Callable[[str], Path],
        readers: dict[str, LabelReader],
        kinds: dict[str, str],
        transform: Callable[[dict], dict],
        resolution: float = 1.0,
    ) -> None:
        self.ids, self.image_path, self.readers, self.kinds = ids, image_path, readers, kinds
        self.transform, self.resolution = transform, resolution

    def __len__(self) -> int:
        return len(self.ids)

    def _label(self, task: str, image_id: str, hw: tuple[int, int]) -> tuple[np.ndarray, bool]:
        """The task's label at size ``hw`` and whether the image has one (False: all-ignore)."""
        label = self.readers[task](image_id)
        kind = self.kinds[task]
        if label is None:
            shape = hw if kind == "class" else ((3,) if kind == "normals" else (1,)) + hw
            dtype = np.int64 if kind == "class" else np.float32
            return np.full(shape, _FILL[kind], dtype=dtype), False
        if tuple(label.array.shape[-2:]) != hw:
            raise DataError(
                f"{label.path}: {task} label is {label.array.shape[-2]}x{label.array.shape[-1]} but its image"
                f" {self.image_path(image_id).name} is {hw[0]}x{hw[1]}"
            )
        return label.array, True

    def load(self, index: int) -> tuple[dict, dict[str, bool]]:
        """Image and labels of item ``index`` before augmentation, and which tasks are labelled."""
        image_id = self.ids[index]
        image = read_rgb(self.image_path(image_id))
        hw = (int(image.shape[0]), int(image.shape[1]))
        labels, present = {}, {}
        for task in self.readers:
            labels[task], present[task] = self._label(task, image_id, hw)
        if self.resolution != 1.0:
            new = (max(1, round(hw[0] * self.resolution)), max(1, round(hw[1] * self.resolution)))
            img = torch.from_numpy(image).permute(2, 0, 1)[None].float()
            img = torch.nn.functional.interpolate(img, size=new, mode="bilinear", antialias=True, align_corners=False)
            image = img[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
            labels = {t: resize_label(a, self.kinds[t], new) for t, a in labels.items()}
            hw = new
        sample = {"image": image, **labels, "meta": {"id": image_id, "size": hw}}
        return sample, present

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.ids):
            raise IndexError(index)
        sample, _ = self.load(index)
        return self.transform(sample)

    def scan_item(self, index: int) -> tuple[set[str], list[str]]:
        """Load item ``index`` completely; return the tasks it labels and every problem found."""
        image_id = self.ids[index]
        problems: list[str] = []
        try:
            image = read_rgb(self.image_path(image_id))
        except DataError as err:
            problems.append(str(err))
            image = None
        present: set[str] = set()
        for task in self.readers:
            try:
                label = self.readers[task](image_id)
                if label is None:
                    continue
                if image is not None and tuple(label.array.shape[-2:]) != tuple(image.shape[:2]):
                    self._label(task, image_id, (int(image.shape[0]), int(image.shape[1])))
                present.add(task)
            except DataError as err:
                problems.append(str(err))
        return present, problems


def resolution_option(cfg: DataConfig, half_default: bool = False) -> float:
    """The load-time rescale factor from ``options``: ``resolution`` in (0, 1], or ``half_resolution``."""
    half = cfg.options.get("half_resolution", False)
    if not isinstance(half, bool):
        raise ConfigError(f"data set {cfg.dataset!r}: option half_resolution must be true or false, got {half!r}")
    value = cfg.options.get("resolution", 0.5 if half and half_default else 1.0)
    if half and "resolution" in cfg.options:
        raise ConfigError(f"data set {cfg.dataset!r}: give either half_resolution or resolution, not both")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"data set {cfg.dataset!r}: option resolution must be a factor in (0, 1], got {value!r}")
    return float(value)


def at_resolution(cfg: DataConfig, factor: float, current: float) -> DataConfig:
    """``cfg`` loading images at ``factor`` of their full resolution instead of ``current``: the option
    ``resolution`` becomes ``factor`` and an explicit ``size`` scales with it (the BMTAS search reads a
    resized copy of the data set it retrains on)."""
    import dataclasses

    options = {k: v for k, v in cfg.options.items() if k not in ("half_resolution", "resolution")}
    size = None if cfg.size is None else max(1, round(cfg.size * factor / current))
    return dataclasses.replace(cfg, size=size, options={**options, "resolution": float(factor)})


def select_task_names(cfg: DataConfig, known: list[str]) -> list[str]:
    """``cfg.tasks`` validated against ``known`` (all of them when None): only these labels are read."""
    if not cfg.tasks:
        return list(known)
    unknown = [t for t in cfg.tasks if t not in known]
    if unknown:
        raise ConfigError(f"unknown task {unknown[0]!r} for data set {cfg.dataset!r}; its tasks are: {', '.join(known)}")
    return list(dict.fromkeys(cfg.tasks))
