"""``pascal-context``: the PASCAL-Context multi-task benchmark in the published ``PASCAL_MT`` layout.

Five dense tasks on 4998 train / 5105 val images (BMTAS, MTI-Net, ATRC)::

    ROOT/JPEGImages/<id>.jpg
    ROOT/ImageSets/Context/{train,val}.txt        one image id per line
    ROOT/semseg/VOC12/<id>.png                    21 classes (0 = background), 255 = ignore;
    ROOT/semseg/pascal-context/<id>.png           used where VOC12 has no file for the image
    ROOT/human_parts/<id>.mat                     PASCAL-Part annotation (struct ``anno``)
    ROOT/sal_distill/<id>.png                     distilled saliency, grey 0..255
    ROOT/normals_distill/<id>.png                 distilled normals, RGB
    ROOT/pascal-context/trainval/<id>.mat         459-class context label map (``LabelMap``)
    ROOT/json/{nyu,context}_classes.json          class names → ids, for the normals mask

Label derivations (as in the published multi-task loaders):

* ``human_parts``: every person object (``class_ind`` 15) with part masks is painted with the 6-part
  map :data:`HUMAN_PARTS` (head, torso, upper arms, lower arms + hands, upper legs, lower legs + feet;
  0 = background). An image without such a person has no part label: all pixels are 255 (ignore).
* ``sal``: ``grey / 255 > 0.5``.
* ``normals``: ``2 · rgb / 255 - 1`` normalised to unit length, kept only on pixels whose context
  class also exists in NYUD (the distillation network's training set) or is ``tvmonitor``; elsewhere 0.
* ``edge``: the authors' rule (``_load_edge`` of the BMTAS code's ``src/dataset.py``): the nonzero
  pixels of the 4-neighbour Laplacian of the context label map, thinned to one pixel with
  ``skimage.morphology.thin`` (see :func:`context_edges`).

The BMTAS paper searches at half resolution (:data:`SEARCH_RESOLUTION`) and retrains at full
resolution: the ``bmtas`` search method reads ``rescale(0.5)`` of a full-resolution data set on its
own and prices MAdds at full resolution. Option ``half_resolution`` (or ``resolution``: a factor in
(0, 1]) rescales images and labels on load for everything; the default input size then halves to 256.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import morphology

from branchsweep.config import DataConfig
from branchsweep.data._files import (
    IGNORE,
    DenseSplit,
    Label,
    at_resolution,
    check_classes,
    read_mat,
    read_png,
    read_split_file,
    require_root,
    resolution_option,
    select_task_names,
)
from branchsweep.data.base import DATASETS, MultiTaskData, check_options
from branchsweep.data.transforms import DenseTransform
from branchsweep.errors import DataError
from branchsweep.tasks import Task, create_task

#: The BMTAS paper's search resolution (Section 4.1); retraining and pricing use full resolution.
SEARCH_RESOLUTION = 0.5
NUM_SEMSEG_CLASSES = 21
NUM_PART_CLASSES = 7
PERSON_CLASS = 15
EDGE_POS_WEIGHT = 0.95
EDGE_MAX_DIST = 0.0075
KINDS = {"semseg": "class", "human_parts": "class", "sal": "binary", "normals": "normals", "edge": "edge"}

#: PASCAL-Part person part names → the 6 BMTAS/ASTMT parts (1 head, 2 torso, 3 upper arms,
#: 4 lower arms and hands, 5 upper legs, 6 lower legs and feet).
HUMAN_PARTS: dict[str, int] = {
    "hair": 1, "head": 1, "lear": 1, "lebrow": 1, "leye": 1, "mouth": 1, "nose": 1, "rear": 1,
    "rebrow": 1, "reye": 1, "neck": 2, "torso": 2, "luarm": 3, "ruarm": 3, "lhand": 4, "llarm": 4,
    "rhand": 4, "rlarm": 4, "luleg": 5, "ruleg": 5, "lfoot": 6, "llleg": 6, "rfoot": 6, "rlleg": 6,
}


def edge_task(pos_weight: float, max_dist: float) -> Task:
    """The edge task with the data set's positive weight and odsF matching tolerance."""
    return create_task("edge", pos_weight=pos_weight, max_dist=max_dist)


#: The 4-neighbour Laplacian, OpenCV's ``cv2.Laplacian`` kernel for its default ``ksize=1``.
LAPLACIAN_4 = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)


