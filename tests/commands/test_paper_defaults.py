"""``search`` and ``train`` on the paper's data sets default to the paper's recipe (branchsweep.paper);
elsewhere they keep their small CPU defaults. Parsing only: nothing is trained."""

from __future__ import annotations

import pytest

from branchsweep.cli import build_parser
from branchsweep.commands._common import model_config, train_config
from branchsweep.search import SEARCH_METHODS


def parse(*argv):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize(("dataset", "backbone", "iterations", "batch"), [
    ("pascal-context", "mobilenet_v2", 40000, 16), ("pascal-context", "resnet50", 40000, 8),
    ("nyud", "resnet50", 20000, 8), ("synthetic-dense", "mobilenet_v2", 200, 8),
])
def test_train_defaults_follow_the_paper_on_its_data_sets(dataset, backbone, iterations, batch):
    args = parse("train", "--dataset", dataset, "--backbone", backbone, "--arch", "shared")
    tcfg = train_config(args, backbone)
    assert (tcfg.iterations, tcfg.batch_size, tcfg.lr, tcfg.momentum) == (iterations, batch, 0.005, 0.9)
    paper = dataset != "synthetic-dense"
    assert model_config(args).pretrained == ("imagenet" if paper else None)
    explicit = parse("train", "--dataset", dataset, "--arch", "shared", "--iterations", "7", "--batch-size", "3",
                     "--pretrained", "none")
    assert (train_config(explicit, backbone).iterations, train_config(explicit, backbone).batch_size) == (7, 3)
    assert model_config(explicit).pretrained is None
    # ImageNet weights exist only at width 1: a narrow network starts from scratch by default
    assert model_config(parse("train", "--dataset", dataset, "--arch", "shared", "--width", "0.5")).pretrained is None


def test_bmtas_defaults_on_the_paper_data_sets():
    bmtas = SEARCH_METHODS.get("bmtas")
    assert bmtas.data_defaults("pascal-context", "mobilenet_v2", 5) == {
        "iterations": 40000, "warmup_iterations": 2000, "batch_size": 16, "lam": 0.242}
    assert bmtas.data_defaults("nyud", "resnet50", 4) == {
        "iterations": 20000, "warmup_iterations": 1000, "batch_size": 8, "lam": 0.00594}
    assert bmtas.data_defaults("synthetic-dense", "mobilenet_v2", 4) == {}
    cfg = bmtas.make_config({**bmtas.data_defaults("nyud", "resnet50", 4), "lam": 0.01})
    assert cfg.lam == 0.01 and cfg.batch_size == 8  # flags win over the data-set defaults
