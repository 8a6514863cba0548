"""CelebA Learning-to-Branch sweeps (LTB paper, Section 4.2, Table 1 and Appendix A): 40 attributes.

Two presets, one per Table 1 model (``--model vgg``, the default, or ``--model deep-wide``); every
number is the paper's unless marked:

========================  ===============================  ===============================
                          LearnToBranch-VGG                LearnToBranch-Deep-Wide
========================  ===============================  ===============================
backbone                  ``celeba_vgg``                   ``celeba_deep_wide``
child nodes (tree)        3,3,5,5,10,20,30,40              2,4,8,16,40
input (ours, see below)   160×160                          96×96
search                    Adam, batch 64, 30 epochs, 2 warm-up epochs, weight decay 1e-4,
                          τ 10 decayed by the epoch number (``inverse``, ``tau_unit=epoch``),
                          lr × 0.97 every 2.4 epochs (both optimisers)
search lr weights/logits  1e-5 / 1e-4                      1e-4 / 1e-2
retrain                   SGD momentum 0.9, weight decay 5e-4, 30 epochs, one global lr (no
                          division by sharing), evaluated on the **test** split
retrain lr                0.03, halved every 10 epochs     0.05, halved every 15 epochs
========================  ===============================  ===============================

The input size is ours (the paper does not state it): at 160×160 (VGG) and 96×96 (Deep-Wide) the
network with every child node in use has 2.15 M / 6.69 M parameters, within 5 % of the published
Branch-VGG / GNAS-Deep-Wide baselines (2.09 M / 6.41 M), whose capacity the paper's child-node counts
were chosen to match (tested in tests/sweep/test_celeba_presets.py). The sweep explores the tree (the
paper's, and sparser / denser variants) and τ0 around the paper's 10; the paper's own setting is the
first point. Reported per trial: mean test accuracy over the 40 attributes (``mean/accuracy``), MAdds
and parameters of the retrained tree.

    python sweeps/celeba_ltb.py --root /data/celeba --gpus-per-trial 1                 # VGG
    python sweeps/celeba_ltb.py --model deep-wide --root /data/celeba --gpus-per-trial 1
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python sweeps/celeba_ltb.py --root /data/celeba --storage-path s3://bucket/sweeps
    python sweeps/celeba_ltb.py --root /data/celeba --smoke --out /tmp/celeba-smoke
"""

from __future__ import annotations

import dataclasses
import sys

from _common import SweepPreset, main

from branchsweep.config import DataConfig, ModelConfig, TrainConfig
from branchsweep.sweep import SearchSpace

#: The paper's per-model numbers (Appendix A) and our input size.
MODELS = {
    "vgg": {"backbone": "celeba_vgg", "tree": "vgg", "size": 160, "search_lr": 1e-5, "arch_lr": 1e-4,
            "retrain_lr": 0.03, "halve_every": 10,
            "trees": ("vgg", "2,2,4,4,8,16,24,T", "3,3,5,5,10,20,T,T", "4,4,6,6,12,24,32,T")},
    "deep-wide": {"backbone": "celeba_deep_wide", "tree": "deep_wide", "size": 96, "search_lr": 1e-4,
                  "arch_lr": 1e-2, "retrain_lr": 0.05, "halve_every": 15,
                  "trees": ("deep_wide", "2,4,8,8,T", "2,4,8,24,T", "3,6,12,24,T")},
}


def presets(model: str) -> tuple[SweepPreset, SweepPreset]:
    """``(PRESET, SMOKE)`` of Table 1 model ``model`` (``vgg`` or ``deep-wide``)."""
    m = MODELS[model]
    search = {"epochs": 30.0, "warmup_epochs": 2.0, "batch_size": 64, "lr": m["search_lr"], "arch_lr": m["arch_lr"],
              "weight_decay": 1e-4, "lr_schedule": "exponential", "lr_gamma": 0.97, "lr_every_epochs": 2.4,
              "tau_unit": "epoch", "checkpoint_every": 1000}
    preset = SweepPreset(
        name=f"celeba-ltb-{model}",
        data=DataConfig(dataset="celeba", size=m["size"], num_workers=4),
        model=ModelConfig(backbone=m["backbone"]),
        train=TrainConfig(epochs=30.0, batch_size=64, optimizer="sgd", lr=m["retrain_lr"], momentum=0.9,
                          weight_decay=5e-4, lr_schedule="step", lr_gamma=0.5, lr_every_epochs=m["halve_every"],
                          divide_lr_by_sharing=False, eval_split="test", eval_batch_size=256,
                          checkpoint_every=1000, progress=False),
        search_defaults={"ltb": search},
        space=SearchSpace(methods=("ltb",), ranges={"ltb": {"trees": m["trees"], "schedules": ("inverse",),
                                                            "tau0": (5.0, 20.0)}}),
        num_trials=8,
        concurrency=4,
        cpus_per_trial=4.0,
        gpus_per_trial=1.0,
        points=[{"method": "ltb", "ltb.tree": m["tree"], "ltb.schedule": "inverse", "ltb.tau0": 10.0}],
    )
    smoke = dataclasses.replace(
        preset, name=f"{preset.name}-smoke",
        data=dataclasses.replace(preset.data, size=32, train_samples=128, val_samples=32, num_workers=0,
                                 tasks=["Smiling", "Male", "Young", "Eyeglasses"]),
        model=dataclasses.replace(preset.model, width=0.125),
        train=dataclasses.replace(preset.train, epochs=None, iterations=5, batch_size=16, eval_batch_size=16,
                                  checkpoint_every=0),
        search_defaults={"ltb": {**search, "iterations": 5, "warmup_iterations": 1, "batch_size": 16,
                                 "checkpoint_every": 0}},
        num_trials=2, concurrency=1, cpus_per_trial=1.0, gpus_per_trial=0.0,
    )
    return preset, smoke


PRESET, SMOKE = presets("vgg")
PRESET_DEEP_WIDE, SMOKE_DEEP_WIDE = presets("deep-wide")


def _model_flag(argv: list[str]) -> tuple[str, list[str]]:
    """``--model NAME`` (or ``--model=NAME``) taken out of ``argv``; default ``vgg``."""
    rest, model, i = [], "vgg", 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--model" and i + 1 < len(argv):
            model, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--model="):
            model = arg.partition("=")[2]
        else:
            rest.append(arg)
        i += 1
    if model not in MODELS:
        print(f"error: --model must be one of {', '.join(MODELS)}, got {model!r}", file=sys.stderr)
        sys.exit(2)
    return model, rest


if __name__ == "__main__":
    name, args = _model_flag(sys.argv[1:])
    sys.exit(main(*presets(name), __doc__, args))