def context_laplacian(label_map: np.ndarray) -> np.ndarray:
    """``cv2.Laplacian(label_map, cv2.CV_64F)`` without OpenCV: the kernel :data:`LAPLACIAN_4` with the
    border reflected without repeating the edge pixel (OpenCV's default ``BORDER_REFLECT_101``, SciPy's
    ``mode="mirror"``: ``c b | a b c | b a``), computed in float64 like OpenCV's ``CV_64F`` output (exact
    for integer class ids; an unsigned map is never wrapped).

    >>> context_laplacian(np.array([[5, 5, 7, 7]], dtype=np.uint16)).tolist()
    [[0.0, 2.0, -2.0, 0.0]]
    """
    return ndimage.convolve(np.asarray(label_map, dtype=np.float64), LAPLACIAN_4, mode="mirror")


def context_edges(label_map: np.ndarray) -> np.ndarray:
    """The edge label of a context class map, ``thin(laplacian(m) != 0)``, as a ``[1, H, W]`` float map.

    The BMTAS authors' ``_load_edge`` (``src/dataset.py``) takes ``cv2.Laplacian(LabelMap, cv2.CV_64F)``
    of the ``LabelMap`` as ``scipy.io.loadmat`` returns it (integer class ids) and thins its nonzero
    pixels with ``skimage.morphology.thin``; :func:`context_laplacian` is that Laplacian. It marks both
    sides of a boundary (and is zero where the neighbours' mean equals the centre, e.g. the middle of
    ``1 2 3``); thinning keeps a one-pixel line.

    >>> context_edges(np.array([[5, 5, 7, 7]] * 4)).astype(int)[0].tolist()
    [[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]]
    """
    return morphology.thin(context_laplacian(label_map) != 0).astype(np.float32)[None]


def parse_human_parts(anno: np.ndarray, path: Path) -> np.ndarray | None:
    """The 7-class part map of a PASCAL-Part ``anno`` struct, or None if no person has part masks.

    ``anno`` is what ``scipy.io.loadmat`` returns for the variable ``anno``: a 1×1 struct with fields
    ``imname`` and ``objects``; each object has ``class``, ``class_ind``, ``mask`` and ``parts``
    (a struct array of ``part_name``, ``mask``; empty when the object has no part annotation).
    """
    try:
        objects = anno[0, 0]["objects"]
        target: np.ndarray | None = None
        for obj in objects.reshape(-1):
            if int(np.asarray(obj["class_ind"]).reshape(-1)[0]) != PERSON_CLASS or obj["parts"].size == 0:
                continue
            if target is None:
                target = np.zeros(np.asarray(obj["mask"]).shape, dtype=np.int64)
            for part in obj["parts"].reshape(-1):
                name = str(np.asarray(part["part_name"]).reshape(-1)[0])
                if name not in HUMAN_PARTS:
                    raise DataError(f"{path}: unknown person part {name!r} (known: {', '.join(sorted(HUMAN_PARTS))})")
                mask = np.asarray(part["mask"]).astype(bool)
                if mask.shape != target.shape:
                    raise DataError(f"{path}: part {name!r} mask is {mask.shape} but the object mask is {target.shape}")
                target[mask] = HUMAN_PARTS[name]
        return target
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise DataError(f"{path}: not a PASCAL-Part annotation (anno.objects.parts layout: {err})") from None


