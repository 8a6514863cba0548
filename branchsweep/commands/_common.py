"""Flags shared by several commands, mapped onto the typed configs in one place."""

from __future__ import annotations

import argparse

from branchsweep import paper
from branchsweep.config import DataConfig, ModelConfig, TrainConfig, from_mapping
from branchsweep.errors import ConfigError

PAPER_DATASETS = ", ".join(sorted(paper.ITERATIONS))


def csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def float_list(text: str) -> list[float]:
    try:
        return [float(t) for t in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default="synthetic-dense", help="data set name (default: the embedded synthetic-dense)")
    g.add_argument("--root", default=None, help="data set root folder (real data sets)")
    g.add_argument("--tasks", type=csv_list, default=None, help="comma-separated task names (default: all)")
    g.add_argument("--size", type=int, default=None, help="square input resolution (default: the data set's)")
    g.add_argument("--train-samples", type=int, default=None, help="synthetic data: training samples")
    g.add_argument("--val-samples", type=int, default=None, help="synthetic data: validation samples")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic data")
    g.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    g.add_argument("--activations", type=csv_list, default=None, help="ltb-synthetic: activations, e.g. bent,square,sinc")
    g.add_argument("--tasks-per-activation", type=int, default=None, help="ltb-synthetic: tasks per activation")
    g.add_argument("--scales", type=float_list, default=None, help="ltb-synthetic: output multiplier per activation")
    g.add_argument("--normalize", default=None,
                   help="ltb-synthetic: target normalisation, input_dim (Eq. 8, default) or activation_std")
    g.add_argument("--half-resolution", action="store_true", help="pascal-context: use the half-resolution copy")


def data_config(args: argparse.Namespace) -> DataConfig:
    options: dict = {}
    for flag, key in (("activations", "activations"), ("tasks_per_activation", "tasks_per_activation"),
                      ("scales", "scales"), ("normalize", "normalize")):
        if getattr(args, flag, None) is not None:
            options[key] = getattr(args, flag)
    if getattr(args, "half_resolution", False):
        options["half_resolution"] = True
    return from_mapping(DataConfig, {
        "dataset": args.dataset, "root": args.root, "tasks": args.tasks, "size": args.size,
        "train_samples": args.train_samples, "val_samples": args.val_samples, "seed": args.data_seed,
        "num_workers": args.workers, "options": options,
    })


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--backbone", default=None, help="backbone name (default: the data set's)")
    g.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1.0)")
    g.add_argument("--pretrained", default=None,
                   help="'imagenet' (torchvision weights), a checkpoint path or 'none' (default: imagenet on "
                        f"{PAPER_DATASETS} at width 1, the BMTAS paper's initialisation; none otherwise)")


def model_config(args: argparse.Namespace) -> ModelConfig:
    pretrained = args.pretrained
    if pretrained is None and getattr(args, "dataset", None) in paper.ITERATIONS and args.width == 1.0:
        pretrained = "imagenet"
    if pretrained == "none":
        pretrained = None
    return from_mapping(ModelConfig, {"backbone": args.backbone, "width": args.width, "pretrained": pretrained})


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """How to run (not what to compute): device, mixed precision, memory format."""
    from branchsweep.loop import AMP_MODES

    g = parser.add_argument_group("runtime")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--amp", default="off", choices=AMP_MODES,
                   help="mixed precision: off, bf16 (CPU or GPU) or fp16 (GPU, with gradient scaling)")
    g.add_argument("--channels-last", action="store_true", help="channels-last memory format (faster on GPUs)")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training (SGD, lr, momentum, weight decay, poly: BMTAS supplement A)")
    d = TrainConfig()
    g.add_argument("--iterations", type=int, default=None,
                   help=f"default: the BMTAS paper's on {PAPER_DATASETS} (40000, halved on nyud); {d.iterations} "
                        "otherwise")
    g.add_argument("--epochs", type=float, default=None, help="train this many epochs (replaces --iterations)")
    g.add_argument("--batch-size", type=int, default=None,
                   help=f"default: on {PAPER_DATASETS} the BMTAS paper's per backbone (mobilenet_v2 16, resnet50 8); "
                        f"{d.batch_size} otherwise")
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--optimizer", default=d.optimizer, choices=["sgd", "adam"])
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--lr-schedule", default=d.lr_schedule,
                   help="lr decay: poly (BMTAS), step / exponential (× --lr-gamma every --lr-every-epochs), constant")
    g.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="decay factor of step / exponential")
    g.add_argument("--lr-every-epochs", type=float, default=d.lr_every_epochs, help="epochs between decays")
    g.add_argument("--eval-split", default=d.eval_split, choices=["train", "val", "test"],
                   help="split the trained network is evaluated on")
    g.add_argument("--no-lr-division", action="store_true",
                   help="do not divide a shared block's learning rate by the number of tasks sharing it")
    g.add_argument("--loss-weight", action="append", default=[], metavar="TASK=W",
                   help="override a task's loss weight (repeatable)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--compile", action="store_true", help="torch.compile the network's forward pass")
    g.add_argument("--checkpoint-every", type=int, default=0, help="iterations between checkpoints (0: at the end)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def train_config(args: argparse.Namespace, backbone: str | None = None) -> TrainConfig:
    """The retraining config; unset ``--iterations``/``--batch-size`` take the paper's value for the data
    set / ``backbone`` (:mod:`branchsweep.paper`) where it has one, else :class:`TrainConfig`'s."""
    d = TrainConfig()
    iterations = args.iterations
    if iterations is None:
        iterations = paper.paper_iterations(getattr(args, "dataset", "")) or d.iterations
    batch_size = args.batch_size
    if batch_size is None:
        on_paper_data = getattr(args, "dataset", "") in paper.ITERATIONS
        batch_size = (paper.paper_batch(backbone) if backbone and on_paper_data else None) or d.batch_size
    weights = {}
    for item in args.loss_weight:
        task, sep, value = item.partition("=")
        try:
            weights[task] = float(value)
        except ValueError:
            sep = ""
        if not sep or not task:
            raise ConfigError(f"--loss-weight expects TASK=NUMBER, got {item!r}")
    return from_mapping(TrainConfig, {
        "iterations": iterations, "batch_size": batch_size, "lr": args.lr, "optimizer": args.optimizer,
        "weight_decay": args.weight_decay, "divide_lr_by_sharing": False if args.no_lr_division else None,
        "epochs": args.epochs, "lr_schedule": args.lr_schedule, "lr_gamma": args.lr_gamma,
        "lr_every_epochs": args.lr_every_epochs, "eval_split": args.eval_split,
        "loss_weights": weights, "seed": args.seed, "device": args.device,
        "checkpoint_every": args.checkpoint_every, "progress": not args.no_progress,
        "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile,
    })


def format_metrics(metrics: dict[str, float]) -> str:
    return "\n".join(f"  {k:<28} {v:10.4f}" for k, v in metrics.items())
