"""The BMTAS paper's affinity-based comparators as search methods: ``fafs`` (Lu et al.) and ``bmn``
(Vandenhende et al.), branchsweep/search/fafs.py and branchsweep/search/bmn.py."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from branchsweep.arch import BranchConfig
from branchsweep.cli import main
from branchsweep.config import DataConfig, ModelConfig
from branchsweep.data import create_data
from branchsweep.errors import ConfigError
from branchsweep.factory import build_spec
from branchsweep.madds import madds_table
from branchsweep.search import SEARCH_METHODS, SearchContext
from branchsweep.search import bmn as bmn_mod
from branchsweep.search import fafs as fafs_mod
from branchsweep.search.baselines import SegmentTable
from branchsweep.search.bmn import best_tree, rdm, rsa_dissimilarity, tree_cost
from branchsweep.search.fafs import (
    affinity_matrix,
    chain_madds,
    difficulty,
    fafs_candidates,
    fafs_chain,
    groupings,
)
from branchsweep.tree_space import enumerate_trees, respects, segment_partitions

TASKS = ["bent_0", "square_0", "sinc_0"]
POINTS = (1, 2)
TINY = ["--dataset", "ltb-synthetic", "--tasks", ",".join(TASKS), "--train-samples", "64",
        "--val-samples", "16", "--backbone", "mlp", "--width", "0.16", "--no-progress"]
SPLIT_TREE = BranchConfig.from_groups(TASKS, [[TASKS], [TASKS], [["bent_0", "square_0"], ["sinc_0"]],
                                              [["bent_0", "square_0"], ["sinc_0"]]]).to_json(indent=None)
FAST = {"pretrain_iterations": 4, "affinity_images": 16}


@pytest.fixture(scope="module")
def tiny():
    data = create_data(DataConfig(dataset="ltb-synthetic", tasks=TASKS, train_samples=64, val_samples=16))
    spec = build_spec(ModelConfig(backbone="mlp", width=0.16), data)
    return data, spec, data.select_tasks(TASKS)


def run(name, settings, tiny, out, seed=0, points=POINTS):
    data, spec, tasks = tiny
    method = SEARCH_METHODS.get(name)
    ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=out, seed=seed, progress=False, branch_points=points)
    return method.run(method.make_config({**FAST, **settings}), ctx)


def costs(tiny, points=POINTS):
    data, spec, tasks = tiny
    table = madds_table(spec, tasks)
    seg = SegmentTable.of(table, points)
    return table, seg.stem + sum(seg.heads.values()), list(seg.layers)


def pairs_affinity() -> np.ndarray:
    """Tasks a, b find the same examples hard; so do c, d; the pairs disagree half the time."""
    rng = np.random.default_rng(0)
    hard_ab, hard_cd = rng.random(200) > 0.5, rng.random(200) > 0.5
    noise = rng.random((4, 200)) * 0.1
    losses = np.stack([hard_ab, hard_ab, hard_cd, hard_cd]).astype(float) + 1.0 + noise
    return affinity_matrix(difficulty(losses))


# ------------------------------------------------------------------------------------------- fafs
def test_difficulty_and_affinity_by_hand():
    losses = [[1.0, 5.0, 1.0, 5.0], [2.0, 6.0, 2.0, 6.0], [5.0, 1.0, 5.0, 1.0]]
    e = difficulty(losses)
    assert e.tolist() == [[0, 1, 0, 1], [0, 1, 0, 1], [1, 0, 1, 0]]
    a = affinity_matrix(e)
    assert a.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    # an unlabelled example (loss exactly 0) is left out of its task's pairs
    assert affinity_matrix(difficulty([[1.0, 5.0, 0.0], [1.0, 5.0, 4.0]]))[0, 1] == 1.0  # 2/3 if it counted


def test_fafs_groups_the_similar_pairs():
    a = pairs_affinity()
    assert a[0, 1] == a[2, 3] == 1.0 and abs(a[0, 2] - 0.5) < 0.15
    assert groupings(a)[2][0] == ((0, 1), (2, 3))
    two = [chain for _, _, chain in fafs_candidates(a, [0.3, 0.7]) if len(chain[-1]) == 2]
    assert two and all(chain[-1] == ((0, 1), (2, 3)) for chain in two)
    # greedy from the last segment: the first segment only coarsens the last one
    for _, _, chain in fafs_candidates(a, [0.3, 0.7]):
        owner = {t: i for i, g in enumerate(chain[0]) for t in g}
        assert all(len({owner[t] for t in g}) == 1 for g in chain[1])


def test_fafs_candidates_are_every_tree_of_the_greedy():
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(2, 5)
        x = np.array([[rng.random() for _ in range(n)] for _ in range(n)])
        a = (x + x.T) / 2
        np.fill_diagonal(a, 1.0)
        units = [rng.random() + 0.05 for _ in range(rng.randint(1, 3))]
        pieces = fafs_candidates(a, units)
        assert pieces[0][0] == 0.0 and pieces[-1][1] == float("inf")
        assert all(p[1] == q[0] for p, q in zip(pieces, pieces[1:]))  # contiguous in λ
        for lo, hi, chain in pieces:
            mid = (lo + hi) / 2 if hi != float("inf") else 2 * lo + 1
            assert fafs_chain(a, units, mid) == chain
        found = {tuple(c) for _, _, c in pieces}
        for lam in [0.0, 0.01, 0.1, 0.5, 1, 2, 5, 50, 1e4]:
            assert tuple(fafs_chain(a, units, lam)) in found


def test_fafs_budget_is_the_closest_greedy_tree(tiny, tmp_path):
    table, fixed, seg = costs(tiny)
    for i, target in enumerate([8800.0, 9280.0, 9700.0, 1e9]):
        result = run("fafs", {"target_madds": target}, tiny, tmp_path / str(i))
        chain = segment_partitions(result.config, POINTS)
        assert respects(result.config, POINTS)
        assert chain_madds(fixed, seg, chain) == table.madds(result.config) == result.info["madds"]
        options = [chain_madds(fixed, seg, c) for _, _, c in
                   fafs_candidates(np.array(result.info["affinity"]), [c / sum(seg) for c in seg])]
        assert abs(result.info["madds"] - target) == min(abs(m - target) for m in options)
        assert result.info["target_madds"] == target
    assert result.info["madds"] == max(options)  # a huge target: the greedy's costliest tree


def test_fafs_separation_weight_extremes(tiny, tmp_path):
    shared = run("fafs", {"separation_weight": 0.0}, tiny, tmp_path / "a").config
    assert shared == BranchConfig.shared(TASKS, 4)
    finest = run("fafs", {"separation_weight": 1e6}, tiny, tmp_path / "b").config
    assert finest == BranchConfig.from_groups(TASKS, [[TASKS]] + [[[t] for t in TASKS]] * 3)


def test_fafs_is_deterministic_for_a_seed(tiny, tmp_path):
    one = run("fafs", {"like": SPLIT_TREE}, tiny, tmp_path / "a", seed=3)
    two = run("fafs", {"like": SPLIT_TREE}, tiny, tmp_path / "b", seed=3)
    assert one.config == two.config and one.info["affinity"] == two.info["affinity"]
    log = [json.loads(line) for line in (tmp_path / "a" / "search_log.jsonl").read_text().splitlines()]
    assert log[0]["header"]["method"] == "fafs" and log[1]["groups"] == one.info["groups"]


def test_affinity_cache_shares_one_pretraining(tiny, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    for name, settings in [("fafs", {"target_madds": 9280.0}), ("bmn", {"target_madds": 9280.0})]:
        first = run(name, {**settings, "affinity_cache": cache}, tiny, tmp_path / f"{name}1")
        assert first.info["affinity_cached"] is False

        def no_training(*args, **kwargs):
            raise AssertionError("the cached affinity should have been used")

        with monkeypatch.context() as m:
            m.setattr(fafs_mod, "pretrain", no_training)
            m.setattr(bmn_mod, "pretrain", no_training)
            again = run(name, {**settings, "affinity_cache": cache}, tiny, tmp_path / f"{name}2")
            assert again.info["affinity_cached"] is True and again.config == first.config
            with pytest.raises(AssertionError, match="cached affinity"):  # another seed is another key
                run(name, {**settings, "affinity_cache": cache}, tiny, tmp_path / f"{name}3", seed=5)
    assert SEARCH_METHODS.get("fafs").sweep_settings(tmp_path) == {"affinity_cache": str(tmp_path / "affinity")}


# -------------------------------------------------------------------------------------------- bmn
def test_rsa_finds_the_similar_pairs():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    feats = [z1 @ rng.normal(size=(8, 20)), z1 @ rng.normal(size=(8, 20)) + 0.01 * rng.normal(size=(30, 20)),
             z2 @ rng.normal(size=(8, 20)), z2 @ rng.normal(size=(8, 20)) + 0.01 * rng.normal(size=(30, 20))]
    d = rsa_dissimilarity([rdm(f) for f in feats])
    assert d.shape == (4, 4) and np.allclose(np.diag(d), 0) and np.allclose(d, d.T)
    assert max(d[0, 1], d[2, 3]) < min(d[0, 2], d[0, 3], d[1, 2], d[1, 3])
    # a budget of two branches in the last of two segments: {a, b} and {c, d}
    pick = best_tree([d, d], [10.0, 10.0], fixed=0.0, cap=30.0)
    assert pick.chain == [((0, 1, 2, 3),), ((0, 1), (2, 3))] and pick.exhaustive and pick.madds == 30.0
    assert rdm(feats[0], "spearman").shape == (30, 30)


def test_best_tree_is_the_best_of_every_tree():
    rng = random.Random(1)
    names = ["a", "b", "c", "d"]
    points, layers = [1, 2, 3], 4
    trees = enumerate_trees(names, points, layers)
    for _ in range(15):
        ds = []
        for _ in points:
            x = np.array([[rng.random() * 2 for _ in names] for _ in names])
            d = (x + x.T) / 2
            np.fill_diagonal(d, 0.0)
            ds.append(d)
        seg, fixed = [rng.randint(1, 9) for _ in points], 5
        how = rng.choice(["max", "mean"])
        chains = [segment_partitions(t, points) for t in trees]
        scored = [(tree_cost(ds, c, how), chain_madds(fixed, seg, c)) for c in chains]
        lo_m, hi_m = min(m for _, m in scored), max(m for _, m in scored)
        cap = rng.uniform(lo_m, hi_m)
        floor = rng.choice([0.0, cap * 0.8])
        pick = best_tree(ds, seg, fixed, cap, floor, how)
        feasible = [(c, m) for c, m in scored if floor <= m <= cap]
        if not feasible:
            assert pick is None
            continue
        assert pick.exhaustive and floor <= pick.madds <= cap
        assert abs(pick.cost - min(c for c, _ in feasible)) < 1e-9
        # the beam search, forced, finds a feasible tree at least as cheap as every tree it could keep
        beam = best_tree(ds, seg, fixed, cap, floor, how, max_trees=1, beam_width=500)
        assert not beam.exhaustive and abs(beam.cost - pick.cost) < 1e-9


def test_bmn_budget_caps_the_madds(tiny, tmp_path):
    table, fixed, seg = costs(tiny)
    trees = enumerate_trees(TASKS, POINTS, 4)
    for i, target in enumerate([8768.0, 9300.0, 10000.0]):
        result = run("bmn", {"target_madds": target}, tiny, tmp_path / str(i))
        assert respects(result.config, POINTS) and result.info["exhaustive"]
        assert result.info["madds"] == table.madds(result.config) <= target
        ds = [np.array(d) for d in result.info["dissimilarity"]]
        best = min(tree_cost(ds, segment_partitions(t, POINTS)) for t in trees if table.madds(t) <= target)
        assert abs(result.info["cost"] - best) < 1e-9
    banded = run("bmn", {"target_madds": 9536.0, "tolerance": 0.01}, tiny, tmp_path / "band")
    assert abs(banded.info["madds"] - 9536.0) <= 0.01 * 9536.0
    assert run("bmn", {"like": SPLIT_TREE}, tiny, tmp_path / "like").info["target_madds"] == 9280.0
    with pytest.raises(ConfigError, match="the Shared tree already has"):
        run("bmn", {"target_madds": 100.0}, tiny, tmp_path / "low")
    with pytest.raises(ConfigError, match="raise --tolerance"):
        run("bmn", {"target_madds": 9000.0, "tolerance": 0.01}, tiny, tmp_path / "gap")


def test_bmn_is_deterministic_and_reads_each_segment_end(tiny, tmp_path):
    one = run("bmn", {"like": SPLIT_TREE}, tiny, tmp_path / "a", seed=2)
    two = run("bmn", {"like": SPLIT_TREE}, tiny, tmp_path / "b", seed=2)
    assert one.config == two.config and one.info["dissimilarity"] == two.info["dissimilarity"]
    assert one.info["rsa_layers"] == [1, 3]  # segments [1, 2) and [2, 4) end at layers 1 and 3
    assert len(one.info["affinity"]) == 2 and len(one.info["affinity"][0]) == len(TASKS)


def test_comparators_run_on_dense_tasks(tiny_dense, tmp_path):
    spec = build_spec(ModelConfig(backbone="convnet", width=0.25), tiny_dense)
    tasks = tiny_dense.select_tasks(["semseg", "sal", "depth"])
    for name in ("fafs", "bmn"):
        ctx = SearchContext(data=tiny_dense, spec=spec, tasks=tasks, out_dir=tmp_path / name, progress=False)
        method = SEARCH_METHODS.get(name)
        shared = madds_table(spec, tasks).madds(BranchConfig.shared([t.name for t in tasks], spec.num_layers))
        result = method.run(method.make_config({"target_madds": 1.3 * shared, "pretrain_iterations": 2,
                                                "affinity_images": 8, "batch_size": 4}), ctx)
        assert (tmp_path / name / "branch_config.json").is_file()
        assert np.isfinite(np.array(result.info["affinity"], dtype=float)).all()


# ------------------------------------------------------------------------------------ both: settings
@pytest.mark.parametrize(("name", "settings", "message"), [
    ("fafs", {}, "fafs: give exactly one of --target-madds, --like, --separation-weight (got none)"),
    ("fafs", {"target_madds": 1.0, "separation_weight": 1.0}, "give exactly one of"),
    ("fafs", {"separation_weight": -1.0}, "--separation-weight must be >= 0"),
    ("fafs", {"target_madds": 1.0, "difficulty_threshold": "mode"},
     "--difficulty-threshold must be one of mean, median"),
    ("fafs", {"target_madds": 1.0, "affinity_images": 1}, "--affinity-images must be >= 2"),
    ("fafs", {"target_madds": 1.0, "pretrain_iterations": 0}, "--pretrain-iterations must be > 0"),
    ("bmn", {}, "bmn: give exactly one of --target-madds, --like (got none)"),
    ("bmn", {"target_madds": -5.0}, "--target-madds must be > 0"),
    ("bmn", {"target_madds": 1.0, "tolerance": 1.5}, "--tolerance must be in (0, 1)"),
    ("bmn", {"target_madds": 1.0, "group_cost": "min"}, "--group-cost must be one of max, mean"),
    ("bmn", {"target_madds": 1.0, "rdm_correlation": "kendall"}, "--rdm-correlation must be one of"),
    ("bmn", {"target_madds": 1.0, "affinity_images": 2}, "--affinity-images must be >= 3"),
    ("bmn", {"target_madds": 1.0, "beam_width": 0}, "--beam-width must be > 0"),
])
def test_bad_settings_are_one_line_errors(name, settings, message):
    with pytest.raises(ConfigError) as err:
        SEARCH_METHODS.get(name).make_config(settings)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["fafs", "bmn"])
def test_cli_runs_the_comparator(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["search", "--method", name, "--like", SPLIT_TREE, "--pretrain-iterations", "4",
                 "--affinity-images", "16", "--branch-points", "1,2", "--out", str(out), *TINY]) == 0
    assert respects(BranchConfig.load(out / "branch_config.json"), POINTS)
    assert f"{name} search finished" in capsys.readouterr().out
    assert main(["search", "--method", name, "--like", SPLIT_TREE, "--affinity-images", "1",
                 "--out", str(tmp_path / "bad"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--affinity-images must be >=" in err
    other = "--group-cost" if name == "fafs" else "--separation-weight"
    value = "max" if name == "fafs" else "1"
    assert main(["search", "--method", name, "--like", SPLIT_TREE, other, value,
                 "--out", str(tmp_path / "bad2"), *TINY]) == 2
    assert f"is a {'bmn' if name == 'fafs' else 'fafs'} setting, not {name}" in capsys.readouterr().err


def test_every_tree_of_the_tiny_space_has_table_madds(tiny):
    table, fixed, seg = costs(tiny)
    for tree in enumerate_trees(TASKS, POINTS, 4):
        assert chain_madds(fixed, seg, segment_partitions(tree, POINTS)) == table.madds(tree)



def test_sweep_trials_share_the_measured_affinity(tiny, tmp_path):
    """In a sweep every trial of a comparator gets the method's folder as its affinity cache
    (sweep_settings, through TrialConfig.method_config), so only the first trial trains."""
    from branchsweep.config import TrainConfig
    from branchsweep.pipeline import TrialConfig

    data, spec, tasks = tiny
    for name in ("fafs", "bmn"):
        cached_flags = []
        for i, target in enumerate([9300.0, 9800.0]):
            trial = TrialConfig(method=name, data=DataConfig(dataset="ltb-synthetic", tasks=TASKS),
                                model=ModelConfig(backbone="mlp", width=0.16), train=TrainConfig(),
                                search={"target_madds": target, **FAST})
            cfg = trial.method_config(tmp_path / "shared" / name)
            assert cfg.affinity_cache == str(tmp_path / "shared" / name / "affinity")
            ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=tmp_path / f"{name}{i}", progress=False)
            cached_flags.append(SEARCH_METHODS.get(name).run(cfg, ctx).info["affinity_cached"])
        assert cached_flags == [False, True]


def test_many_tasks_fall_back_to_agglomeration_and_beam_search():
    """12 tasks in three blocks of four: FAFS groups by agglomeration (> 8 branches), BMN by beam search."""
    block = np.repeat(np.arange(3), 4)
    same = block[:, None] == block[None, :]
    affinity = np.where(same, 0.9, 0.2)
    np.fill_diagonal(affinity, 1.0)
    blocks = ((0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11))
    assert groupings(affinity)[3][0] == blocks
    assert any(chain[-1] == blocks for _, _, chain in fafs_candidates(affinity, [0.5, 0.5]))
    d = 1.0 - affinity
    pick = best_tree([d, d], [2.0, 1.0], fixed=0.0, cap=5.0)  # within the cap: 1 group, then 3
    assert not pick.exhaustive and pick.chain == [((tuple(range(12))),), blocks]
