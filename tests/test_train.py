import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.data import create_data
from branchsweep.factory import build_model, build_spec
from branchsweep.loop import epoch_batches
from branchsweep.train import CHECKPOINT_NAME, evaluate_network, load_checkpoint, train_network

EMBEDDED = {
    "synthetic-dense": (DataConfig(dataset="synthetic-dense", size=32, train_samples=32, val_samples=16),
                        ModelConfig(backbone="mobilenet_v2", width=0.25)),
    "ltb-synthetic": (DataConfig(dataset="ltb-synthetic", train_samples=256, val_samples=64,
                                 options={"activations": ["sin", "square"], "tasks_per_activation": 2}),
                      ModelConfig(backbone="mlp", width=0.5)),
}


def _setup(name, arch="shared"):
    dcfg, mcfg = EMBEDDED[name]
    data = create_data(dcfg)
    tasks = data.select_tasks(None)
    spec = build_spec(mcfg, data)
    names = [t.name for t in tasks]
    config = (BranchConfig.shared if arch == "shared" else BranchConfig.single)(names, spec.num_layers)
    return data, tasks, spec, config


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_a_few_steps_lower_the_loss(name):
    data, tasks, spec, config = _setup(name)
    cfg = TrainConfig(iterations=30, batch_size=8, lr=0.01 if name == "synthetic-dense" else 1e-3,
                      optimizer="sgd" if name == "synthetic-dense" else "adam", progress=False)
    model = build_model(spec, tasks, config, seed=0)
    result = train_network(model, data, tasks, cfg)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first
    metrics = evaluate_network(model, data, tasks, cfg)
    assert {m.split("/")[0] for m in metrics} == {t.name for t in tasks}


def _assert_same_state(a, b, where=""):
    """Nested checkpoint state (tensors, numbers, lists, dicts) equal bit for bit."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same_state(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def test_resume_is_bit_exact(tmp_path):
    """Interrupted after 3 of 6 iterations and resumed: the same losses, weights, optimizer state
    (momentum buffers), schedule and RNG state as an uninterrupted run, bit for bit."""
    data, tasks, spec, config = _setup("synthetic-dense", "single")
    cfg = TrainConfig(iterations=6, batch_size=8, progress=False, checkpoint_every=3)
    full = train_network(build_model(spec, tasks, config, 0), data, tasks, cfg, out_dir=tmp_path / "full")

    class Stop(Exception):
        pass

    def stop_after_3(it, info):
        if it == 3:
            raise Stop

    with pytest.raises(Stop):
        train_network(build_model(spec, tasks, config, 0), data, tasks, cfg, out_dir=tmp_path / "cut",
                      on_step=stop_after_3)
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["iteration"] == 3
    resumed_model = build_model(spec, tasks, config, 123)  # different init: everything comes from the checkpoint
    resumed = train_network(resumed_model, data, tasks, cfg, out_dir=tmp_path / "cut", resume=True)
    assert resumed.losses == full.losses and len(full.losses) == 6
    a = load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME)
    b = load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)
    assert a["iteration"] == b["iteration"] == 6
    assert a["optimizer"]["state"] and all("momentum_buffer" in s for s in a["optimizer"]["state"].values())
    for key in ("model", "optimizer", "scheduler", "rng", "losses"):
        _assert_same_state(a[key], b[key], key)
    _assert_same_state(a["model"], resumed_model.state_dict(), "live model")


def test_batch_order_resumes_exactly():
    ds = list(range(10))
    a = epoch_batches(ds, 3, seed=1)
    full = [next(a).tolist() for _ in range(7)]
    b = epoch_batches(ds, 3, seed=1, start=4)
    assert [next(b).tolist() for _ in range(3)] == full[4:]


def test_nan_loss_is_reported():
    from branchsweep.train import NonFiniteLossError

    data, tasks, spec, config = _setup("synthetic-dense")
    model = build_model(spec, tasks, config, 0)
    with torch.no_grad():
        next(iter(model.heads.values())).logits.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError):
        train_network(model, data, tasks, TrainConfig(iterations=2, batch_size=8, progress=False))


def test_epochs_and_lr_decay_count_the_data_sets_epoch_samples():
    """A data set's ``epoch_samples`` (Taskonomy: the paper's 275K images) is what an epoch counts in
    the retrain's length and its per-epoch lr decay, not one pass over the split."""
    import dataclasses

    data, tasks, spec, config = _setup("synthetic-dense")
    data = dataclasses.replace(data, epoch_samples=16)  # 2 batches of 8 per epoch
    lrs = []
    real_step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.01, lr_schedule="exponential", lr_gamma=0.5, lr_every_epochs=1,
                      divide_lr_by_sharing=False, progress=False)
    torch.optim.SGD.step = spy
    try:
        result = train_network(build_model(spec, tasks, config, 0), data, tasks, cfg)
    finally:
        torch.optim.SGD.step = real_step
    assert result.iterations == 6
    assert lrs == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025])


def test_single_stem_lr_is_not_divided_in_training():
    """``make_optimizer`` with the BMTAS convention (``divide_lr_by_sharing`` None): every group of the
    Single tree, its stem included, gets the full lr; the Shared tree's stem gets lr / T."""
    from branchsweep.backbones import create_backbone
    from branchsweep.tasks import create_task
    from branchsweep.train import make_optimizer

    spec = create_backbone("mobilenet_v2", width=0.25, input_size=32)
    tasks = [create_task("semseg", num_classes=4), create_task("sal"), create_task("depth")]
    names = [t.name for t in tasks]
    cfg = TrainConfig(lr=0.006, divide_lr_by_sharing=None)
    for config, stem_lr in ((BranchConfig.single(names, spec.num_layers), 0.006),
                            (BranchConfig.shared(names, spec.num_layers), 0.002)):
        model = build_model(spec, tasks, config, 0)
        stem = {id(p) for p in model.stem.parameters()}
        groups = make_optimizer(model, cfg).param_groups
        assert [g["lr"] for g in groups if stem & {id(p) for p in g["params"]}] == pytest.approx([stem_lr])
