import numpy as np
import pytest
import torch
from data.fixtures import H, W, truncate, write_nyud
from PIL import Image

from branchsweep.cli import main
from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.errors import ConfigError, DataError


@pytest.fixture
def root(tmp_path):
    return write_nyud(tmp_path / "NYUD_MT")


def make(root, size=32, **kw):
    return create_data(DataConfig(dataset="nyud", root=str(root), size=size, **kw))


def test_labels_are_converted_to_the_shared_conventions(root):
    data = make(root)
    assert data.default_backbone == "resnet50" and data.tasks["semseg"].out_channels == 40
    assert data.tasks["edge"].params["pos_weight"] == 0.8
    item = data.split("val")[0]
    semseg = item["semseg"][:H, :W]
    assert (semseg[:4] == 255).all() and (semseg[4:12] == 0).all() and (semseg[12:] == 39).all()
    assert (item["semseg"][H:] == 255).all()
    depth = item["depth"][0]
    assert (depth[:2, :2] == 0).all() and depth[5, 5] == 2.5 and (depth[H:] == 0).all()
    assert torch.allclose(item["normals"][:, 5, 5], torch.tensor([0.6, 0.0, 0.8]))
    assert item["edge"][0, 12, :W].all() and item["edge"][0, :H, :W].sum() == W


def test_flip_negates_the_x_component_of_normals(root):
    data = make(root, size=64)  # > 2x the image: scale never needs a crop smaller than the content
    torch.manual_seed(0)
    xs = {round(float(v), 4) for _ in range(12) for v in data.split("train")[0]["normals"][0].unique()}
    assert xs == {-0.6, 0.0, 0.6}  # flipped (x = -0.6) and unflipped items, 0 in the padding


def test_resolution_option_scales_on_load(root):
    item = make(root, size=32, options={"resolution": 0.5}).split("val")[0]
    assert item["meta"]["size"] == (H // 2, W // 2)
    with pytest.raises(ConfigError, match="resolution must be a factor"):
        make(root, options={"resolution": 2})


def _break_missing_split(root):
    (root / "gt_sets" / "train.txt").unlink()
    return "train.txt", "split file is missing", "train"


def _break_missing_depth(root):
    (root / "depth" / "0005.npy").unlink()
    return "0005.npy", "depth label file is missing", "val"


def _break_truncated_normals(root):
    truncate(root / "normals" / "0005.npy", keep=0.3)
    return "0005.npy", "truncated or unreadable", "val"


def _break_edge_size(root):
    np.save(root / "edge" / "0005.npy", np.zeros((H - 4, W), np.float32))
    return "0005.npy", "label is 20x32 but its image", "val"


def _break_semseg_class(root):
    Image.fromarray(np.full((H, W), 41, np.uint8)).save(root / "segmentation" / "0005.png")
    return "0005.png", "unknown class index 41", "val"


def _break_missing_image(root):
    (root / "images" / "0005.jpg").unlink()
    return "0005.jpg", "image file is missing", "val"


BREAKAGES = [_break_missing_split, _break_missing_depth, _break_truncated_normals, _break_edge_size,
             _break_semseg_class, _break_missing_image]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__[7:])
def test_each_broken_file_raises_a_data_error_naming_it(root, breakage, capsys):
    filename, problem, split = breakage(root)
    with pytest.raises(DataError) as err:
        make(root).split(split)[0]
    assert filename in str(err.value) and problem in str(err.value)
    assert main(["check-data", "--dataset", "nyud", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert filename in out and problem in out


def test_check_data_on_a_clean_tree_and_train_end_to_end(root, capsys):
    assert main(["check-data", "--dataset", "nyud", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 4 images; labelled: semseg 4, depth 4, normals 4, edge 4" in out and "val: 2 images" in out
    assert main(["train", "--dataset", "nyud", "--root", str(root), "--size", "32", "--width", "0.0625",
                 "--iterations", "2", "--batch-size", "2", "--no-progress", "--arch", "shared"]) == 0
    assert "depth/rmse" in capsys.readouterr().out


def test_rescale_loads_the_paper_search_resolution(root):
    data = make(root, size=None)
    assert data.info["search_resolution"] == pytest.approx(2 / 3) and data.input_shape == (3, 560, 560)
    search = data.rescale(2 / 3)
    assert search.resolution == pytest.approx(2 / 3) and search.input_shape == (3, 373, 373)


def test_networks_are_priced_at_the_425x560_images_not_the_padded_squares(root):
    """The paper prices NYUD-v2 networks at 425×560 (Table 2); the loaders pad to 560² squares."""
    import dataclasses

    from branchsweep.config import ModelConfig
    from branchsweep.factory import build_spec
    from branchsweep.search.bmtas import pricing_spec

    full = make(root, size=None)
    assert full.input_shape == (3, 560, 560) and full.price_shape() == (3, 425, 560)
    spec = build_spec(ModelConfig(backbone="resnet50", width=0.25), full)
    assert spec.input_shape == (3, 425, 560)
    searched = full.rescale(2 / 3)  # the search's copy: tensors 373², images 283×373, priced at full size
    assert searched.input_shape == (3, 373, 373) and searched.price_shape() == (3, 283, 373)
    assert pricing_spec(spec, searched).input_shape == (3, 425, 560)
    assert pricing_spec(dataclasses.replace(spec, input_shape=(3, 283, 373)), searched).input_shape == (3, 425, 560)
    # a smaller explicit size shrinks the image to fit, as evaluation does (aspect kept)
    assert make(root, size=32).price_shape() == (3, 24, 32)
