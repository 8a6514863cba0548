import numpy as np
import pytest
import torch
from data.fixtures import H, W, human_parts_mat, region, truncate, write_pascal_context
from PIL import Image
from scipy import ndimage
from skimage.morphology import thin

from branchsweep.cli import main
from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.data.pascal_context import LAPLACIAN_4, context_edges, context_laplacian
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
    # edges: the thinned Laplacian of the context map (chair | sky between columns 15 and 16): the
    # Laplacian marks columns 15 and 16, thinning keeps column 15 without its end pixel in row 0
    edge = item["edge"][0, :H, :W]
    assert edge[1:, 15].all() and edge[0, 15] == 0 and edge.sum() == H - 1


def _reflect101_laplacian(m):
    """The 4-neighbour Laplacian written out: numpy's pad mode "reflect" repeats no edge pixel."""
    p = np.pad(np.asarray(m, dtype=np.float64), 1, mode="reflect")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]


def test_laplacian_is_opencvs_ksize1_reflect101_on_a_hand_computed_map():
    """cv2.Laplacian(m, cv2.CV_64F) of this uint16 map, worked by hand (kernel 0 1 0 / 1 -4 1 / 0 1 0,
    border reflect-101: the row above row 0 is row 1), e.g. (0, 1): 3 + 3 + 1 + 2 - 4·1 = 5;
    (2, 0): 1 + 1 + 4 + 4 - 4·4 = -6 (negative: no uint16 wrap-around)."""
    m = np.array([[1, 1, 2], [1, 3, 2], [4, 4, 2]], dtype=np.uint16)
    expected = [[0, 5, -2], [7, -4, 2], [-6, -4, 4]]
    assert context_laplacian(m).tolist() == expected
    assert _reflect101_laplacian(m).tolist() == expected
    # another border rule gives another answer: scipy's "reflect" repeats the edge pixel (OpenCV's
    # BORDER_REFLECT), so (0, 1) would be 1 + 3 + 1 + 2 - 4 = 3
    assert ndimage.convolve(m.astype(float), LAPLACIAN_4, mode="reflect")[0, 1] == 3


def test_fixture_edges_equal_the_thinned_laplacian_of_the_stored_label_map(root):
    import scipy.io

    # the val image gets a busier map: 6x8 blocks of context ids up to 458 (past uint8), nearest-upsampled
    rng = np.random.default_rng(0)
    busy = rng.integers(0, 459, (6, 8)).repeat(4, 0).repeat(4, 1).astype(np.uint16)
    busy[5:9, 3:20] = 10  # and a bar across block borders
    scipy.io.savemat(root / "pascal-context" / "trainval" / "2008_000003.mat", {"LabelMap": busy})
    for split, index, image_id in (("train", 0, "2008_000001"), ("val", 0, "2008_000003")):
        label_map = scipy.io.loadmat(root / "pascal-context" / "trainval" / f"{image_id}.mat")["LabelMap"]
        assert label_map.dtype == np.uint16  # the loader keeps loadmat's integer map, as the authors' code
        expected = thin(_reflect101_laplacian(label_map) != 0)
        edge = load(root, split, index)["edge"][0, :H, :W].numpy()
        assert np.array_equal(edge, expected.astype(np.float32))


def test_authors_rule_differs_from_the_neighbour_rule():
    """The former rule (m[i, j] differs from its right or lower neighbour) marks columns 0 and 1 of this
    map; the Laplacian is 0 in the middle column (1 + 3 = 2·2), so the authors' rule marks 0 and 2."""
    m = np.array([[1, 2, 3]] * 4, dtype=np.uint16)
    neighbour = np.zeros(m.shape, dtype=bool)
    neighbour[:, :-1] |= m[:, :-1] != m[:, 1:]
    neighbour[:-1, :] |= m[:-1, :] != m[1:, :]
    assert neighbour.astype(int).tolist() == [[1, 1, 0]] * 4
    assert context_edges(m)[0].astype(int).tolist() == [[1, 0, 1]] * 4
    # a two-class map: the neighbour rule marks the left column of the boundary down to the image
    # border; the thinned Laplacian band (columns 1 and 2) keeps column 1 without its end in row 0
    two = np.array([[5, 5, 7, 7]] * 4, dtype=np.uint16)
    assert context_edges(two)[0].astype(int).tolist() == [[0, 0, 0, 0]] + [[0, 1, 0, 0]] * 3


def test_authors_rule_moves_boundaries_by_at_most_one_pixel_on_synthetic_dense_maps():
    """On class maps with curved shapes (synthetic-dense semseg, 128²) the two rules mark the same
    boundaries but not the same pixels: the thinned line has fewer pixels, often on the other side of
    the boundary, and every one of them lies within one pixel of a neighbour-rule pixel."""
    from branchsweep.data.synthetic_dense import render_scene

    old_total = new_total = same_total = 0
    for i in range(8):
        m = render_scene(128, np.random.default_rng([0, 0, i]))["semseg"].astype(np.uint16)
        old = np.zeros(m.shape, dtype=bool)
        old[:, :-1] |= m[:, :-1] != m[:, 1:]
        old[:-1, :] |= m[:-1, :] != m[1:, :]
        new = context_edges(m)[0] > 0
        assert not (new & ~ndimage.binary_dilation(old, np.ones((3, 3), dtype=bool))).any()
        old_total, new_total, same_total = old_total + old.sum(), new_total + new.sum(), same_total + (old & new).sum()
    assert new_total < old_total and same_total < 0.7 * new_total


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
