"""The BMTAS table presets (sweeps/bmtas_tables.py) and the paper-scale Pareto presets follow supplement A:
batch size per backbone in search and retraining, NYUD-v2 iterations halved, λ ranges that contain the
λ points, search at ½ (PASCAL-Context) / ⅔ (NYUD-v2) resolution priced and retrained at full
resolution. The table presets search with the paper's resource loss at the paper's λ; the Pareto
presets with the exact loss at the mapped λ. The table smoke variant runs end to end on a CPU (no
Ray) on the fixture data, and so do Table 3's Permutations and Vanilla controls."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from conftest import sweep_scripts
from data.fixtures import write_nyud, write_pascal_context

from branchsweep.data import create_data
from branchsweep.factory import build_spec
from branchsweep.search import SearchContext
from branchsweep.search.bmtas import pricing_spec, search_data
from branchsweep.sweep import to_trial_config

FIXTURES = {"pascal-context": write_pascal_context, "nyud": write_nyud}


@pytest.fixture(scope="module")
def scripts():
    with sweep_scripts("_common", "bmtas_tables", "pascal_pareto", "nyud_pareto") as modules:
        yield modules


def grow(root: Path, split_file: Path, copies: int) -> Path:
    """Replicate every training image of a fixture tree (all its files, under new ids) ``copies`` times."""
    ids = split_file.read_text().split()
    new = []
    for image_id in ids:
        files = [f for f in root.rglob("*") if f.is_file() and f.stem == image_id]
        for c in range(copies):
            copy_id = f"{image_id}c{c}"
            for f in files:
                shutil.copy(f, f.with_name(copy_id + f.suffix))
            new.append(copy_id)
    split_file.write_text("\n".join(ids + new) + "\n")
    return root


def _presets(scripts):
    tables = scripts["bmtas_tables"].PRESETS
    return {**{f"table:{k}": v for k, v in tables.items()},
            "pascal_pareto": (scripts["pascal_pareto"].PRESET, scripts["pascal_pareto"].SMOKE),
            "nyud_pareto": (scripts["nyud_pareto"].PRESET, scripts["nyud_pareto"].SMOKE)}


def test_paper_batch_sizes_iterations_and_lambda_ranges(scripts):
    tables = scripts["bmtas_tables"]
    for name, (preset, _) in _presets(scripts).items():
        batch = {"mobilenet_v2": 16, "resnet50": 8}[preset.model.backbone]
        bmtas = preset.search_defaults["bmtas"]
        assert preset.train.batch_size == bmtas["batch_size"] == batch, name
        iterations = 20000 if preset.data.dataset == "nyud" else 40000  # halved on NYUD-v2 (supplement A)
        assert preset.train.iterations == bmtas["iterations"] == iterations, name
        assert preset.model.pretrained == "imagenet" and not preset.data.options, name  # full resolution
        lo, hi = preset.space.ranges["bmtas"]["lam"]
        lams = [p["bmtas.lambda"] for p in preset.points]
        assert all(lo <= lam <= hi for lam in lams if lam > 0), name
    assert [p["bmtas.lambda"] for p in scripts["nyud_pareto"].PRESET.points] == tables.mapped("table2")
    assert [p["bmtas.lambda"] for p in scripts["pascal_pareto"].PRESET.points] == tables.mapped("table1")
    # λ = 2·T·λ_paper·ρ, ordered BMTAS-1 (cheapest) to BMTAS-3
    assert tables.mapped("table1") == sorted(tables.mapped("table1"), reverse=True)
    for name in ("nyud_pareto", "pascal_pareto"):  # the exact loss (the default estimator)
        assert "resource_estimator" not in scripts[name].PRESET.search_defaults["bmtas"]
    # the table presets: the paper's resource loss and its λ as published (Tables 1, 2, S2; Table 3: BMTAS-2)
    published = {"table1": [0.1, 0.05, 0.02], "table2": [5e-3, 1e-3, 2e-4], "tableS2": [0.02, 0.005, 0.001],
                 "table3-no-resource": [0.0], "table3-no-warmup": [0.05], "table3-no-resizing": [0.05],
                 "table3-controls": [0.05]}
    assert set(published) == set(tables.PRESETS)
    for name, (preset, smoke) in tables.PRESETS.items():
        assert [p["bmtas.lambda"] for p in preset.points] == published[name], name
        for p in (preset, smoke):
            assert p.search_defaults["bmtas"]["resource_estimator"] == "paper", name
    assert tables.PRESETS["table3-no-resource"][0].points[0]["bmtas.lambda"] == 0.0
    assert tables.PRESETS["table3-no-warmup"][0].search_defaults["bmtas"]["warmup_iterations"] == 0
    assert tables.PRESETS["table3-no-resizing"][0].search_defaults["bmtas"]["search_resolution"] == 1.0


@pytest.mark.parametrize("name", ["table:table1", "table:table2", "table:tableS2", "table:table3-no-resource",
                                  "table:table3-no-warmup", "table:table3-no-resizing", "table:table3-controls",
                                  "pascal_pareto", "nyud_pareto"])
def test_search_reads_reduced_resolution_and_prices_and_retrains_at_full(scripts, name, tmp_path):
    from _common import build_config, parser

    preset = _presets(scripts)[name][0]
    root = FIXTURES[preset.data.dataset](tmp_path / "data")
    cfg = build_config(preset, parser(preset, None).parse_args(["--out", str(tmp_path / "run"), "--root", str(root)]))
    trial = to_trial_config(cfg.points[0], cfg.base)
    data = create_data(trial.data)  # what run_trial retrains and prices on
    spec = build_spec(dataclasses.replace(trial.model, pretrained=None, width=0.25), data)
    full = {"pascal-context": 512, "nyud": 560}[preset.data.dataset]
    # NYUD-v2's 425×560 images are trained as padded 560² squares and priced at 425×560 (paper, Table 2)
    priced = {"pascal-context": (3, 512, 512), "nyud": (3, 425, 560)}[preset.data.dataset]
    assert data.input_shape == (3, full, full) and spec.input_shape == priced
    ctx = SearchContext(data=data, spec=spec, tasks=data.select_tasks(trial.data.tasks), out_dir=tmp_path / "s")
    searched = search_data(ctx, trial.method_config(None))
    expected = {"pascal-context": 256, "nyud": 373}[preset.data.dataset]
    if "no-resizing" in name:
        expected = full
    assert searched.input_shape == (3, expected, expected)
    assert pricing_spec(spec, data).input_shape == priced


@pytest.mark.slow
def test_table1_smoke_runs_a_bmtas_trial_on_a_cpu(scripts, tmp_path):
    """The smoke variant of Table 1 on a 20-image PASCAL_MT fixture: BMTAS-1 searched at half
    resolution, priced, retrained and evaluated at the smoke's full resolution (no Ray)."""
    from _common import build_config, parser

    from branchsweep.arch import BranchConfig
    from branchsweep.madds import madds_table
    from branchsweep.pipeline import SweepCaches, run_trial

    _, smoke = scripts["bmtas_tables"].PRESETS["table1"]
    root = write_pascal_context(tmp_path / "data")
    grow(root, root / "ImageSets" / "Context" / "train.txt", 9)
    cfg = build_config(smoke, parser(smoke, None).parse_args(["--out", str(tmp_path / "run"), "--root", str(root),
                                                              "--smoke"]))
    trial = to_trial_config(cfg.points[0], cfg.base)
    row = run_trial(trial, tmp_path / "trial", SweepCaches(tmp_path / "cache"))
    data = create_data(trial.data)
    spec = build_spec(trial.model, data)
    table = madds_table(spec, data.select_tasks(trial.data.tasks), cache_dir=tmp_path / "cache" / "madds")
    names = trial.data.tasks
    assert table.madds(BranchConfig.shared(names, 18)) <= row["madds"] <= table.madds(BranchConfig.single(names, 18))
    assert 0 <= row["semseg/mIoU"] <= 100 and row["params"] > 0
    log = (tmp_path / "trial" / "search" / "search_log.jsonl").read_text().splitlines()[0]
    assert '"search_input_shape": [3, 32, 32]' in log and '"priced_input_shape": [3, 64, 64]' in log


