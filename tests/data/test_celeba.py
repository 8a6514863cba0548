import pytest
import torch
from data.fixtures import CELEBA_ATTRIBUTES, CELEBA_FILES, celeba_attributes, truncate, write_celeba

from branchsweep.cli import main
from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.errors import DataError


@pytest.fixture
def root(tmp_path):
    return write_celeba(tmp_path / "celeba")


def make(root, **kw):
    return create_data(DataConfig(dataset="celeba", root=str(root), size=16, **kw))


def test_forty_binary_tasks_named_from_the_header(root):
    data = make(root)
    assert list(data.tasks) == CELEBA_ATTRIBUTES and len(data.tasks) == 40
    assert all(t.kind == "binary" for t in data.tasks.values())
    assert data.splits == ("train", "val", "test")
    assert [len(data.split(s)) for s in data.splits] == [4, 1, 1]


def test_labels_map_minus_one_one_to_zero_one(root):
    data = make(root)
    item = data.split("train", train=False)[1]
    assert item["meta"] == {"id": CELEBA_FILES[1], "size": (22, 18)}
    assert item["image"].shape == (3, 16, 16) and item["image"].abs().max() <= 1.0
    expected = [float(v == 1) for v in celeba_attributes(1)]
    assert [float(item[a]) for a in CELEBA_ATTRIBUTES] == expected
    assert item["Smiling"].shape == (1,) and item["Smiling"].dtype == torch.float32
    assert make(root, tasks=["Smiling", "Male"]).split("test")[0].keys() == {"image", "Smiling", "Male", "meta"}


def test_broken_files_raise_data_errors(root, capsys):
    text = (root / "list_attr_celeba.txt").read_text().splitlines()
    (root / "list_attr_celeba.txt").write_text("\n".join(text[:-1]) + "\n")  # truncated: one row short
    with pytest.raises(DataError, match="list_attr_celeba.txt: header says 6 images but 5 rows follow"):
        make(root).split("train")
    (root / "list_attr_celeba.txt").write_text("\n".join(text) + "\n")
    truncate(root / "img_align_celeba" / CELEBA_FILES[4])
    with pytest.raises(DataError, match="000005.jpg: image file is truncated"):
        make(root).split("val")[0]
    assert main(["check-data", "--dataset", "celeba", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "val: 1 images" in out and "000005.jpg" in out
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="list_eval_partition.txt: partition file is missing"):
        make(root).split("train")


def test_a_bad_attribute_value_names_its_line(root):
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace("-1", " 0", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt: line 5 has a missing value or one other than -1"):
        make(root).split("train")
