import torch

from branchsweep.config import DataConfig
from branchsweep.data import create_data


def test_items_follow_the_label_conventions(tiny_dense):
    item = tiny_dense.split("train")[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].abs().max() <= 1.0
    assert item["semseg"].dtype == torch.int64 and item["semseg"].shape == (32, 32)
    assert set(item["parts"].unique().tolist()) <= {0, 1, 2}
    assert item["depth"].min() > 0
    assert torch.allclose(item["normals"].norm(dim=0), torch.ones(32, 32), atol=1e-5)
    # saliency is the object mask, parts live inside objects, edges outline objects
    assert torch.equal(item["sal"][0] > 0, item["semseg"] > 0)
    assert torch.equal(item["parts"] > 0, item["semseg"] > 0)


def test_seeded_and_split_specific():
    a = create_data(DataConfig(size=16, train_samples=4, val_samples=4, seed=3))
    b = create_data(DataConfig(size=16, train_samples=4, val_samples=4, seed=3))
    c = create_data(DataConfig(size=16, train_samples=4, val_samples=4, seed=4))
    assert torch.equal(a.split("train")[1]["image"], b.split("train")[1]["image"])
    assert not torch.equal(a.split("train")[1]["image"], c.split("train")[1]["image"])
    assert not torch.equal(a.split("train")[1]["image"], a.split("val")[1]["image"])


def test_normals_are_the_normals_of_the_depth_surface():
    """Depth and normals share the geometry factor: n ∝ (-dz/du, -dz/dv, 1)."""
    import numpy as np

    from branchsweep.data.synthetic_dense import render_scene

    scene = render_scene(48, np.random.default_rng(0))
    n = torch.from_numpy(scene["normals"])
    # normals are the normals of the depth surface: n_x / n_z == -dz/du
    z = scene["depth"][0].astype("float64")
    dz_du = np.gradient(z, 2.0 / 47, axis=1)
    assert np.allclose(-n[0].numpy() / n[2].numpy(), dz_du, atol=1e-4)
    assert (scene["edge"][0] > 0).sum() > 0
