import json

import pytest
import torch
from torch.utils.data import Dataset

from branchsweep import loop
from branchsweep.arch import BranchConfig
from branchsweep.backbones import create_backbone
from branchsweep.config import DataConfig
from branchsweep.data import create_data
from branchsweep.data.base import MultiTaskData
from branchsweep.errors import BranchsweepError, ConfigError
from branchsweep.search import SEARCH_METHODS, SearchContext
from branchsweep.search.ltb import (
    BranchingNetwork,
    LTBConfig,
    adjusted_rand_index,
    leaf_groups,
    resolve_child_nodes,
    run_search,
    straight_through_select,
)
from branchsweep.tasks import create_task


@pytest.fixture
def one_thread():
    """Tiny matmuls run faster on one thread than on two contended ones; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_mlp_net(num_tasks=4, counts=(3, 2, "T")):
    spec = create_backbone("mlp", input_dim=12, hidden=16, num_layers=3)
    tasks = [create_task("regression", name=f"r{i}", out_channels=5) for i in range(num_tasks)]
    return BranchingNetwork(spec, tasks, resolve_child_nodes(list(counts), 3, num_tasks)), tasks


def test_registered():
    assert "ltb" in SEARCH_METHODS.names()
    assert SEARCH_METHODS.get("ltb").config_type is LTBConfig


def test_hard_forward_soft_backward():
    torch.manual_seed(0)
    net, tasks = _tiny_mlp_net()
    net.train()
    net.tau = 5.0
    inputs, outputs = {}, {}
    for layer, nodes in enumerate(net.nodes):
        for j, node in enumerate(nodes):
            node.register_forward_pre_hook(lambda m, a, key=(layer, j): inputs.__setitem__(key, a[0].detach().clone()))
            node.register_forward_hook(lambda m, a, o, key=(layer, j): outputs.__setitem__(key, o.detach().clone()))
    with torch.no_grad():  # non-uniform logits so the soft weights are far from one-hot
        for a in list(net.logits)[1:]:
            a.copy_(torch.randn_like(a))
    out = net(torch.randn(6, 12))
    for layer in range(1, len(net.counts)):
        for j in range(net.counts[layer]):
            chosen = net.last_choice[layer][j]
            assert torch.equal(inputs[(layer, j)], outputs[(layer - 1, chosen)])
            others = [i for i in range(net.counts[layer - 1]) if i != chosen]
            assert all(not torch.equal(inputs[(layer, j)], outputs[(layer - 1, i)]) for i in others)
    sum(out[t.name].square().mean() for t in tasks).backward()
    for a in list(net.logits)[1:]:
        assert a.grad is not None and bool((a.grad != 0).all()), "every parent's logit gets a gradient"


def test_straight_through_gradient_is_gumbel_softmax():
    y = [torch.full((3,), 1.0), torch.full((3,), 4.0)]
    logits = torch.tensor([0.3, -0.2], requires_grad=True)
    g = torch.Generator().manual_seed(5)
    x, i = straight_through_select(y, logits, tau=2.0, generator=g)
    assert torch.equal(x, y[i])
    x.sum().backward()
    g = torch.Generator().manual_seed(5)
    u = torch.rand(2, generator=g)
    soft = torch.softmax((logits.detach() + -torch.log(-torch.log(u))) / 2.0, 0)
    # d/dα_k Σ_i soft_i·s_i with s = (3, 12): soft_k (s_k − Σ soft·s) / τ
    s = torch.tensor([3.0, 12.0])
    expected = soft * (s - (soft * s).sum()) / 2.0
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_eval_takes_argmax_and_export_prunes():
    net, _ = _tiny_mlp_net()
    with torch.no_grad():
        net.logits[1].copy_(torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 9.0]]))  # layer-1 node 0 unused
        net.logits[2].copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    net.eval()
    net(torch.randn(2, 12))
    assert net.last_choice == net.selected_parents() == [[0, 0, 0], [1, 2], [0, 0, 1, 1]]
    config = net.export()
    assert config == BranchConfig.from_groups(
        ["r0", "r1", "r2", "r3"], [[["r0", "r1"], ["r2", "r3"]], [["r0", "r1"], ["r2", "r3"]],
                                   [["r0"], ["r1"], ["r2"], ["r3"]]])
    assert leaf_groups(config) == [0, 0, 1, 1]


@pytest.mark.parametrize(
    ("counts", "message"),
    [([3, 3], "2 entries but the backbone has 3"), ([3, 3, 5], "one node per task \\(4\\)"), ([0, 3, "T"], ">= 1")],
)
def test_child_node_validation(counts, message):
    with pytest.raises(ConfigError, match=message):
        resolve_child_nodes(counts, 3, 4)


def test_config_validation():
    with pytest.raises(ConfigError, match="warmup"):
        LTBConfig(iterations=10, warmup_iterations=10).validate()
    with pytest.raises(ConfigError, match="tau-unit"):
        LTBConfig(tau_unit="batch").validate()
    with pytest.raises(BranchsweepError, match="unknown temperature schedule 'nope'"):
        LTBConfig(schedule="nope").validate()
    assert LTBConfig(iterations=500).length(7) == (500, 50)
    # the paper's schedules in epochs: synthetic 500 epochs / 50 warm-up, CelebA 30 / 2
    assert LTBConfig().length(20) == (10000, 1000)
    assert LTBConfig(epochs=30, warmup_epochs=2).length(2543) == (76290, 5086)
    with pytest.raises(ConfigError, match="warmup-epochs"):
        LTBConfig(epochs=2, warmup_epochs=2).validate()
    with pytest.raises(ConfigError, match="gamma"):
        LTBConfig(lr_schedule="exponential", lr_gamma=1.5).validate()
    with pytest.raises(BranchsweepError, match="unknown learning-rate schedule"):
        LTBConfig(lr_schedule="cyclic").validate()


def test_named_trees_and_space_samples():
    assert resolve_child_nodes("vgg", 8, 40) == [3, 3, 5, 5, 10, 20, 30, 40]
    assert resolve_child_nodes("deep_wide", 5, 40) == [2, 4, 8, 16, 40]
    with pytest.raises(ConfigError, match="tree name"):
        LTBConfig(child_nodes="resnet").validate()
    method = SEARCH_METHODS.get("ltb")
    cfg = method.make_config(method.settings({"tree": "2,4,T", "schedule": "inverse", "tau0": 10.0}))
    assert cfg.child_nodes == [2, 4, "T"] and cfg.schedule == "inverse"
    # per-block ranges: one integer per layer but the last (T)
    import optuna

    space = method.make_space({"per_block": [(1, 2), (3, 3)], "tau0": (10.0, 10.0), "schedules": ("inverse",)})
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    space.suggest(trial, "ltb.")
    settings = method.settings({k[4:]: v for k, v in trial.params.items()})
    assert settings["child_nodes"][1:] == [3, "T"] and settings["child_nodes"][0] in (1, 2)
    assert settings["tau0"] == 10.0
    with pytest.raises(ConfigError, match="end in T|ending in T"):
        method.make_space({"trees": ["3,3,5"]})


def test_search_lr_decays_per_epoch_and_tau_per_epoch(tmp_path):
    """CelebA search schedules: lr × 0.5 every 2 epochs (exponential, staircase) on both optimisers, τ
    = τ0/(1+epoch) constant within an epoch, no logit update in the warm-up epoch."""
    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=32, val_samples=8, seed=0,
                                  options={"activations": ["bent", "square"], "tasks_per_activation": 1}))
    tasks = list(data.tasks.values())
    spec = create_backbone("mlp", input_dim=200, hidden=8, num_layers=2)
    seen = []
    real_step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    cfg = LTBConfig(epochs=6, warmup_epochs=1, batch_size=8, lr=0.1, arch_lr=1.0, lr_schedule="exponential",
                    lr_gamma=0.5, lr_every_epochs=2, schedule="inverse", tau0=10.0, tau_unit="epoch", log_every=1)
    torch.optim.Adam.step = spy
    try:
        run_search(cfg, SearchContext(data, spec, tasks, tmp_path, seed=0, progress=False))
    finally:
        torch.optim.Adam.step = real_step
    # 4 iterations per epoch, 24 in all; the warm-up epoch steps only the weights' Adam
    weights = seen[:4] + seen[4::2]
    arch = seen[5::2]
    assert weights == [0.1] * 8 + [0.05] * 8 + [0.025] * 8
    assert arch == [1.0] * 4 + [0.5] * 8 + [0.25] * 8
    records = [json.loads(line) for line in (tmp_path / "search_log.jsonl").read_text().splitlines()]
    taus = [r["tau"] for r in records if "tau" in r]
    assert taus == [10.0 / (1 + it // 4) for it in range(24)]
    assert [r["warmup"] for r in records if "tau" in r] == [True] * 4 + [False] * 20


def test_adjusted_rand_index():
    assert adjusted_rand_index([0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1]) == 1.0
    assert adjusted_rand_index([0, 0, 0, 0], [0, 0, 0, 0]) == 1.0
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]) == 0.0
    # hand-computed: table [[2,1],[0,2]] -> index 2, a-pairs 4, b-pairs 4, expected 4*4/10
    assert adjusted_rand_index([0, 0, 0, 1, 1], [0, 0, 1, 1, 1]) == pytest.approx((2 - 1.6) / (4 - 1.6))


class RandomImages(Dataset):
    def __init__(self, n, size, names, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = (torch.rand(n, len(names), generator=g) > 0.5).float()
        self.names = names

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], **{n: self.y[i, k : k + 1] for k, n in enumerate(self.names)}, "meta": {}}


def test_forty_binary_tasks_search(tmp_path, one_thread):
    names = [f"attr{i}" for i in range(40)]
    tasks = {n: create_task("binary", name=n) for n in names}
    data = MultiTaskData("random-faces", tasks, lambda split, train: RandomImages(16, 16, names, len(split)),
                         (3, 16, 16), "celeba_deep_wide")
    spec = create_backbone("celeba_deep_wide", width=0.125, input_size=16)
    cfg = LTBConfig(child_nodes=[2, 4, 8, 16, "T"], iterations=4, warmup_iterations=1, batch_size=8,
                    schedule="inverse", tau0=10.0, tau_unit="epoch", arch_lr=1.0)
    result = run_search(cfg, SearchContext(data, spec, list(tasks.values()), tmp_path, progress=False))
    saved = BranchConfig.load(tmp_path / "branch_config.json")
    assert saved == result.config and saved.num_tasks == 40 and saved.num_layers == 5
    lines = [json.loads(line) for line in (tmp_path / "search_log.jsonl").read_text().splitlines()]
    assert lines[0]["header"]["child_nodes"] == [2, 4, 8, 16, 40]
    steps = [r for r in lines if "iteration" in r]
    assert [r["iteration"] for r in steps] == [1, 2, 3, 4] and steps[0]["tau"] == 10.0  # 2 batches/epoch
    assert [r["tau"] for r in steps] == [10.0, 10.0, 5.0, 5.0]
    probs = steps[-1]["probabilities"]
    assert [len(p) for p in probs] == [4, 8, 16, 40] and len(probs[-1][0]) == 16
    assert lines[-1]["final"] and lines[-1]["arch_hash"] == saved.arch_hash()
    assert len(result.info["parents"][-1]) == 40


def test_warmup_freezes_branching(tmp_path, one_thread):
    from branchsweep.config import DataConfig
    from branchsweep.data import create_data

    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=32, val_samples=8,
                                  options={"activations": ["sin", "bent"], "tasks_per_activation": 2,
                                           "input_dim": 12, "output_dim": 16}))
    spec = create_backbone("mlp", input_dim=12, hidden=16)
    cfg = LTBConfig(iterations=6, warmup_iterations=3, batch_size=8, arch_lr=0.5, log_every=1)
    run_search(cfg, SearchContext(data, spec, list(data.tasks.values()), tmp_path, progress=False))
    steps = [json.loads(line) for line in (tmp_path / "search_log.jsonl").read_text().splitlines()][1:-1]
    uniform = [[[1 / 3] * 3] * 3, [[1 / 3] * 3] * 3, [[1 / 3] * 3] * 4]
    for rec in steps[:3]:
        assert rec["warmup"] and all(torch.allclose(torch.tensor(p), torch.tensor(u))
                                     for p, u in zip(rec["probabilities"], uniform))
    assert not torch.allclose(torch.tensor(steps[-1]["probabilities"][0]), torch.tensor(uniform[0]))


def test_resume_continues_exactly(tmp_path, one_thread, monkeypatch):
    from branchsweep.config import DataConfig
    from branchsweep.data import create_data

    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=32, val_samples=8,
                                  options={"activations": ["sin", "square"], "tasks_per_activation": 2,
                                           "input_dim": 12, "output_dim": 16}))
    spec = create_backbone("mlp", input_dim=12, hidden=16)
    tasks = list(data.tasks.values())
    cfg = LTBConfig(iterations=8, warmup_iterations=2, batch_size=8, arch_lr=0.3, checkpoint_every=4)
    full = run_search(cfg, SearchContext(data, spec, tasks, tmp_path / "full", progress=False))

    calls = {"n": 0}
    real_loss = loop.weighted_loss  # what the shared training step computes every iteration

    def crash_after_six(*args):
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(loop, "weighted_loss", crash_after_six)
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, SearchContext(data, spec, tasks, tmp_path / "cut", progress=False))
    monkeypatch.setattr(loop, "weighted_loss", real_loss)
    resumed = run_search(cfg, SearchContext(data, spec, tasks, tmp_path / "cut", resume=True, progress=False))
    log = lambda d: [json.loads(x) for x in (d / "search_log.jsonl").read_text().splitlines()][1:]  # noqa: E731
    assert log(tmp_path / "cut") == log(tmp_path / "full")
    assert resumed.config == full.config


def test_resume_without_checkpoint_is_an_error(tmp_path):
    from branchsweep.config import DataConfig
    from branchsweep.data import create_data

    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=16, val_samples=8,
                                  options={"input_dim": 12, "output_dim": 16, "tasks_per_activation": 1}))
    spec = create_backbone("mlp", input_dim=12, hidden=16)
    with pytest.raises(ConfigError, match="no Learning-to-Branch checkpoint"):
        run_search(LTBConfig(iterations=2, batch_size=8),
                   SearchContext(data, spec, list(data.tasks.values()), tmp_path, resume=True, progress=False))


def test_resume_with_other_settings_is_a_config_error(tmp_path):
    from branchsweep.config import DataConfig
    from branchsweep.data import create_data

    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=16, val_samples=8,
                                  options={"input_dim": 12, "output_dim": 16, "tasks_per_activation": 1}))
    spec = create_backbone("mlp", input_dim=12, hidden=16)
    tasks = list(data.tasks.values())
    cfg = LTBConfig(iterations=4, batch_size=8, child_nodes=2)
    assert run_search(cfg, SearchContext(data, spec, tasks, tmp_path, progress=False), stop_at=1) is None
    with pytest.raises(ConfigError, match=r"child_nodes=\[2, 2, 2, \d+\], this run has child_nodes=\[3, 3, 3,"):
        run_search(LTBConfig(iterations=4, batch_size=8, child_nodes=3),
                   SearchContext(data, spec, tasks, tmp_path, resume=True, progress=False))
    with pytest.raises(ConfigError, match="seed=0, this run has seed=1"):
        run_search(cfg, SearchContext(data, spec, tasks, tmp_path, resume=True, progress=False, seed=1))


def test_cli_search_writes_config_and_log(tmp_path, capsys, one_thread):
    from branchsweep.cli import main

    out = tmp_path / "run"
    rc = main(["search", "--method", "ltb", "--dataset", "ltb-synthetic", "--activations", "bent,square",
               "--tasks-per-activation", "2", "--train-samples", "64", "--val-samples", "16",
               "--child-nodes", "2,2,2,2,T", "--iterations", "5", "--batch-size", "16", "--seed", "1",
               "--width", "0.2", "--out", str(out), "--no-progress"])
    assert rc == 0
    config = BranchConfig.load(out / "branch_config.json")
    assert config.num_tasks == 4 and config.num_layers == 5  # mlp_select: 4 FC blocks + the pick
    assert (out / "search_log.jsonl").exists()
    assert "ltb search finished" in capsys.readouterr().out


def test_cli_bad_child_nodes(tmp_path, capsys):
    from branchsweep.cli import main

    rc = main(["search", "--method", "ltb", "--dataset", "ltb-synthetic", "--tasks-per-activation", "1",
               "--child-nodes", "3,3,T", "--iterations", "2", "--out", str(tmp_path), "--no-progress"])
    assert rc == 2
    assert "3 entries but the backbone has 5" in capsys.readouterr().err


def test_search_with_skip_features_on_dense_scenes(tmp_path, tiny_dense, one_thread):
    """mobilenet_v2 feeds its heads skip features from each task's own sampled path: the head of a task
    receives the output of the node its path went through at the skip layer, found by walking the
    path back from the task's leaf (here the paths cross after the skip layer, so "the node with the
    task's index" would be the other task's)."""
    spec = create_backbone("mobilenet_v2", width=0.25, input_size=32)
    (skip,) = spec.skip_layers
    tasks = tiny_dense.select_tasks(["semseg", "depth"])
    torch.manual_seed(0)
    net = BranchingNetwork(spec, tasks, [2] * (spec.num_layers - 1) + [2]).train()
    last = spec.num_layers - 1
    with torch.no_grad():  # child j reads parent j, except the leaves, which cross: leaf 0 <- node 1
        for layer in range(1, spec.num_layers):
            net.logits[layer].copy_(torch.tensor([[0.0, 50.0], [50.0, 0.0]]) if layer == last
                                    else torch.tensor([[50.0, 0.0], [0.0, 50.0]]))
    at_skip, heard = {}, {}
    for j, node in enumerate(net.nodes[skip]):
        node.register_forward_hook(lambda m, a, out, j=j: at_skip.__setitem__(j, out.detach().clone()))
    for name, head in net.heads.items():
        head.register_forward_pre_hook(lambda m, args, name=name: heard.__setitem__(name, args[1][0].detach().clone()))
    net(tiny_dense.split("train")[0]["image"][None].expand(2, -1, -1, -1).clone())
    assert net.last_choice[last] == [1, 0] and all(net.last_choice[k] == [0, 1] for k in range(1, last))
    assert not torch.equal(at_skip[0], at_skip[1])
    assert torch.equal(heard["semseg"], at_skip[1]) and torch.equal(heard["depth"], at_skip[0])
    # and a search on the dense scenes runs end to end with those heads
    cfg = LTBConfig(child_nodes=[2] * (spec.num_layers - 1) + ["T"], iterations=2, warmup_iterations=0,
                    batch_size=4, schedule="inverse", tau0=10.0)
    result = run_search(cfg, SearchContext(tiny_dense, spec, tasks, tmp_path, progress=False))
    assert result.config.num_layers == spec.num_layers and result.config.tasks == ("semseg", "depth")


def test_branching_moves_towards_the_informative_parent(one_thread):
    """A child learns to read the parent whose features lower its loss (the gradient of Eq. 5/6)."""
    torch.manual_seed(0)
    spec = create_backbone("mlp", input_dim=8, hidden=8, num_layers=2)
    tasks = [create_task("regression", name=f"r{i}", out_channels=8) for i in range(3)]
    net = BranchingNetwork(spec, tasks, [2, 3]).train()
    dead = net.nodes[0][1][0]  # parent 1 outputs ReLU(0) = 0: useless features
    torch.nn.init.zeros_(dead.weight)
    torch.nn.init.zeros_(dead.bias)
    weights = [p for p in net.weight_parameters() if p is not dead.weight and p is not dead.bias]
    w_opt, a_opt = torch.optim.Adam(weights, lr=1e-2), torch.optim.Adam(net.arch_parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    for step in range(150):
        net.tau = 5.0 / (1 + step) ** 0.5
        x = torch.randn(32, 8, generator=g)
        out = net(x)
        loss = sum((out[t.name] - x.abs()).square().mean() for t in tasks)
        w_opt.zero_grad()
        a_opt.zero_grad()
        loss.backward()
        w_opt.step()
        a_opt.step()
    assert net.selected_parents()[1] == [0, 0, 0]
    assert bool((net.probabilities()[1][:, 0] > 0.9).all())


def test_synthetic_defaults_are_the_papers():
    """What ``branchsweep search --method ltb --dataset ltb-synthetic`` runs with nothing else given is
    Section 4.1's setting: the Figure 3 network (``mlp_select``: 4 FC blocks × 3 nodes of 100 units, then
    one pick per task and a bias), Eq. 8 as written, 500 epochs (50 warm-up) of batch 100, Adam 1e-3,
    τ = 50/√(1+it). Whether it recovers Figure 3 is a multi-seed question: benchmarks/ltb_synthetic_ari.py."""
    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=2000, val_samples=8, seed=0))
    assert data.default_backbone == "mlp_select"
    spec = create_backbone(data.default_backbone, input_dim=200)
    assert spec.layer_names == ["fc1", "fc2", "fc3", "fc4", "select"] and spec.params["hidden"] == 100
    cfg = SEARCH_METHODS.get("ltb").make_config({})
    assert resolve_child_nodes(cfg.child_nodes, spec.num_layers, len(data.tasks)) == [3, 3, 3, 3, 15]
    assert cfg.length(2000 // cfg.batch_size) == (10000, 1000) and cfg.batch_size == 100
    assert (cfg.lr, cfg.schedule, cfg.tau0, cfg.tau_unit, cfg.lr_schedule) == (1e-3, "inverse_sqrt", 50.0,
                                                                            "iteration", "constant")
    net = BranchingNetwork(spec, list(data.tasks.values()), [3, 3, 3, 3, 15])
    assert all(sum(p.numel() for p in head.parameters()) == 100 for head in net.heads.values())  # a bias
    # Eq. 8 as written: φ = input dim, no per-activation normalisation
    raw = data.split("train", train=False)
    phi200 = create_data(DataConfig(dataset="ltb-synthetic", train_samples=2000, val_samples=8, seed=0,
                                    options={"normalize": "input_dim"})).split("train", train=False)
    assert torch.equal(raw.targets["sinc_0"], phi200.targets["sinc_0"])


def test_an_epoch_is_the_data_sets_epoch_samples_when_set(tmp_path):
    """Taskonomy's epoch is the paper's 275K images (4296 iterations at batch 64), not a pass over the
    download: a data set's ``epoch_samples`` sets the iterations per epoch of lengths, lr decay and τ."""
    import dataclasses

    data = create_data(DataConfig(dataset="ltb-synthetic", train_samples=32, val_samples=8, seed=0,
                                  options={"activations": ["bent", "square"], "tasks_per_activation": 1}))
    data = dataclasses.replace(data, epoch_samples=16)  # an epoch: 2 batches of 8, not the split's 4
    tasks = list(data.tasks.values())
    spec = create_backbone("mlp", input_dim=200, hidden=8, num_layers=2)
    cfg = LTBConfig(epochs=3, warmup_epochs=1, batch_size=8, lr_schedule="exponential", lr_gamma=0.5,
                    lr_every_epochs=1, schedule="inverse", tau0=10.0, tau_unit="epoch", log_every=1)
    run_search(cfg, SearchContext(data, spec, tasks, tmp_path, seed=0, progress=False))
    records = [json.loads(line) for line in (tmp_path / "search_log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "tau" in r]
    assert len(steps) == 6 and [r["tau"] for r in steps] == [10.0 / (1 + it // 2) for it in range(6)]
    assert [r["warmup"] for r in steps] == [True] * 2 + [False] * 4
