"""Every entry script in sweeps/ builds a valid sweep config (full and --smoke) without starting Ray:
the config validates, and so does every trial it can launch (baselines, the preset's points and
samples of its search space), on the data set and backbone it names.

The real data sets are replaced by the fixture trees of tests/data, written in their published
layouts, so a preset that names a task, backbone or option the data set does not have fails here.
The embedded sweep also runs end to end (tests/sweep/test_embedded_sweep.py).
"""

from __future__ import annotations

import dataclasses

import pytest
from conftest import SWEEPS, sweep_scripts
from data.fixtures import write_celeba, write_nyud, write_pascal_context
from data.taskonomy_fixture import write_taskonomy

from branchsweep.data import create_data
from branchsweep.factory import build_spec
from branchsweep.sweep import to_trial_config

SCRIPTS = sorted(p.stem for p in SWEEPS.glob("*.py") if not p.stem.startswith("_") and p.stem != "fake_autoscale")
FIXTURES = {"pascal-context": write_pascal_context, "nyud": write_nyud, "celeba": write_celeba}
FIXTURES["taskonomy"] = write_taskonomy


@pytest.fixture(scope="module")
def sweep_modules():
    with sweep_scripts(*SCRIPTS) as modules:
        yield modules


def test_every_documented_script_is_found():
    assert {"synthetic_pareto", "pascal_pareto", "nyud_pareto", "celeba_ltb"} <= set(SCRIPTS)


def _sampled_params(space, count: int) -> list[dict]:
    """``count`` parameter sets drawn from the space's define-by-run function, as Optuna would."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(count):
        trial = study.ask()
        space.define_by_run(trial)
        out.append(dict(trial.params))
    return out


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("smoke", [False, True])
def test_preset_builds_a_valid_config(sweep_modules, script, smoke, tmp_path):
    from _common import build_config, parser

    module = sweep_modules[script]
    preset = module.SMOKE if smoke else module.PRESET
    argv = ["--out", str(tmp_path / "run")] + (["--smoke"] if smoke else [])
    write = FIXTURES.get(preset.data.dataset)
    if write is not None:
        argv += ["--root", str(write(tmp_path / "data"))]
    cfg = build_config(preset, parser(preset, module.__doc__).parse_args(argv))
    assert cfg.out == tmp_path / "run" and cfg.num_trials == preset.num_trials >= 1
    if smoke:  # smoke runs must fit a CPU-only laptop
        assert cfg.gpus_per_trial == 0 and cfg.trial_settings(False).resolved_backend == "direct"
    data = create_data(cfg.base.data)
    tasks = data.select_tasks(cfg.base.data.tasks)
    spec = build_spec(dataclasses.replace(cfg.base.model, pretrained=None), data)
    assert spec.num_layers >= 2
    # Every trial this sweep can launch validates (TrialConfig.validate checks the method's settings):
    # the baselines, the preset's points and samples of the space.
    launched = [{"method": b} for b in cfg.baselines]
    trials = [to_trial_config(p, cfg.base, baseline=True) for p in launched]
    trials += [to_trial_config(p, cfg.base) for p in [*cfg.points, *_sampled_params(cfg.space, 8)]]
    assert {t.method for t in trials} == {*cfg.baselines, *cfg.space.methods}  # (seeded samples)
    for trial in trials:
        assert trial.data.tasks == cfg.base.data.tasks and len(tasks) >= 2
        if trial.method == "ltb":
            from branchsweep.search.ltb import resolve_child_nodes

            nodes = resolve_child_nodes(trial.method_config(None).child_nodes, spec.num_layers, len(tasks))
            assert len(nodes) == spec.num_layers and nodes[-1] == len(tasks)


def test_local_beside_a_cluster_address_exits_2_with_one_line(sweep_modules, monkeypatch, capsys, tmp_path):
    from _common import main

    module = sweep_modules["synthetic_pareto"]
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    code = main(module.PRESET, module.SMOKE, argv=["--smoke", "--local", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: --local starts a private Ray instance"), err
    assert not (tmp_path / "run").exists()


#: Sweep-script user mistakes and the one line each must end in (exit 2, no traceback, nothing started).
SWEEP_MISTAKES = [
    (["--resume"], "--resume needs the sweep's prefix or run folder"),
    (["--resume", "{tmp}/nothing"], "holds no sweep to resume (no sweep.json)"),
    (["--time-budget", "0"], "--time-budget must be > 0 seconds"),
    (["--num-trials", "0"], "--num-trials and --concurrency must be >= 1"),
    (["--max-failures", "-1"], "--max-failures must be >= 0"),
    (["--backend", "direct", "--gpus-per-trial", "1"], "GPU trials need --backend train or auto"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial must be > 0"),
    (["--plugin", "no_such_plugin_module"], "no_such_plugin_module"),
    (["--latency-threads", "2"], "--latency-threads needs --cost latency or --cost both"),
    (["--cost", "latency", "--latency-batch", "0"], "latency batch must be an integer >= 1"),
]


@pytest.mark.parametrize("argv, message", SWEEP_MISTAKES)
def test_sweep_flag_mistakes_exit_2_with_one_line(sweep_modules, capsys, tmp_path, argv, message):
    from _common import main

    module = sweep_modules["synthetic_pareto"]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = ["--out", str(tmp_path / "run")] if argv != ["--resume"] else []
    code = main(module.PRESET, module.SMOKE, argv=["--smoke", *out, *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "run").exists()


def test_main_job_searches_the_space_of_its_exhaustive_table(sweep_modules, tmp_path):
    """The main job and the exhaustive table synthetic-dense stay in step: same recipe (what the report
    reads back from sweep.json included) and same branch points, so every searched tree can be looked up."""
    from _common import build_config, parser

    from branchsweep.commands.report import sweep_recipe
    from branchsweep.sweep.record import sweep_record
    from branchsweep.truth import preset, recipe_hash

    job = sweep_modules["synthetic_pareto"]
    table = preset("synthetic-dense")
    assert recipe_hash(job.PRESET.data, job.PRESET.model, job.PRESET.train) == recipe_hash(table.data, table.model,
                                                                                           table.train)
    assert job.PRESET.branch_points == job.SMOKE.branch_points == table.branch_points
    assert job.RELATED_BRANCH_AT == table.designed_at and job.RELATED_BRANCH_AT in table.branch_points
    assert table.search == job.PRESET.search_defaults  # the searches scored against the table are the main job's

    def config(*flags: str):
        return build_config(job.PRESET, parser(job.PRESET, job.__doc__).parse_args(["--out", str(tmp_path / "run"), *flags]))

    cfg = config()
    assert cfg.base.branch_points == table.branch_points
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "sweep.json").write_bytes(sweep_record(cfg))
    assert recipe_hash(*sweep_recipe(run_dir)) == recipe_hash(table.data, table.model, table.train)
    # --branch-points overrides the preset's ('all': every layer)
    assert config("--branch-points", "1,2").base.branch_points == (1, 2)
    assert config("--branch-points", "all").base.branch_points is None
