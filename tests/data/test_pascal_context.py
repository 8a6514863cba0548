import numpy as np
import pytest
import torch
from data.fixtures import H, W, human_parts_mat, region, truncate, write_pascal_context
from PIL import Image

from branchsweep.cli import main
from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.errors import ConfigError, DataError


@pytest.fixture
def root(tmp_path):
    return write_pascal_context(tmp_path / "PASCAL_MT")


def load(root, split="train", index=0, size=32, **kw):
    data = create_data(DataConfig(dataset="pascal-context", root=str(root), size=size, **kw))
    return data.split(split, train=False)[index]


def test_labels_follow_the_published_derivations(root):
    item = load(root)
    assert item["meta"] == {"id": "2008_000001", "size": (H, W)}
    assert item["image"].shape == (3, 32, 32) and item["image"].abs().max() <= 1.0
    # evaluation pads right/bottom with ignore and keeps the content at the top left
    assert (item["semseg"][H:] == 255).all() and (item["semseg"][:, W:] == 255).all()
    semseg = item["semseg"][:H, :W]
    assert semseg[5, 5] == 15 and semseg[0, 0] == 0 and semseg[16, 5] == 255
    parts = item["human_parts"][:H, :W]
    assert parts[5, 5] == 1 and parts[10, 5] == 2 and parts[0, 0] == 0
    assert parts[20, 25] == 0  # a person without part annotation stays background
    sal = item["sal"][0, :H, :W]
    assert sal[5, 5] == 1 and sal[0, 0] == 0 and (item["sal"][0, H:] == 255).all()
    # normals only on context classes shared with NYUD (chair, cols < 16), unit length there
    n = item["normals"][:, :H, :W]
    assert torch.allclose(n[:, :, :16].norm(dim=0), torch.ones(H, 16), atol=1e-5)
    assert (n[:, :, 16:] == 0).all()
    assert n[0, 0, 0] < 0 and n[2, 0, 0] > 0  # rgb (64, 128, 255) -> x < 0, z > 0
    # edges are the context-map boundary (column 15)
    edge = item["edge"][0, :H, :W]
    assert edge[:, 15].all() and edge.sum() == H


def test_image_without_persons_is_all_ignore_and_semseg_falls_back(root):
    item = load(root, index=1)
    assert (item["human_parts"] == 255).all()
    assert item["semseg"][5, 5] == 15  # read from semseg/pascal-context/