def test_table3_controls_preset_builds_and_runs_five_permutations_and_a_vanilla_tree(scripts, tmp_path):
    """Table 3's "Permutations" (five runs) and "Vanilla": the controls stage of the ``table3-controls``
    preset turns the searched BMTAS-2 tree into five distinct permuted trees and one vanilla tree at its
    MAdds, and the smoke variant retrains and evaluates them on the fixture (no Ray). The searched tree
    is given (a smoke search on the fixture may find a tree with nothing to permute)."""
    from _common import build_config, parser

    from branchsweep.arch import BranchConfig
    from branchsweep.madds import madds_table
    from branchsweep.pipeline import SweepCaches, run_trial
    from branchsweep.search.baselines import vanilla_tree
    from branchsweep.sweep.controls import control_points

    preset, smoke = scripts["bmtas_tables"].PRESETS["table3-controls"]
    assert preset.controls == smoke.controls == ("permuted", "vanilla") and preset.permutations == 5
    root = write_pascal_context(tmp_path / "data")
    grow(root, root / "ImageSets" / "Context" / "train.txt", 3)
    cfg = build_config(smoke, parser(smoke, None).parse_args(["--out", str(tmp_path / "run"), "--root", str(root),
                                                              "--smoke"]))
    assert cfg.controls == ("permuted", "vanilla") and cfg.permutations == 5
    tasks = list(cfg.base.data.tasks)
    semseg, parts, sal, normals, edge = tasks
    tree = BranchConfig.from_groups(tasks, [[tasks]] * 8 + [[[semseg, parts], [sal, normals, edge]]] * 5
                                    + [[[semseg], [parts], [sal, normals], [edge]]] * 3 + [[[t] for t in tasks]] * 2)
    searched = to_trial_config(cfg.points[0], cfg.base)
    assert searched.method == "bmtas" and searched.search["lam"] == 0.05
    assert searched.search["resource_estimator"] == "paper"
    data = create_data(searched.data)
    table = madds_table(build_spec(searched.model, data), data.select_tasks(tasks), cache_dir=tmp_path / "cache" / "madds")
    row = {"trial_id": "bmtas-2", "label": "bmtas lambda=0.05", "method": "bmtas", "status": "ok",
           "madds": table.madds(tree), "delta_m": -1.0, "arch_hash": tree.arch_hash(), "arch_json": tree.to_json()}
    points = control_points([row], cfg.controls, cfg.permutations, cfg.base.search_seed)
    kinds = [p["method"] for p in points]
    assert kinds.count("permuted") == 5 and kinds.count("vanilla") == 1
    caches = SweepCaches(tmp_path / "cache")
    permuted_trees = set()
    for i, point in enumerate(points):
        trial = to_trial_config(point, cfg.base)
        out = run_trial(trial, tmp_path / f"control{i}", caches)
        assert out["baseline_of"] == "bmtas-2" and 0 <= out["semseg/mIoU"] <= 100
        result = BranchConfig.load(tmp_path / f"control{i}" / "search" / "branch_config.json")
        if point["method"] == "permuted":
            assert out["madds"] == row["madds"] and result != tree  # same cost, other task-to-branch pairing
            permuted_trees.add(result.arch_hash())
        else:  # the vanilla tree closest in MAdds to BMTAS-2's
            assert any(result == vanilla_tree(tasks, 18, k) for k in range(19))
    assert len(permuted_trees) == 5
