import pytest
import torch

from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.data.ltb_synthetic import ACTIVATIONS, generate
from branchsweep.errors import ConfigError


def _data(**options):
    return create_data(DataConfig(dataset="ltb-synthetic", train_samples=64, val_samples=16, seed=3, options=options))


def test_default_layout_and_items():
    data = _data()
    assert list(data.tasks) == [f"{a}_{s}" for a in ("bent", "square", "sinc") for s in range(5)]
    assert data.input_shape == (200,) and data.default_backbone == "mlp_select"  # the paper's Figure 3 network
    item = data.split("train")[5]
    assert item["image"].shape == (200,) and item["image"].dtype == torch.float32
    assert item["square_2"].shape == (100,) and item["meta"] == {}
    assert len(data.split("train")) == 64 and len(data.split("val")) == 16
    assert data.info["groups"]["bent_4"] == 0 and data.info["groups"]["sinc_0"] == 2
    assert all(t.out_channels == 100 for t in data.tasks.values())


#: Eq. 8 of Learning to Branch draws B ~ N(0, 10) and δ_s ~ N(0, 2), read as variances (N(μ, σ²), as in
#: GradNorm, whose construction Eq. 8 follows). Written here, not imported from the module under test.
PAPER_B_VARIANCE, PAPER_DELTA_VARIANCE = 10.0, 2.0


def test_targets_follow_eq8():
    """Rebuild one target from the same generator stream: c · act((B + δ_s) Z) / φ."""
    inputs, targets = generate(["sin", "square"], [1.0, 2.0], 2, input_dim=6, output_dim=4,
                               samples={"train": 5}, seed=11)
    g = torch.Generator().manual_seed(11)
    B = torch.randn(4, 6, generator=g, dtype=torch.float64) * PAPER_B_VARIANCE**0.5
    deltas = [torch.randn(4, 6, generator=g, dtype=torch.float64) * PAPER_DELTA_VARIANCE**0.5 for _ in range(4)]
    z = inputs["train"].double() / 6**0.5  # Eq. 8's Z = input_std · x / √input_dim, input_std = 1
    expected = 2.0 * torch.square(z @ (B + deltas[3]).T) / 6
    assert torch.allclose(targets["train"]["square_x2_1"].double(), expected, rtol=1e-4, atol=1e-6)


def test_shared_and_task_variances_are_the_papers():
    """Without replaying the generator: invert the (strictly increasing) bent identity to get the
    pre-activations u = (B + δ_s) Z of two bent tasks, solve for their maps by least squares, and measure
    Var(B + δ_s) = 10 + 2 and Var(δ_0 − δ_1) = 2 + 2 over 2000 entries."""
    dim, out = 20, 100
    inputs, targets = generate(["bent"], [1.0], 2, input_dim=dim, output_dim=out, samples={"train": 200}, seed=3)
    z = inputs["train"].double() / dim**0.5
    maps = []
    for task in ("bent_0", "bent_1"):
        y = targets["train"][task].double() * dim  # undo φ = input_dim
        # inverse of y = (√(u²+1) − 1)/2 + u: w = y − u ≥ 0 solves 3w² + (4 + 2y)w − y² = 0
        w = (torch.sqrt((4 + 2 * y) ** 2 + 12 * y * y) - (4 + 2 * y)) / 6
        u = y - w
        maps.append(torch.linalg.lstsq(z, u).solution.T)  # [out, dim]
    assert torch.allclose(ACTIVATIONS.get("bent")(z @ maps[0].T), targets["train"]["bent_0"].double() * dim,
                          atol=1e-3)
    shared_var = float(torch.cat([m.flatten() for m in maps]).var())
    delta_var = float((maps[0] - maps[1]).var()) / 2
    assert shared_var == pytest.approx(PAPER_B_VARIANCE + PAPER_DELTA_VARIANCE, rel=0.1)
    assert delta_var == pytest.approx(PAPER_DELTA_VARIANCE, rel=0.1)


def test_seeded_and_splits_differ():
    a, b = _data(), _data()
    assert torch.equal(a.split("train")[0]["bent_0"], b.split("train")[0]["bent_0"])
    assert not torch.equal(a.split("train")[0]["image"], a.split("val")[0]["image"])


def test_same_activation_tasks_are_more_related():
    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=400, val_samples=8, seed=0))
    split = data.split("train")
    t = {n: split.targets[n].flatten() for n in ("bent_0", "bent_1", "square_0")}
    same = torch.corrcoef(torch.stack([t["bent_0"], t["bent_1"]]))[0, 1]
    other = torch.corrcoef(torch.stack([t["bent_0"], t["square_0"]]))[0, 1]
    assert same > 0.6 and same > abs(other) + 0.3


def test_scaled_setting_b_names():
    data = _data(activations=["sin", "sin", "sin"], scales=[1, 2, 3], tasks_per_activation=2)
    assert list(data.tasks) == ["sin_x1_0", "sin_x1_1", "sin_x2_0", "sin_x2_1", "sin_x3_0", "sin_x3_1"]
    split = data.split("train")
    assert split.targets["sin_x3_0"].abs().max() <= 3 / 200 + 1e-6


def test_activations_registry():
    u = torch.tensor([0.0, 1.0])
    assert ACTIVATIONS.get("sinc")(u)[0] == 1.0
    assert torch.allclose(ACTIVATIONS.get("bent")(u), torch.tensor([0.0, (2**0.5 - 1) / 2 + 1]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"activations": ["tanh"]}, "unknown activation 'tanh'"),
        ({"activations": ["sin", "sin"]}, "repeat"),
        ({"scales": [1, 2]}, "2 scales"),
        ({"tasks_per_activation": 0}, "tasks_per_activation"),
        ({"colour": 1}, "takes no option 'colour'"),
        ({"input_std": 0}, "input_std must be > 0"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        _data(**options)


def test_activation_std_normalisation_equalises_scales_but_keeps_multipliers():
    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=500, val_samples=8, seed=0,
                                  options={"normalize": "activation_std"}))
    split = data.split("train")
    stds = [float(split.targets[f"{a}_0"].std()) for a in ("bent", "square", "sinc")]
    assert all(0.6 < s < 1.6 for s in stds), stds
    scaled = create_data(DataConfig(dataset="ltb-synthetic", train_samples=500, val_samples=8, seed=0,
                                    options={"normalize": "activation_std", "activations": ["sin", "sin"],
                                             "scales": [1, 3], "tasks_per_activation": 1})).split("train")
    ratio = scaled.targets["sin_x3_0"].std() / scaled.targets["sin_x1_0"].std()
    assert 2.5 < float(ratio) < 3.5
    with pytest.raises(ConfigError, match="normalize must be one of"):
        _data(normalize="l2")
