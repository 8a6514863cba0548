"""The papers' baselines as search methods: ``vanilla``, ``permuted``, ``random`` (branchsweep/search/baselines.py)."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from branchsweep.arch import BranchConfig
from branchsweep.cli import main
from branchsweep.config import DataConfig, ModelConfig
from branchsweep.data import create_data
from branchsweep.errors import ConfigError
from branchsweep.factory import build_spec
from branchsweep.madds import MaddsTable, madds_table
from branchsweep.search import SEARCH_METHODS, SearchContext
from branchsweep.search.baselines import (
    closest_branch_layer,
    distinct_permutations,
    matched_baselines,
    permute_tree,
    random_tree,
    random_tree_near,
    vanilla_tree,
)

TASKS = ["semseg", "sal", "depth", "normals"]
TINY = ["--dataset", "synthetic-dense", "--tasks", ",".join(TASKS), "--size", "16", "--train-samples", "8",
        "--val-samples", "4", "--width", "0.25", "--no-progress"]
METHODS = ("vanilla", "permuted", "random")


@pytest.fixture(scope="module")
def tiny():
    """The tiny data set, its spec and MAdds table, and a related-groups tree written to a file."""
    data = create_data(DataConfig(dataset="synthetic-dense", tasks=TASKS, size=16, train_samples=8, val_samples=4))
    tasks = data.select_tasks(TASKS)
    spec = build_spec(ModelConfig(width=0.25), data)
    n = spec.num_layers
    # {semseg, sal} and {depth, normals} share the first half, then every task branches.
    tree = BranchConfig.from_groups(TASKS, [[["semseg", "sal"], ["depth", "normals"]]] * (n // 2)
                                    + [[[t] for t in TASKS]] * (n - n // 2))
    return data, tasks, spec, madds_table(spec, tasks), tree


def _like_file(tmp_path, tree):
    path = tmp_path / "like.json"
    tree.save(path)
    return str(path)


def _args(method, like):
    return {"vanilla": ["--like", like], "permuted": ["--like", like, "--index", "1"],
            "random": ["--like", like, "--tolerance", "0.1"]}[method]


@pytest.mark.parametrize("method", METHODS)
def test_cli_run_writes_a_tree_at_the_target_madds(method, tiny, tmp_path, capsys):
    _, _, _, table, tree = tiny
    out = tmp_path / "out"
    assert main(["search", "--method", method, "--out", str(out), "--seed", "3",
                 *_args(method, _like_file(tmp_path, tree)), *TINY]) == 0
    config = BranchConfig.load(out / "branch_config.json")
    assert f"{method} search finished" in capsys.readouterr().out
    target = table.madds(tree)
    if method == "permuted":  # a permutation keeps the block counts, hence the MAdds, but not the grouping
        assert table.madds(config) == target and config != tree
        assert [len(p) for p in config.partitions] == [len(p) for p in tree.partitions]
    elif method == "random":
        assert abs(table.madds(config) - target) <= 0.1 * target
    else:
        costs = [table.madds(vanilla_tree(TASKS, tree.num_layers, k)) for k in range(tree.num_layers + 1)]
        assert abs(table.madds(config) - target) == min(abs(c - target) for c in costs)


@pytest.mark.parametrize("method", METHODS)
def test_sweep_settings_accept_inline_json_and_report_info(method, tiny, tmp_path):
    """A sweep passes ``like`` as JSON text in a trial's ``search`` settings; info carries the target."""
    from branchsweep.pipeline import TrialConfig

    data, tasks, spec, table, tree = tiny
    settings = {"like": tree.to_json(indent=None), **({"index": 1} if method == "permuted" else {})}
    trial = TrialConfig(method=method, search=settings)
    trial.validate()
    ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=tmp_path / method, seed=1, progress=False)
    result = SEARCH_METHODS.get(method).run(trial.method_config(None), ctx)
    assert BranchConfig.load(tmp_path / method / "branch_config.json") == result.config
    assert result.info["madds"] == table.madds(result.config)
    assert result.info["target_madds"] == table.madds(tree)
    assert all(isinstance(v, (int, float, str, bool)) for v in result.info.values())  # kept by the trial pipeline


