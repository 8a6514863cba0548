import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.data import create_data
from branchsweep.factory import build_model, build_spec
from branchsweep.loop import epoch_batches
from branchsweep.train import evaluate_network, train_network

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


def test_resume_gives_identical_next_step(tmp_path):
    data, tasks, spec, config = _setup("synthetic-dense", "single")
    full_cfg = TrainConfig(iterations=6, batch_size=8, progress=False)
    full = train_network(build_model(spec, tasks, config, 0), data, tasks, full_cfg)

    half_cfg = TrainConfig(iterations=6, batch_size=8, progress=False, checkpoint_every=3)
    model = build_model(spec, tasks, config, 0)
    # Interrupt after 3 iterations: train a 6-iteration schedule but stop via an exception.
    class Stop(Exception):
        pass

    def stop_at_3(it, info):
        if it == 3:
            raise Stop

    with pytest.raises(Stop):
        train_network(model, data, tasks, half_cfg, out_dir=tmp_path, on_step=stop_at_3)
    resumed_model = build_model(spec, tasks, config, 123)  # different init: everything comes from the checkpoint
    resumed = train_network(resumed_model, data, tasks, half_cfg, out_dir=tmp_path, resume=True)
    assert resumed.losses[:3] == full.losses[:3]
    assert resumed.losses[3] == full.losses[3]
    assert resumed.losses == pytest.approx(full.losses, rel=1e-6)


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
