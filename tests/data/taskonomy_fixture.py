"""A tiny Taskonomy tree in the layout ``omnitools.download --components taskonomy`` writes and in the
real file formats: 8-bit RGB, 8-bit grey class maps, 8-bit RGB normals, 16-bit grey depth, keypoints
and edges, and the official ``train_val_test_tiny.csv``.

Every image is ``S``×``S`` = 32×32 with known label regions (rows 0-7, 8-15, 16-23, 24-31).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

S = 32
BUILDINGS = {"allensville": "train", "beechwood": "train", "collierville": "val", "ihlen": "test"}
VIEWS = ("point_0_view_1", "point_3_view_0")
DOMAINS = ("rgb", "segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture")


def bands(*values) -> np.ndarray:
    """An S×S map whose four horizontal bands of 8 rows hold ``values``."""
    out = np.zeros((S, S), dtype=np.asarray(values).dtype)
    for i, v in enumerate(values):
        out[8 * i : 8 * (i + 1)] = v
    return out


def label_arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    normal = np.zeros((S, S, 3), dtype=np.uint8)
    normal[...] = (0, 255, 51)
    normal[16:] = (127, 127, 255)
    return {
        "rgb": rng.integers(0, 256, (S, S, 3), dtype=np.uint8),
        "segment_semantic": bands(*np.array([0, 1, 2, 17], dtype=np.uint8)),
        "normal": normal,
        "depth_zbuffer": bands(*np.array([256, 65535, 4096, 64500], dtype=np.uint16)),
        "keypoints2d": bands(*np.array([0, 164, 328, 0], dtype=np.uint16)),
        "edge_texture": bands(*np.array([0, 2621, 5243, 0], dtype=np.uint16)),
    }


def label_path(root: Path, domain: str, building: str, view: str, component: bool = True) -> Path:
    folder = root / domain / "taskonomy" / building if component else root / domain / building
    return folder / f"{view}_domain_{domain}.png"


def write_taskonomy(root: Path, component: bool = True, views: tuple[str, ...] = VIEWS) -> Path:
    """Write the tree under ``root`` and return it."""
    for b, (building, _) in enumerate(BUILDINGS.items()):
        for v, view in enumerate(views):
            for domain, array in label_arrays(10 * b + v).items():
                path = label_path(root, domain, building, view, component)
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
    lines = ["id,train,val,test"] + [
        f"{b},{int(s == 'train')},{int(s == 'val')},{int(s == 'test')}" for b, s in BUILDINGS.items()]
    (root / "train_val_test_tiny.csv").write_text("\n".join(lines) + "\n")
    return root
