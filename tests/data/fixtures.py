"""Tiny data-set trees in the REAL published on-disk formats (JPEG, PNG, MATLAB .mat, .npy, .txt).

Every image is ``H``×``W`` = 24×32 (CelebA: 22×18). The label contents are simple regions whose
expected values the tests know exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

H, W = 24, 32

# PASCAL-Context: context class ids of the fixture (chair and tvmonitor are in NYUD's class list,
# sky is not), and the 6-part map ids the fixture's person parts must become.
CONTEXT_CLASSES = {"unknown": 0, "chair": 5, "sky": 7, "tvmonitor": 10}
NYU_CLASSES = ["unknown", "chair", "wall"]
PASCAL_TRAIN = ["2008_000001", "2008_000002"]
PASCAL_VAL = ["2008_000003"]

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
    "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
    "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
    "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def _jpeg(path: Path, h: int = H, w: int = W, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=95)


def _png(path: Path, array: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:  # VOC-style palette PNG: pixel values are the class indices
        img = Image.frombytes("P", (array.shape[1], array.shape[0]), np.ascontiguousarray(array).tobytes())
        img.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    else:
        img = Image.fromarray(array)
    img.save(path)


def _split(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(ids) + "\n")


def human_parts_mat(path: Path, objects: list[dict]) -> None:
    """Write a PASCAL-Part ``anno`` struct: ``objects`` are dicts of class, class_ind, mask, parts.

    ``parts`` maps part names to boolean masks (empty dict: an object without part annotation).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    obj_arr = np.zeros((1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    for j, obj in enumerate(objects):
        if obj["parts"]:
            parts = np.zeros((1, len(obj["parts"])), dtype=[("part_name", "O"), ("mask", "O")])
            for i, (name, mask) in enumerate(obj["parts"].items()):
                parts[0, i] = (name, mask.astype(np.uint8))
        else:
            parts = np.zeros((0, 0))
        obj_arr[0, j] = (obj["class"], np.array([[obj["class_ind"]]], dtype=np.uint8), obj["mask"].astype(np.uint8), parts)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (path.stem, obj_arr)
    scipy.io.savemat(path, {"anno": anno})


def region(rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[rows, cols] = True
    return m


def write_pascal_context(root: Path) -> Path:
    """A PASCAL_MT tree: 2 train images (one with a person, one without) and 1 val image.

    Semseg: class 15 (person) in rows 4..15 × cols 4..11, 255 on its border row 16, else 0; image 2's
    semseg exists only under ``semseg/pascal-context``. Person parts: head (rows 4..7) → 1, torso
    (rows 8..15) → 2. Context map: chair (5) in cols < 16, sky (7) elsewhere, so normals are valid
    only in cols < 16 and the edge is column 15. Saliency: 200 in the person box, else 20.
    """
    for i, image_id in enumerate(PASCAL_TRAIN + PASCAL_VAL):
        _jpeg(root / "JPEGImages" / f"{image_id}.jpg", seed=i)
        semseg = np.zeros((H, W), np.uint8)
        semseg[4:16, 4:12] = 15
        semseg[16, 4:12] = 255
        sub = "pascal-context" if image_id == "2008_000002" else "VOC12"
        _png(root / "semseg" / sub / f"{image_id}.png", semseg, palette=True)
        person = region(slice(4, 16), slice(4, 12))
        if image_id == "2008_000002":
            objects = [{"class": "cat", "class_ind": 8, "mask": person, "parts": {}}]
        else:
            objects = [
                {"class": "person", "class_ind": 15, "mask": person,
                 "parts": {"head": region(slice(4, 8), slice(4, 12)), "torso": region(slice(8, 16), slice(4, 12))}},
                {"class": "person", "class_ind": 15, "mask": region(slice(18, 22), slice(20, 30)), "parts": {}},
            ]
        human_parts_mat(root / "human_parts" / f"{image_id}.mat", objects)
        _png(root / "sal_distill" / f"{image_id}.png", np.where(person, 200, 20).astype(np.uint8))
        normals = np.zeros((H, W, 3), np.uint8)
        normals[..., 0] = 64
        normals[..., 1] = 128
        normals[..., 2] = 255
        _png(root / "normals_distill" / f"{image_id}.png", normals)
        label_map = np.where(np.arange(W)[None, :] < 16, 5, 7).repeat(H, 0).astype(np.uint16)
        (root / "pascal-context" / "trainval").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "pascal-context" / "trainval" / f"{image_id}.mat", {"LabelMap": label_map})
    (root / "json").mkdir(parents=True, exist_ok=True)
    (root / "json" / "context_classes.json").write_text(json.dumps(CONTEXT_CLASSES))
    (root / "json" / "nyu_classes.json").write_text(json.dumps(NYU_CLASSES))
    _split(root / "ImageSets" / "Context" / "train.txt", PASCAL_TRAIN)
    _split(root / "ImageSets" / "Context" / "val.txt", PASCAL_VAL)
    return root


NYUD_TRAIN = ["0001", "0002", "0003", "0004"]
NYUD_VAL = ["0005", "0006"]


def write_nyud(root: Path) -> Path:
    """A NYUD-v2 (MTL-PyTorch/ATRC layout) tree with 4 train and 2 val images.

    Segmentation: 0 (unlabelled) in rows < 4, 1 in rows 4..11, 40 elsewhere. Depth: 2.5 m with an
    invalid (0) top-left 2×2 block. Normals: (0.6, 0, 0.8) everywhere. Edges: row 12.
    """
    for i, image_id in enumerate(NYUD_TRAIN + NYUD_VAL):
        _jpeg(root / "images" / f"{image_id}.jpg", seed=10 + i)
        seg = np.full((H, W), 40, np.uint8)
        seg[:4] = 0
        seg[4:12] = 1
        _png(root / "segmentation" / f"{image_id}.png", seg)
        depth = np.full((H, W), 2.5, np.float32)
        depth[:2, :2] = 0
        for name, arr in (("depth", depth),
                          ("normals", np.broadcast_to(np.array([0.6, 0.0, 0.8], np.float32), (H, W, 3)).copy()),
                          ("edge", (np.arange(H)[:, None] == 12).repeat(W, 1).astype(np.float32))):
            (root / name).mkdir(parents=True, exist_ok=True)
            np.save(root / name / f"{image_id}.npy", arr)
    _split(root / "gt_sets" / "train.txt", NYUD_TRAIN)
    _split(root / "gt_sets" / "val.txt", NYUD_VAL)
    return root


CELEBA_FILES = [f"{i:06d}.jpg" for i in range(1, 7)]
CELEBA_PARTITION = [0, 0, 0, 0, 1, 2]


def celeba_attributes(index: int) -> list[int]:
    """Attribute values (-1/1) of fixture image ``index``: attribute ``a`` is 1 iff ``(a + index) % 3 == 0``."""
    return [1 if (a + index) % 3 == 0 else -1 for a in range(len(CELEBA_ATTRIBUTES))]


def write_celeba(root: Path) -> Path:
    """A CelebA tree with 6 aligned 22×18 faces: 4 train, 1 val, 1 test."""
    rows = []
    for i, name in enumerate(CELEBA_FILES):
        _jpeg(root / "img_align_celeba" / name, h=22, w=18, seed=20 + i)
        rows.append(f"{name} " + " ".join(f"{v:2d}" for v in celeba_attributes(i)))
    (root / "list_attr_celeba.txt").write_text(
        f"{len(CELEBA_FILES)}\n" + " ".join(CELEBA_ATTRIBUTES) + "\n" + "\n".join(rows) + "\n"
    )
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{n} {p}" for n, p in zip(CELEBA_FILES, CELEBA_PARTITION)) + "\n"
    )
    return root


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its bytes (a partially copied download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
