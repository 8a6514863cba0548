"""BMTAS search: config mapping, resume == uninterrupted, warm-up cache, λ → MAdds on synthetic-dense."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from branchsweep.arch import BranchConfig
from branchsweep.backbones import create_backbone
from branchsweep.config import DataConfig, from_mapping
from branchsweep.data import create_data
from branchsweep.errors import BranchsweepError, ConfigError
from branchsweep.search import SEARCH_METHODS, SearchContext
from branchsweep.search.base import add_method_flags, parse_settings
from branchsweep.search.bmtas import CHECKPOINT_NAME, BMTASConfig, run_search, warmup_key

TASKS = ["semseg", "sal", "depth", "normals"]


@pytest.fixture(scope="module")
def data():
    return create_data(DataConfig(dataset="synthetic-dense", size=16, train_samples=40, val_samples=8, seed=0))


def context(data, out, tasks=TASKS, **kw) -> SearchContext:
    spec = create_backbone("mobilenet_v2", width=0.1, input_size=16)
    return SearchContext(data=data, spec=spec, tasks=data.select_tasks(tasks), out_dir=out, progress=False,
                         cache_dir=out.parent / "cache", **kw)


def tiny(**kw) -> BMTASConfig:
    base = dict(iterations=6, warmup_iterations=2, batch_size=4, hard=True, weight_steps_per_arch=2,
                checkpoint_every=0)
    base.update(kw)
    return from_mapping(BMTASConfig, base)


def test_registered_with_paper_defaults():
    method = SEARCH_METHODS.get("bmtas")
    parser = argparse.ArgumentParser()
    dests = add_method_flags(parser)
    args = parser.parse_args(["--lambda", "0.02"])
    cfg = method.make_config(parse_settings(args, method, dests))
    assert cfg.lam == 0.02 and (cfg.schedule, cfg.tau0, cfg.tau1) == ("linear", 5.0, 0.1)
    assert (cfg.arch_lr, cfg.arch_weight_decay, cfg.lr, cfg.momentum, cfg.weight_decay) == (0.01, 5e-5, 0.005, 0.9, 1e-4)
    assert (cfg.iterations, cfg.warmup_iterations, cfg.batch_size, cfg.arch_fraction) == (40000, 2000, 16, 0.2)
    assert not cfg.hard and cfg.resource_mode == "absolute"
    args = parser.parse_args(["--schedule", "cosine", "--tau0", "2", "--hard"])
    cfg = method.make_config(parse_settings(args, method, dests))
    assert (cfg.schedule, cfg.tau0, cfg.hard) == ("cosine", 2.0, True)


@pytest.mark.parametrize("bad,match", [
    ({"lam": -1.0}, "lambda"), ({"resource_mode": "gflops"}, "resource-mode"), ({"schedule": "linaer"}, "linear"),
    ({"tau0": 0.0}, "temperatures"), ({"arch_fraction": 1.5}, "arch-fraction"), ({"iterations": 0}, "iterations"),
])
def test_config_errors(bad, match):
    with pytest.raises(BranchsweepError, match=match):
        from_mapping(BMTASConfig, bad)
    with pytest.raises(ConfigError, match="unknown option"):
        from_mapping(BMTASConfig, {"lambda": 1.0})


def test_search_exports_config_and_log(data, tmp_path):
    ctx = context(data, tmp_path / "run")
    result = run_search(tiny(lam=0.1), ctx)
    saved = BranchConfig.load(tmp_path / "run" / "branch_config.json")
    assert saved == result.config and list(saved.tasks) == TASKS
    lines = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["estimator"] == "exact"
    arch = [e for e in lines if e.get("phase") == "arch"]
    assert len(arch) == 3 and all(len(e["alpha"]) == 18 for e in arch)
    assert [e["tau"] for e in arch] == sorted((e["tau"] for e in arch), reverse=True)
    assert set(arch[0]["task_losses"]) == set(TASKS) and arch[0]["expected_madds"] > 0
    assert lines[-1]["event"] == "end" and lines[-1]["madds"] == result.info["madds"]


def _stopped_and_resumed(cfg, data, tmp_path, stop_at):
    """Run ``cfg`` once through and once stopped at ``stop_at`` then resumed; assert the final supergraphs
    are bit-identical and the exports equal; return both final checkpoints."""
    full = run_search(cfg, context(data, tmp_path / "full"))
    ctx = context(data, tmp_path / "parts")
    assert run_search(cfg, ctx, stop_at=stop_at) is None
    assert (tmp_path / "parts" / CHECKPOINT_NAME).is_file()
    ctx.resume = True
    resumed = run_search(cfg, ctx)
    a = torch.load(tmp_path / "full" / CHECKPOINT_NAME, weights_only=True)
    b = torch.load(tmp_path / "parts" / CHECKPOINT_NAME, weights_only=True)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    assert resumed.config == full.config
    return a, b


def test_resumed_search_equals_uninterrupted(data, tmp_path):
    a, b = _stopped_and_resumed(tiny(lam=0.5, hard=False, iterations=4), data, tmp_path, stop_at=2)
    drop = ("config", "warmup_cache")
    strip = [{k: v for k, v in e.items() if k not in drop} for e in a["log"]]
    assert strip == [{k: v for k, v in e.items() if k not in drop} for e in b["log"]]


def test_resume_without_checkpoint_is_a_config_error(data, tmp_path):
    with pytest.raises(ConfigError, match="no BMTAS checkpoint"):
        run_search(tiny(), context(data, tmp_path / "empty", resume=True))


def test_resume_with_other_settings_is_a_config_error(data, tmp_path):
    """A checkpoint belongs to its λ, seed …: resuming it with others names the setting; a run setting
    (the checkpoint cadence) may change."""
    cfg = tiny(lam=0.5, iterations=4)
    assert run_search(cfg, context(data, tmp_path / "run"), stop_at=2) is None
    with pytest.raises(ConfigError, match="lam=0.5, this run has lam=0.1"):
        run_search(tiny(lam=0.1, iterations=4), context(data, tmp_path / "run", resume=True))
    with pytest.raises(ConfigError, match="seed=0, this run has seed=1"):
        run_search(cfg, context(data, tmp_path / "run", resume=True, seed=1))
    assert run_search(tiny(lam=0.5, iterations=4, checkpoint_every=1),
                      context(data, tmp_path / "run", resume=True)) is not None


def test_warmup_cache_is_shared_across_lambdas(data, tmp_path):
    cache = tmp_path / "warm"
    ctx = context(data, tmp_path / "a")
    run_search(tiny(lam=0.0, warmup_cache=str(cache), iterations=2), ctx)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    result = run_search(tiny(lam=5.0, schedule="cosine", warmup_cache=str(cache), iterations=2),
                          context(data, tmp_path / "b"))
    assert list(cache.glob("*.pt")) == files and files[0].stat().st_mtime_ns == before
    start = json.loads(result.log_path.read_text().splitlines()[0])
    assert start["warmup_cache"] == str(files[0])
    # the key follows what the warm-up depends on, not λ or the schedule
    assert warmup_key(ctx, tiny(lam=1.0)) == warmup_key(ctx, tiny(lam=2.0, schedule="cosine"))
    assert warmup_key(ctx, tiny()) != warmup_key(ctx, tiny(warmup_iterations=3))
    assert warmup_key(ctx, tiny()) != warmup_key(context(data, tmp_path / "c", seed=1), tiny())


def test_too_small_training_set(data, tmp_path):
    with pytest.raises(ConfigError, match="too small"):
        run_search(tiny(batch_size=16), context(data, tmp_path / "x"))


@pytest.mark.slow
def test_lambda_grid_trades_madds_and_groups_related_tasks(data, tmp_path):
    """Growing λ never raises the exported MAdds: λ = 0 keeps one route per task, a large λ shares the
    first layers. (Which pair stays together longest at this 60-iteration budget is seed noise: it flips
    with floating-point summation order, so it is not asserted; benchmarks measure grouping over seeds.)"""
    madds, configs = [], []
    for lam in (0.0, 2.0, 50.0):
        cfg = tiny(lam=lam, resource_mode="normalized", iterations=60, warmup_iterations=20, batch_size=8,
                   arch_lr=0.15, weight_steps_per_arch=1, warmup_cache=str(tmp_path / "warm"))
        result = run_search(cfg, context(data, tmp_path / f"lam{lam}", seed=0))
        madds.append(result.info["madds"])
        configs.append(result.config)
    assert madds == sorted(madds, reverse=True) and madds[-1] < madds[0]
    assert configs[0].num_groups(17) == len(TASKS)
    assert configs[-1].num_groups(0) == 1


def test_cli_resume_continues_an_interrupted_search_bit_exactly(tmp_path, capsys, monkeypatch):
    """README: ``search`` resumes bit-exactly with ``--resume``. A CLI search is interrupted (Ctrl-C,
    raised at its 506th α update) after the checkpoint at step 500; ``--resume`` finishes it with the
    same architecture, log and final weights as an uninterrupted run."""
    from branchsweep.cli import main

    argv = ["search", "--method", "bmtas", "--dataset", "ltb-synthetic", "--activations", "bent,sin",
            "--tasks-per-activation", "1", "--train-samples", "40", "--val-samples", "8", "--width", "0.08",
            "--iterations", "520", "--warmup-iterations", "2", "--batch-size", "4", "--hard",
            "--weight-steps-per-arch", "1", "--arch-lr", "0.1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "full")]) == 0

    real_step, calls = torch.optim.Adam.step, {"n": 0}

    def interrupted_step(self, *args, **kwargs):  # Adam updates only α in BMTAS
        calls["n"] += 1
        if calls["n"] == 506:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupted_step)
    assert main([*argv, "--out", str(tmp_path / "cut")]) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)["step"] == 500
    assert not (tmp_path / "cut" / "branch_config.json").exists()
    assert main([*argv, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    for name in ("branch_config.json", "search_log.jsonl"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    a = torch.load(tmp_path / "full" / CHECKPOINT_NAME, weights_only=True)
    b = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)
    assert a["step"] == b["step"] == 520
    for key, value in a["model"].items():
        assert torch.equal(b["model"][key], value), key
    assert torch.equal(a["gen"], b["gen"]) and torch.equal(a["rng"], b["rng"])


def _record_search(monkeypatch, data, out, cfg):
    """Run ``cfg`` recording, in order, every α step ("a", whether Adam had state) and every search weight-optimiser step
    ("w", whether the stem's momentum buffer existed before it), and every forward pass's sample
    fingerprints tagged with the phase that ran it."""
    from branchsweep.search import bmtas

    events, seen, phase = [], [], ["warmup"]
    real_arch_step, real_sgd = bmtas.arch_step, bmtas.weight_optimizer
    calls = []

    def arch_step(*args, **kw):
        phase[0] = "arch"
        events.append(("a", bool(args[-1].state)))  # whether the α-Adam state existed before the step
        try:
            return real_arch_step(*args, **kw)
        finally:
            phase[0] = "weights"

    def sgd(model, cfg_, iterations):
        opt, sched = real_sgd(model, cfg_, iterations)
        calls.append(opt)
        if len(calls) == 1:  # the search's optimiser (created before the warm-up's)
            stem = next(model.stem.parameters())
            opt.register_step_pre_hook(lambda o, a, k: events.append(("w", "momentum_buffer" in o.state.get(stem, {}))))
        return opt, sched

    class Recording(bmtas.Supergraph):
        def forward(self, x, *a, **k):
            seen.extend((phase[0], round(float(v), 4)) for v in x.flatten(1).sum(1))
            return super().forward(x, *a, **k)

    monkeypatch.setattr(bmtas, "arch_step", arch_step)
    monkeypatch.setattr(bmtas, "weight_optimizer", sgd)
    monkeypatch.setattr(bmtas, "Supergraph", Recording)
    ctx = context(data, out)
    run_search(cfg, ctx)
    return ctx, events, seen


def test_phases_keep_theta_momentum_within_a_phase_and_reset_it_once_per_architecture_change(
        data, tmp_path, monkeypatch):
    """The paper's cycle: an α phase (one pass over the 20 % split: 8 samples / batch 4 = 2 α steps),
    then a θ phase (one pass over the 80 % split: 32 / 4 = 8 batches, one SGD step per task and batch).
    Momentum is cleared once per architecture change, so it is present at every θ step of a phase but
    the first. The α-Adam state restarts with every α phase (reference code)."""
    cfg = tiny(weight_steps_per_arch=None, iterations=10, lam=0.5)
    _, events, _ = _record_search(monkeypatch, data, tmp_path / "run", cfg)
    tasks = len(TASKS)
    alpha = [("a", False), ("a", True)]
    cycle = alpha + [("w", False)] + [("w", True)] * (8 * tasks - 1)
    tail = alpha + [("w", False)] + [("w", True)] * (2 * tasks - 1)  # iterations 8 and 9
    assert events == cycle + tail
    kept = tiny(weight_steps_per_arch=None, iterations=10, lam=0.5, reset_arch_optimizer=False)
    _, events, _ = _record_search(monkeypatch, data, tmp_path / "kept", kept)
    assert [e for e in events if e[0] == "a"] == [("a", False)] + [("a", True)] * 3


def test_interleaved_scheme_resets_momentum_after_every_alpha_step(data, tmp_path, monkeypatch):
    cfg = tiny(weight_steps_per_arch=2, iterations=6, lam=0.5)  # joint updates: one step per batch
    _, events, _ = _record_search(monkeypatch, data, tmp_path / "run", cfg)
    assert events == [("a", False), ("w", False), ("w", True), ("a", True), ("w", False), ("w", True),
                      ("a", True), ("w", False), ("w", True)]  # α-Adam state kept


@pytest.mark.parametrize("k", [None, 2])
def test_alpha_and_theta_see_disjoint_splits(data, tmp_path, monkeypatch, k):
    from branchsweep.search.bmtas import split_train

    cfg = tiny(weight_steps_per_arch=k, iterations=10, lam=0.5)
    ctx, _, seen = _record_search(monkeypatch, data, tmp_path / "run", cfg)
    arch_set, weight_set = split_train(ctx, cfg)
    prints = {name: {round(float(item["image"].sum()), 4) for item in subset}
              for name, subset in (("arch", arch_set), ("weights", weight_set))}
    assert not prints["arch"] & prints["weights"] and len(prints["arch"]) == 8 and len(prints["weights"]) == 32
    by_phase = {p: {v for q, v in seen if q == p} for p in ("warmup", "arch", "weights")}
    assert by_phase["arch"] and by_phase["arch"] <= prints["arch"]
    assert by_phase["weights"] and by_phase["weights"] <= prints["weights"]
    assert by_phase["warmup"] <= prints["weights"]  # the warm-up trains on the weight split too


def test_resumed_phase_search_equals_uninterrupted(data, tmp_path):
    """Stopping inside a θ phase and resuming replays the same α batches and θ steps."""
    _stopped_and_resumed(tiny(weight_steps_per_arch=None, lam=0.5, iterations=10), data, tmp_path, stop_at=9)


def _resizable(size=16, resolution=1.0, search_resolution=0.5):
    """synthetic-dense (size 16 = "full resolution") posing as a data set that rescales on load."""
    import dataclasses

    def make(factor):
        data = create_data(DataConfig(dataset="synthetic-dense", size=round(size * factor), train_samples=40,
                                      val_samples=8, seed=0))
        return dataclasses.replace(data, info={**data.info, "resolution": factor,
                                               "search_resolution": search_resolution}, rescale=make)
    return make(resolution)


def test_search_reads_the_paper_resolution_and_prices_at_full_resolution(tmp_path):
    from branchsweep.search.bmtas import pricing_spec, search_data

    full = _resizable()
    ctx = context(full, tmp_path / "run")
    result = run_search(tiny(lam=0.5), ctx)
    start = json.loads(result.log_path.read_text().splitlines()[0])
    assert start["search_input_shape"] == [3, 8, 8] and start["priced_input_shape"] == [3, 16, 16]
    # λ's meaning does not depend on how the data were loaded: a half-resolution copy prices the same
    half = full.rescale(0.5)
    spec_half = create_backbone("mobilenet_v2", width=0.1, input_size=8)
    assert pricing_spec(spec_half, half).input_shape == (3, 16, 16)
    assert search_data(context(half, tmp_path / "h"), tiny()) is half  # already resized: read as given
    assert search_data(ctx, tiny(search_resolution=1.0)) is full  # the 'w/o resizing' ablation
    with pytest.raises(ConfigError, match="cannot be rescaled"):
        plain = create_data(DataConfig(dataset="synthetic-dense", size=16, train_samples=40, val_samples=8))
        search_data(context(plain, tmp_path / "p"), tiny(search_resolution=0.5))


@pytest.mark.parametrize("phases", [True, False])
def test_warmup_steps_once_per_task_at_a_constant_lr_with_phases(data, tmp_path, phases):
    """With the paper's phases (sequential task updates) the warm-up steps SGD once per task and batch at
    the constant lr 0.005, as the reference's warm-up does (one step per task, constant lr); the
    interleaved scheme keeps one joint step per batch with poly over the warm-up."""
    from branchsweep.loop import Runtime
    from branchsweep.search.bmtas import warm_up
    from branchsweep.search.supergraph import Supergraph

    ctx = context(data, tmp_path / "w")
    cfg = tiny(warmup_iterations=3, **({"weight_steps_per_arch": None} if phases else {}))
    assert cfg.sequential is phases and cfg.warmup_poly is (not phases)
    model = Supergraph(ctx.spec, list(ctx.tasks))
    lrs = []
    real_step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    torch.optim.SGD.step = spy
    try:
        warm_up(model, ctx, cfg, data.split("train", train=True), Runtime("cpu"))
    finally:
        torch.optim.SGD.step = real_step
    if phases:
        assert lrs == [0.005] * (3 * len(ctx.tasks))
    else:
        assert lrs == pytest.approx([0.005 * (1 - it / 3) ** 0.9 for it in range(3)])
    # the warm-up cache tells the two apart
    joint_poly = tiny(warmup_iterations=3, weight_steps_per_arch=None, task_updates="joint", warmup_schedule="poly")
    assert (warmup_key(ctx, cfg) != warmup_key(ctx, joint_poly)) is phases
