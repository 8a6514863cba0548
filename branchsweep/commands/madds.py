"""``branchsweep madds``: price a branched architecture in GMAdds from the per-layer look-up table."""

from __future__ import annotations

import argparse

from branchsweep.backbones import create_backbone
from branchsweep.commands._common import csv_list
from branchsweep.errors import ConfigError
from branchsweep.factory import resolve_arch
from branchsweep.madds import madds_table
from branchsweep.tasks import create_task

NAME = "madds"
HELP = "print the MAdds (GMAdds) and parameters of single, shared or a branch-config JSON"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", required=True, help="backbone name, e.g. mobilenet_v2, resnet50, mlp")
    p.add_argument("--tasks", type=csv_list, required=True, help="task names, e.g. semseg,human_parts,sal,normals,edge")
    p.add_argument("--size", type=int, default=512, help="square input resolution (default 512)")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--arch", type=csv_list, default=["single", "shared"],
                   help="single, shared or PATH.json (comma-separated for several; default single,shared)")
    p.add_argument("--breakdown", action="store_true", help="also print the per-layer table")


def parameter_count(spec, tasks, config) -> int:
    """Trainable parameters of the branched network ``config`` (one copy of each layer counted and
    multiplied by its number of groups; nothing is built for the whole tree)."""
    from branchsweep.network import count_parameters

    per_layer = [count_parameters(make()) for make in spec.layers]
    heads = sum(count_parameters(spec.make_head(t)) for t in tasks)
    return count_parameters(spec.stem()) + heads + sum(
        n * config.num_groups(layer) for layer, n in enumerate(per_layer))


def run(args: argparse.Namespace) -> int:
    if args.size < 1:
        raise ConfigError(f"--size must be a positive resolution, got {args.size}")
    spec = create_backbone(args.backbone, width=args.width, input_size=args.size)
    tasks = [create_task(t) for t in args.tasks]
    names = [t.name for t in tasks]
    try:
        table = madds_table(spec, tasks)
    except RuntimeError as err:  # e.g. a kernel larger than the downsampled input
        raise ConfigError(f"--size {args.size} is too small for {args.backbone}: "
                          f"{str(err).strip().splitlines()[0]}") from None
    if args.breakdown:
        print(f"{'stem':<10} {table.stem / 1e6:10.1f} MMAdds (shared)")
        for name, c in zip(table.layer_names, table.layers):
            print(f"{name:<10} {c / 1e6:10.1f} MMAdds per copy")
        for name, c in table.heads.items():
            print(f"head {name:<10} {c / 1e6:8.1f} MMAdds")
    for arch in args.arch:
        config = resolve_arch(arch, names, spec.num_layers)
        print(f"{args.backbone} {args.size}x{args.size} {arch}: {table.madds(config) / 1e9:.2f} GMAdds"
              f" ({table.madds(config):,} MAdds), {parameter_count(spec, tasks, config) / 1e6:.2f} M parameters")
    return 0