class PascalContextFiles:
    """Label readers for one PASCAL_MT root (each returns a :class:`Label` or None)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._valid_normals: np.ndarray | None = None
        self._last_map: tuple[str, np.ndarray, Path] | None = None  # normals and edge share one read

    def image(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def semseg(self, image_id: str) -> Label:
        path = self.root / "semseg" / "VOC12" / f"{image_id}.png"
        if not path.is_file():
            fallback = self.root / "semseg" / "pascal-context" / f"{image_id}.png"
            if not fallback.is_file():
                raise DataError(f"{path}: semseg label file is missing (and so is {fallback})")
            path = fallback
        label = read_png(path, "semseg label").astype(np.int64)
        check_classes(label, NUM_SEMSEG_CLASSES, path, "semseg label")
        return Label(label, path)

    def human_parts(self, image_id: str) -> Label | None:
        path = self.root / "human_parts" / f"{image_id}.mat"
        target = parse_human_parts(read_mat(path, "human_parts label", "anno"), path)
        return None if target is None else Label(target, path)

    def sal(self, image_id: str) -> Label:
        path = self.root / "sal_distill" / f"{image_id}.png"
        grey = read_png(path, "sal label").astype(np.float32)
        return Label((grey / 255.0 > 0.5).astype(np.float32)[None], path)

    def context_map(self, image_id: str) -> tuple[np.ndarray, Path]:
        if self._last_map is not None and self._last_map[0] == image_id:
            return self._last_map[1], self._last_map[2]
        path = self.root / "pascal-context" / "trainval" / f"{image_id}.mat"
        label_map = np.asarray(read_mat(path, "context label map", "LabelMap"))
        if label_map.ndim != 2:
            raise DataError(f"{path}: LabelMap must be a 2-D class map, got shape {label_map.shape}")
        self._last_map = (image_id, label_map, path)
        return label_map, path

    def valid_normal_classes(self) -> np.ndarray:
        """Context class ids that also exist in NYUD (plus ``tvmonitor``), read once per root."""
        if self._valid_normals is None:
            names = {}
            for key in ("nyu", "context"):
                path = self.root / "json" / f"{key}_classes.json"
                if not path.is_file():
                    raise DataError(f"{path}: class list for the normals mask is missing")
                try:
                    names[key] = json.loads(path.read_text())
                except (OSError, ValueError) as err:
                    raise DataError(f"{path}: not a JSON class list ({err})") from None
            context = names["context"]
            if not isinstance(context, dict) or "tvmonitor" not in context:
                raise DataError(f"{self.root / 'json' / 'context_classes.json'}: must map class names to ids"
                                " (and name 'tvmonitor')")
            valid = [context[n] for n in names["nyu"] if n in context and n != "unknown"] + [context["tvmonitor"]]
            self._valid_normals = np.asarray(sorted(set(int(v) for v in valid)), dtype=np.int64)
        return self._valid_normals

    def normals(self, image_id: str) -> Label:
        path = self.root / "normals_distill" / f"{image_id}.png"
        rgb = read_png(path, "normals label", channels=3).astype(np.float32)
        label_map, map_path = self.context_map(image_id)
        if label_map.shape != rgb.shape[:2]:
            raise DataError(f"{map_path}: context label map is {label_map.shape[0]}x{label_map.shape[1]} but the"
                            f" normals label {path.name} is {rgb.shape[0]}x{rgb.shape[1]}")
        n = (2.0 * rgb / 255.0 - 1.0).transpose(2, 0, 1)
        norm = np.linalg.norm(n, axis=0, keepdims=True)
        n = np.where(norm > 0, n / np.maximum(norm, 1e-12), 0.0)
        n = n * np.isin(label_map, self.valid_normal_classes())[None]
        return Label(n.astype(np.float32), path)

    def edge(self, image_id: str) -> Label:
        label_map, path = self.context_map(image_id)
        return Label(context_edges(label_map), path)


@DATASETS.register("pascal-context")
def pascal_context(cfg: DataConfig) -> MultiTaskData:
    """PASCAL-Context (PASCAL_MT layout): semseg, human_parts, sal, normals, edge at 512×512."""
    check_options(cfg, {"half_resolution", "resolution"})
    root = require_root(cfg, "the PASCAL_MT folder with JPEGImages/ and ImageSets/Context/")
    resolution = resolution_option(cfg, half_default=True)
    size = cfg.size or round(512 * resolution)
    all_tasks = {
        "semseg": create_task("semseg", num_classes=NUM_SEMSEG_CLASSES),
        "human_parts": create_task("human_parts", num_classes=NUM_PART_CLASSES),
        "sal": create_task("sal"),
        "normals": create_task("normals"),
        "edge": edge_task(EDGE_POS_WEIGHT, EDGE_MAX_DIST),
    }
    names = select_task_names(cfg, list(all_tasks))
    files = PascalContextFiles(root)
    readers = {t: getattr(files, t) for t in names}
    kinds = {t: KINDS[t] for t in names}

    def make_split(split: str, train: bool) -> DenseSplit:
        ids = read_split_file(root / "ImageSets" / "Context" / f"{split}.txt")
        return DenseSplit(ids, files.image, readers, kinds, DenseTransform(size, kinds, train), resolution)

    return MultiTaskData(
        name="pascal-context", tasks={t: all_tasks[t] for t in names}, make_split=make_split,
        input_shape=(3, size, size), default_backbone="mobilenet_v2",
        info={"root": str(root), "resolution": resolution, "search_resolution": SEARCH_RESOLUTION,
              "ignore_index": IGNORE},
        rescale=lambda factor: pascal_context(at_resolution(cfg, factor, resolution)),
    )
