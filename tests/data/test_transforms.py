import numpy as np
import torch

from branchsweep.data.transforms import BMTAS_SCALES, DenseTransform, image_to_unit_range

KINDS = {"semseg": "class", "depth": "depth", "normals": "normals", "edge": "edge"}


def sample(h=6, w=8):
    """A left/right asymmetric sample: semseg = column index, normals x = +0.6."""
    return {
        "image": np.full((h, w, 3), 255, np.uint8),
        "semseg": np.tile(np.arange(w, dtype=np.int64), (h, 1)),
        "depth": np.full((1, h, w), 3.0, np.float32),
        "normals": np.tile(np.array([0.6, 0.0, 0.8], np.float32)[:, None, None], (1, h, w)),
        "edge": np.zeros((1, h, w), np.float32),
        "meta": {"id": "x", "size": (h, w)},
    }


def test_scales_are_the_bmtas_set():
    assert BMTAS_SCALES == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def test_image_to_unit_range():
    img = image_to_unit_range(np.array([[[0, 255, 127]]], dtype=np.uint8))
    assert img.shape == (3, 1, 1) and img[0] == -1 and img[1] == 1 and abs(float(img[2]) + 0.0039) < 1e-3


def test_eval_pads_with_each_labels_no_label_value():
    out = DenseTransform(10, KINDS, train=False)(sample())
    assert out["meta"]["size"] == (6, 8)
    assert (out["image"][:, :6, :8] == 1).all() and (out["image"][:, 6:] == 0).all()
    assert torch.equal(out["semseg"][:6, :8], torch.tensor(sample()["semseg"]))
    assert (out["semseg"][6:] == 255).all() and (out["semseg"][:, 8:] == 255).all()
    assert (out["edge"][0, 6:] == 255).all()
    assert (out["depth"][0, 6:] == 0).all() and (out["normals"][:, 6:] == 0).all()


def test_eval_scales_down_an_image_larger_than_the_input():
    out = DenseTransform(4, KINDS, train=False)(sample())
    assert out["meta"]["size"] == (3, 4) and out["semseg"].shape == (4, 4) and (out["semseg"][3] == 255).all()


def test_train_flip_mirrors_labels_and_negates_normals_x():
    """With scale 1 and the crop equal to the image, only the flip changes the sample."""
    t = DenseTransform(8, KINDS, train=True, scales=(1.0,))
    seen = set()
    torch.manual_seed(0)
    for _ in range(16):
        out = t(sample(8, 8))
        flipped = bool(out["semseg"][0, 0] == 7)
        assert torch.equal(out["semseg"][0], torch.arange(8).flip(0) if flipped else torch.arange(8))
        assert torch.allclose(out["normals"][0], torch.full((8, 8), -0.6 if flipped else 0.6))
        assert torch.allclose(out["normals"][2], torch.full((8, 8), 0.8))
        seen.add(flipped)
    assert seen == {True, False}


def test_train_crop_pads_small_scales_and_uses_the_global_rng():
    t = DenseTransform(12, KINDS, train=True)
    torch.manual_seed(1)
    a = [t(sample()) for _ in range(6)]
    torch.manual_seed(1)
    b = [t(sample()) for _ in range(6)]
    for x, y in zip(a, b):
        assert x["semseg"].shape == (12, 12) and torch.equal(x["semseg"], y["semseg"])
    # at most 2x of 6x8 = 12x16: a 12x12 crop of a downscaled image always contains ignore padding
    assert any((x["semseg"] == 255).any() for x in a)
    assert all(set(x["semseg"].unique().tolist()) <= set(range(8)) | {255} for x in a)


def test_docstring_examples_of_the_loaders_hold():
    import doctest

    from branchsweep.data import nyud, pascal_context, transforms

    for module in (transforms, pascal_context, nyud):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_train_random_scale_divides_depth_by_the_scale_factor():
    """Zooming in by s makes the scene look s times closer (reference loaders): depth 3 m → 3/s m;
    invalid depth (0) and the padding stay 0."""
    for s in (0.5, 2.0):
        t = DenseTransform(8, KINDS, train=True, scales=(s,))
        raw = sample(6, 8)
        raw["depth"][0, :, :4] = 0.0  # left half invalid
        torch.manual_seed(0)
        out = t(raw)
        depth = out["depth"][0]
        assert out["depth"].shape == out["semseg"].unsqueeze(0).shape == (1, 8, 8)  # still cropped with the rest
        valid = depth > 0
        assert valid.any() and torch.allclose(depth[valid], torch.full_like(depth[valid], 3.0 / s))
        assert not (depth[~valid]).any()
