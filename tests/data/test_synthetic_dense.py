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


class _Recorder:
    """A numpy Generator that records what ``uniform`` returned (to read a scene's parameters back)."""

    def __init__(self, seed: int) -> None:
        import numpy as np

        self.rng, self.uniform_draws = np.random.default_rng(seed), []

    def uniform(self, *args, **kwargs):
        value = self.rng.uniform(*args, **kwargs)
        self.uniform_draws.append(value)
        return value

    def __getattr__(self, name):
        return getattr(self.rng, name)


def test_normals_are_the_normals_of_the_depth_surface():
    """Depth is the documented surface z(u, v) = d0 + a·u + b·v + Σ_k h_k·exp(-|p - c_k|²/2σ_k²) and the
    normals are ∝ (-∂z/∂u, -∂z/∂v, 1), both components checked against the analytic derivatives (the
    code takes finite differences; at 256 px they agree to 1e-2 inside the image)."""
    import numpy as np

    from branchsweep.data.synthetic_dense import render_scene

    size = 256
    rng = _Recorder(0)
    scene = render_scene(size, rng)
    d0, a, b, *bumps = rng.uniform_draws[:12]  # the geometry draws come first: d0, a, b, then (c, σ, h) × 3
    lin = np.linspace(-1.0, 1.0, size)
    v, u = np.meshgrid(lin, lin, indexing="ij")  # rows run along v, columns along u
    z, dz_du, dz_dv = d0 + a * u + b * v, np.full_like(u, a), np.full_like(u, b)
    for c, sigma, h in zip(bumps[0::3], bumps[1::3], bumps[2::3]):
        g = h * np.exp(-((u - c[0]) ** 2 + (v - c[1]) ** 2) / (2 * sigma**2))
        z, dz_du, dz_dv = z + g, dz_du - g * (u - c[0]) / sigma**2, dz_dv - g * (v - c[1]) / sigma**2
    assert np.allclose(scene["depth"][0], z, atol=1e-5)  # the parameters were read back right
    assert np.abs(dz_du).max() > 0.5 and np.abs(dz_dv).max() > 0.5  # a surface with real slopes both ways
    n = scene["normals"].astype(np.float64)
    assert np.allclose(np.linalg.norm(n, axis=0), 1.0, atol=1e-5) and (n[2] > 0).all()
    inner = np.s_[2:-2, 2:-2]  # np.gradient is one-sided (first order) on the border
    assert np.allclose((-n[0] / n[2])[inner], dz_du[inner], atol=1e-2)  # n_x / n_z = -∂z/∂u
    assert np.allclose((-n[1] / n[2])[inner], dz_dv[inner], atol=1e-2)  # n_y / n_z = -∂z/∂v
    assert (scene["edge"][0] > 0).sum() > 0
