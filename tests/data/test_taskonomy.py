"""Taskonomy loader on a fixture tree in the official download layout and the real file formats."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from data.fixtures import truncate
from data.taskonomy_fixture import BUILDINGS, VIEWS, S, label_path, write_taskonomy
from PIL import Image

from branchsweep.cli import main
from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.errors import ConfigError, DataError

TASKS = ["segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture"]


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory):
    return write_taskonomy(tmp_path_factory.mktemp("taskonomy"))


@pytest.fixture
def root(tmp_path):
    return write_taskonomy(tmp_path / "taskonomy")


def make(root, size=S, **kw):
    return create_data(DataConfig(dataset="taskonomy", root=str(root), size=size, **kw))


def band(t: torch.Tensor, i: int) -> torch.Tensor:
    """Rows of band ``i`` (8 rows each at 32×32) of a ``[..., H, W]`` label."""
    return t[..., 8 * i : 8 * (i + 1), :]


def test_labels_follow_appendix_a(clean_root):
    data = make(clean_root)
    assert list(data.tasks) == TASKS and data.splits == ("train", "val", "test")
    assert {t.name: t.weight for t in data.tasks.values()} == dict(zip(TASKS, [1.0, 3.0, 2.0, 7.0, 7.0]))
    item = data.split("train", train=False)[0]
    assert item["meta"]["id"] == f"allensville/{VIEWS[0]}" and item["image"].shape == (3, S, S)
    seg = item["segment_semantic"]
    assert seg.dtype == torch.int64 and seg.shape == (S, S)
    assert [int(band(seg, i).unique()) for i in range(4)] == [255, 255, 0, 15]  # 0/1 ignored, 2..17 → 0..15
    normal = item["normal"]
    torch.testing.assert_close(normal[:, 0, 0], torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))
    torch.testing.assert_close(normal[:, -1, 0], torch.tensor([127 / 127.5 - 1, 127 / 127.5 - 1, 1.0]))
    depth = item["depth_zbuffer"][0]
    expected = [math.log(256) / math.log(2**16), 0.0, math.log(4096) / math.log(2**16), math.log(64500) / math.log(2**16)]
    for i, value in enumerate(expected):  # 65535 (> 64500) is invalid (0); 64500 itself is kept
        assert torch.allclose(band(depth, i), torch.tensor(value)), i
    kp, edge = item["keypoints2d"][0], item["edge_texture"][0]
    for i, raw in enumerate([0, 164, 328, 0]):
        assert torch.allclose(band(kp, i), torch.tensor(raw / 2**16 / 0.005 * 2 - 1)), i
    for i, raw in enumerate([0, 2621, 5243, 0]):
        assert torch.allclose(band(edge, i), torch.tensor(raw / 2**16 / 0.08 * 2 - 1)), i


def test_splits_are_the_buildings_of_the_official_csv(clean_root):
    data = make(clean_root)
    for split in ("train", "val", "test"):
        ids = data.split(split, train=False).ids
        buildings = [b for b, s in BUILDINGS.items() if s == split]
        assert ids == [f"{b}/{v}" for b in buildings for v in sorted(VIEWS)]


def test_size_and_search_size_rescale_on_load(clean_root):
    data = make(clean_root, size=16, options={"search_size": 8})
    item = data.split("train", train=False)[0]
    assert data.input_shape == (3, 16, 16) and item["image"].shape == (3, 16, 16)
    seg = item["segment_semantic"]  # bands of 4 rows at 16×16
    assert seg[:8].unique().tolist() == [255] and seg[8:12].unique().tolist() == [0]
    search = data.for_search()
    assert search.input_shape == (3, 8, 8) and search.info["size"] == 8
    small = search.split("train", train=True)[0]
    assert small["image"].shape == (3, 8, 8) and small["keypoints2d"].shape == (1, 8, 8)
    assert all(torch.isfinite(small[t]).all() for t in ("keypoints2d", "edge_texture"))  # no padding at scale >= 1
    same = make(clean_root, size=16, options={"search_size": 16})
    assert same.for_search() is same


def test_layout_without_the_component_folder(tmp_path):
    root = write_taskonomy(tmp_path / "flat", component=False)
    data = make(root)
    assert data.info["layout"] == "<domain>/<building>"
    assert len(data.split("train")) == 4


def _break_truncated_keypoints(root):
    path = label_path(root, "keypoints2d", "beechwood", VIEWS[1])
    truncate(path)
    return path, "truncated or unreadable", "train"


def _break_8bit_edges(root):
    path = label_path(root, "edge_texture", "collierville", VIEWS[0])
    Image.fromarray(np.zeros((S, S), dtype=np.uint8)).save(path)
    return path, "must be a single-channel 16-bit PNG", "val"


def _break_missing_normal(root):
    path = label_path(root, "normal", "ihlen", VIEWS[0])
    path.unlink()
    return path, "normal label file is missing", "test"


def _break_semseg_class(root):
    path = label_path(root, "segment_semantic", "allensville", VIEWS[0])
    Image.fromarray(np.full((S, S), 18, dtype=np.uint8)).save(path)
    return path, "unknown class 18", "train"


@pytest.mark.parametrize("breakage", [_break_truncated_keypoints, _break_8bit_edges, _break_missing_normal,
                                      _break_semseg_class], ids=lambda f: f.__name__[7:])
def test_check_data_names_each_broken_file_on_one_line(root, breakage, capsys):
    path, problem, split = breakage(root)
    data = make(root)
    index = data.split(split).ids.index(f"{path.parent.name}/{path.name.split('_domain_')[0]}")
    with pytest.raises(DataError, match=problem):
        data.split(split)[index]
    assert main(["check-data", "--dataset", "taskonomy", "--root", str(root)]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and str(path) in problems[0] and problem in problems[0]


def test_check_data_clean_and_training_on_a_broken_file_exits_2(root, capsys):
    assert main(["check-data", "--dataset", "taskonomy", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 4 images; labelled: segment_semantic 4, normal 4, depth_zbuffer 4, keypoints2d 4, edge_texture 4" in out
    assert "test: 2 images" in out and "no problems found" in out
    path = label_path(root, "depth_zbuffer", "allensville", VIEWS[0])
    truncate(path)
    code = main(["train", "--dataset", "taskonomy", "--root", str(root), "--size", "16", "--backbone", "resnet34",
                 "--width", "0.0625", "--iterations", "1", "--batch-size", "4", "--no-progress", "--arch", "shared"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(path) in err[0] and "Traceback" not in err[0]


def test_missing_building_and_split_file_are_named(root):
    (root / "train_val_test_tiny.csv").write_text("id,train,val,test\nallensville,1,0,0\nnowhere,0,1,0\nihlen,0,0,1\n")
    with pytest.raises(DataError, match="nowhere.*missing"):
        make(root).split("val")
    (root / "train_val_test_tiny.csv").unlink()
    with pytest.raises(DataError, match="train_val_test_tiny.csv: building split file is missing"):
        make(root)


@pytest.mark.parametrize(("options", "message"), [
    ({"search_size": 0}, "search_size must be a positive integer"),
    ({"subset": "huge"}, "subset must be"),
    ({"resolution": 0.5}, "takes no option 'resolution'"),
    ({"epoch_images": 0}, "epoch_images must be a positive integer"),
])
def test_bad_options_are_config_errors(clean_root, options, message):
    with pytest.raises(ConfigError, match=message):
        make(clean_root, options=options)


def test_training_augmentation_scales_and_crops_without_flip_or_padding(clean_root):
    torch.manual_seed(0)
    train = make(clean_root).split("train", train=True)
    for i in range(8):
        item = train[i % len(train)]
        assert item["image"].shape == (3, S, S)
        assert torch.isfinite(item["keypoints2d"]).all() and (item["depth_zbuffer"] >= 0).all()
        assert (item["normal"][0] <= 0).all()  # the fixture's x components are <= 0; a flip would negate them


def test_epoch_images_sets_what_an_epoch_counts_in_both_views(clean_root):
    """The paper's Taskonomy epoch: 275K images, 4296 iterations at batch 64, in the search and the retrain."""
    plain = make(clean_root)
    assert plain.epoch_samples is None and plain.iterations_per_epoch(2, 10) == 5  # one pass over the split
    data = make(clean_root, options={"epoch_images": 275_000})
    assert data.iterations_per_epoch(64, 10) == 4296
    assert data.for_search().iterations_per_epoch(64, 10) == 4296