def test_half_resolution_halves_images_and_keeps_edges(root):
    data = create_data(DataConfig(dataset="pascal-context", root=str(root), options={"half_resolution": True}))
    assert data.input_shape == (3, 256, 256)
    item = create_data(DataConfig(dataset="pascal-context", root=str(root), size=16,
                                  options={"half_resolution": True})).split("val")[0]
    assert item["meta"]["size"] == (H // 2, W // 2)
    assert item["edge"][0, : H // 2, 7].all() and item["edge"][0, : H // 2].sum() == H // 2


def test_training_items_are_augmented_to_the_input_size(root):
    data = create_data(DataConfig(dataset="pascal-context", root=str(root), size=20))
    torch.manual_seed(0)
    items = [data.split("train")[0] for _ in range(4)]
    assert all(it["image"].shape == (3, 20, 20) and it["human_parts"].shape == (20, 20) for it in items)
    assert set(torch.cat([it["human_parts"].flatten() for it in items]).tolist()) <= {0, 1, 2, 255}


def test_task_selection_and_missing_root(root):
    data = create_data(DataConfig(dataset="pascal-context", root=str(root), tasks=["sal"], size=32))
    assert list(data.tasks) == ["sal"] and set(data.split("val")[0]) == {"image", "sal", "meta"}
    with pytest.raises(ConfigError, match="needs --root"):
        create_data(DataConfig(dataset="pascal-context"))
    with pytest.raises(ConfigError, match="unknown task 'depth'"):
        create_data(DataConfig(dataset="pascal-context", root=str(root), tasks=["depth"]))
    with pytest.raises(ConfigError, match="takes no option"):
        create_data(DataConfig(dataset="pascal-context", root=str(root), options={"crop": 1}))


def _break_missing_split(root):
    (root / "ImageSets" / "Context" / "val.txt").unlink()
    return "val.txt", "split file is missing", "val", 0


def _break_truncated_parts(root):
    truncate(root / "human_parts" / "2008_000001.mat")
    return "2008_000001.mat", "truncated or unreadable", "train", 0


def _break_missing_sal(root):
    (root / "sal_distill" / "2008_000002.png").unlink()
    return "2008_000002.png", "sal label file is missing", "train", 1


def _break_semseg_size(root):
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(root / "semseg" / "VOC12" / "2008_000001.png")
    return "2008_000001.png", "label is 24x34 but its image", "train", 0


def _break_semseg_class(root):
    Image.fromarray(np.full((H, W), 30, np.uint8)).save(root / "semseg" / "VOC12" / "2008_000003.png")
    return "2008_000003.png", "unknown class index 30", "val", 0


def _break_unknown_part(root):
    human_parts_mat(root / "human_parts" / "2008_000001.mat", [
        {"class": "person", "class_ind": 15, "mask": region(slice(0, 4), slice(0, 4)),
         "parts": {"tail": region(slice(0, 4), slice(0, 4))}}])
    return "2008_000001.mat", "unknown person part 'tail'", "train", 0


def _break_truncated_image(root):
    truncate(root / "JPEGImages" / "2008_000003.jpg")
    return "2008_000003.jpg", "truncated or unreadable", "val", 0


BREAKAGES = [_break_missing_split, _break_truncated_parts, _break_missing_sal, _break_semseg_size,
             _break_semseg_class, _break_unknown_part, _break_truncated_image]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__[7:])
def test_each_broken_file_raises_a_data_error_naming_it(root, breakage, capsys):
    filename, problem, split, index = breakage(root)
    with pytest.raises(DataError) as err:
        load(root, split, index)
    assert filename in str(err.value) and problem in str(err.value)
    assert main(["check-data", "--dataset", "pascal-context", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert filename in out and problem in out and "1 problem(s) found" in out


def test_check_data_reports_counts_on_a_clean_tree(root, capsys):
    assert main(["check-data", "--dataset", "pascal-context", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 2 images; labelled: semseg 2, human_parts 1, sal 2, normals 2, edge 2" in out
    assert "val: 1 images" in out and "no problems found" in out


def test_fixture_mat_has_the_published_pascal_part_layout(root):
    """The published loaders index ``anno[0][0][1][0]`` = objects, object fields 1..3 = class_ind, mask, parts."""
    import scipy.io

    objects = scipy.io.loadmat(root / "human_parts" / "2008_000001.mat")["anno"][0][0][1][0]
    person = objects[0]
    assert person[1][0][0] == 15 and person[2].shape == (H, W)
    assert str(person[3][0][0][0][0]) == "head" and person[3][0][0][1].shape == (H, W)
    assert len(objects[1][3]) == 0  # a person without part annotation


def test_splits_load_in_worker_processes(root):
    from torch.utils.data import DataLoader

    data = create_data(DataConfig(dataset="pascal-context", root=str(root), size=32))
    batch = next(iter(DataLoader(data.split("train"), batch_size=2, num_workers=1)))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["meta"]["id"] == ["2008_000001", "2008_000002"]


def test_rescale_loads_the_paper_search_resolution(root):
    data = create_data(DataConfig(dataset="pascal-context", root=str(root)))
    assert data.resolution == 1.0 and data.info["search_resolution"] == 0.5 and data.input_shape == (3, 512, 512)
    half = data.rescale(0.5)
    assert half.resolution == 0.5 and half.input_shape == (3, 256, 256)
    assert half.split("val")[0]["meta"]["size"] == (12, 16)  # the 24×32 fixture image at half resolution
    sized = create_data(DataConfig(dataset="pascal-context", root=str(root), size=64)).rescale(0.5)
    assert sized.input_shape == (3, 32, 32)
