"""Every entry script in sweeps/ builds a valid sweep config (full and --smoke) without starting Ray.

The real data sets are replaced by the fixture trees of tests/data, written in their published
layouts, so a preset that names a task, backbone or option the data set does not have fails here.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from data.fixtures import write_celeba, write_nyud, write_pascal_context

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
SCRIPTS = sorted(p.stem for p in SWEEPS.glob("*.py") if not p.stem.startswith("_") and p.stem != "fake_autoscale")
FIXTURES = {"pascal-context": write_pascal_context, "nyud": write_nyud, "celeba": write_celeba}


@pytest.fixture(scope="module")
def sweep_modules():
    sys.path.insert(0, str(SWEEPS))
    try:
        yield {name: importlib.import_module(name) for name in SCRIPTS}
    finally:
        sys.path.remove(str(SWEEPS))


def test_every_documented_script_is_found():
    assert {"synthetic_pareto", "pascal_pareto", "nyud_pareto", "celeba_ltb"} <= set(SCRIPTS)


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
    assert cfg.num_trials >= 1 and cfg.out == tmp_path / "run"
    assert cfg.base.num_layers >= 2
    assert (cfg.gpus_per_trial == 0) if smoke else True  # smoke runs must fit a CPU-only laptop