@pytest.mark.parametrize(("method", "argv", "message"), [
    ("vanilla", [], "give exactly one of --target-madds, --like, --branch-at (got none)"),
    ("vanilla", ["--branch-at", "1", "--target-madds", "5e5"], "(got --target-madds, --branch-at)"),
    ("vanilla", ["--branch-at", "99"], "--branch-at must be in [0,"),
    ("vanilla", ["--target-madds", "-3"], "--target-madds must be > 0"),
    ("permuted", [], "permuted: give --like"),
    ("permuted", ["--like", "LIKE", "--index", "5"], "--index must be in [0, 5)"),
    ("permuted", ["--like", "SHARED"], "nothing to permute"),
    ("permuted", ["--like", "{not json"], "like (inline JSON): malformed JSON"),
    ("permuted", ["--like", "MISSING"], "like: branch config file not found"),
    ("permuted", ["--like", "OTHER_TASKS"], "like: branch config does not match the tasks"),
    ("random", ["--like", "LIKE", "--target-madds", "1e5"], "give exactly one of --target-madds, --like"),
    ("random", ["--target-madds", "10"], "no tree has MAdds within 5%"),
    ("random", ["--like", "LIKE", "--tolerance", "0"], "--tolerance must be in (0, 1)"),
    ("random", ["--like", "LIKE", "--lambda", "1"], "--lambda is a bmtas setting, not random"),
])
def test_bad_inputs_exit_2_with_one_line(method, argv, message, tiny, tmp_path, capsys):
    tree = tiny[4]
    files = {"LIKE": _like_file(tmp_path, tree), "MISSING": str(tmp_path / "nope.json"),
             "SHARED": str(BranchConfig.shared(TASKS, tree.num_layers).save(tmp_path / "shared.json")),
             "OTHER_TASKS": str(BranchConfig.shared(["semseg", "edge"], tree.num_layers).save(tmp_path / "o.json"))}
    out = tmp_path / "out"
    assert main(["search", "--method", method, "--out", str(out), *[files.get(a, a) for a in argv], *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not (out / "branch_config.json").exists()


def _all_trees(tasks, num_layers):
    """Every tree of the space by brute force (chains of refining partitions)."""
    def partitions(items):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for part in partitions(rest):
            yield [[first]] + part
            for i in range(len(part)):
                yield part[:i] + [[first] + part[i]] + part[i + 1:]

    parts = list(partitions(list(range(len(tasks)))))
    trees = set()
    for chain in itertools.product(parts, repeat=num_layers):
        try:
            trees.add(BranchConfig(tuple(tasks), tuple(tuple(tuple(g) for g in p) for p in chain)))
        except ConfigError:  # a layer merges what the previous one split
            pass
    return trees


def test_distinct_permutations_are_distinct_seeded_and_exhaustive():
    tree = BranchConfig.from_groups("abcd", [[["a", "b", "c"], ["d"]], [["a", "b"], ["c"], ["d"]]])
    # Brute force: the distinct groupings reachable by permuting, minus the tree itself.
    reachable = {permute_tree(tree, p) for p in itertools.permutations(range(4))} - {tree}
    assert len(reachable) == 11  # 4! / 2 trees (swapping a and b changes nothing), less the tree itself
    some = distinct_permutations(tree, 5, seed=0)
    assert len(some) == 5 and len(set(some)) == 5 and set(some) <= reachable
    assert distinct_permutations(tree, 5, seed=0) == some  # seeded
    assert {tuple(distinct_permutations(tree, 5, seed=s)) for s in range(5)} != {tuple(some)}
    assert set(distinct_permutations(tree, 50, seed=1)) == reachable  # fewer when fewer exist: all of them
    assert distinct_permutations(BranchConfig.single("abcd", 2), 5, seed=0) == []


def test_distinct_permutations_beyond_enumeration():
    tasks = [f"t{i}" for i in range(10)]
    tree = random_tree(tasks, 6, random.Random(4))
    trees = distinct_permutations(tree, 7, seed=2)
    assert len(set(trees)) == 7 and tree not in trees


def test_random_trees_are_valid_and_cover_the_space():
    tasks = ["a", "b", "c"]
    space = _all_trees(tasks, 2)
    rng = random.Random(0)
    drawn = [random_tree(tasks, 2, rng) for _ in range(600)]  # the constructor rejects any merge of branches
    assert set(drawn) == space  # Single, Shared and every tree between
    assert len(space) == 5 + 3 * 2 + 1  # from {abc}: any of the 5 partitions; from {ab|c} (3): itself or Single; Single


def test_random_tree_near_and_vanilla_match_the_target():
    table = MaddsTable(stem=10, layers=(100, 200, 400, 800), heads={t: 5 for t in "abcde"}, layer_names=("1", "2", "3", "4"))
    tasks = list("abcde")
    rng = random.Random(0)
    for target in (2335.0, 4000.0, 6000.0):
        tree = random_tree_near(table, tasks, target, 0.05, rng)
        assert abs(table.madds(tree) - target) <= 0.05 * target
        k = closest_branch_layer(table, tasks, target)
        errors = [abs(table.madds(vanilla_tree(tasks, 4, j)) - target) for j in range(5)]
        assert errors[k] == min(errors) and errors.index(min(errors)) == k
    with pytest.raises(ConfigError, match="the space spans"):
        random_tree_near(table, tasks, 100.0, 0.05, rng)
    with pytest.raises(ConfigError, match="the space's MAdds are discrete"):  # in range, between 2335 and 2735
        random_tree_near(table, tasks, 2500.0, 0.05, rng)
    with pytest.raises(ConfigError, match="in 3 draws"):  # reachable (groups (1, 1, 3, 4) or (1, 1, 1, 5)) but rare
        random_tree_near(table, tasks, 4735.0, 0.001, random.Random(0), max_tries=3)
    assert table.madds(random_tree_near(table, tasks, 4735.0, 0.001, random.Random(0))) == 4735


def test_sweep_trial_with_a_bad_setting_fails_before_work():
    from branchsweep.pipeline import TrialConfig

    with pytest.raises(ConfigError, match="permuted: give --like"):
        TrialConfig(method="permuted", search={"index": 1}).validate()
    with pytest.raises(ConfigError, match="unknown option 'k'"):
        TrialConfig(method="vanilla", search={"k": 1}).validate()
    json.dumps(TrialConfig(method="random", search={"target_madds": 1e6}).to_dict())  # JSON-friendly


def test_matched_baselines_give_valid_distinct_trials(tiny, tmp_path):
    """The settings a sweep adds per front point run as trials and give K distinct permutations."""
    from branchsweep.pipeline import TrialConfig

    data, tasks, spec, table, tree = tiny
    trees = []
    for n, (method, settings) in enumerate(matched_baselines(tree, permutations=2, random_trees=2)):
        cfg = TrialConfig(method=method, search=settings)
        cfg.validate()
        ctx = SearchContext(data=data, spec=spec, tasks=tasks, out_dir=tmp_path / str(n), seed=5, progress=False)
        trees.append((method, SEARCH_METHODS.get(method).run(cfg.method_config(None), ctx).config))
    perms = [t for m, t in trees if m == "permuted"]
    randoms = [t for m, t in trees if m == "random"]
    assert len(set(perms)) == 2 and tree not in perms
    assert len(set(randoms)) == 2 and tree not in randoms
    assert all(abs(table.madds(t) - table.madds(tree)) <= 0.05 * table.madds(tree) for m, t in trees if m != "vanilla")
