"""``branchsweep check-data``: read every file of a data set up front and report what is there.

Prints the number of images per split, per split and task the number of images that carry a label
(e.g. human parts only exist for images with persons), and every problem found (missing split file,
missing/truncated/unreadable file, image/label size mismatch, unknown class index) — one line each,
naming the file. Exit 0 when clean, 1 when a problem was found. Nothing is trained.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from branchsweep.commands._common import csv_list
from branchsweep.config import DataConfig, from_mapping
from branchsweep.data import create_data
from branchsweep.errors import ConfigError, DataError

NAME = "check-data"
HELP = "scan a data set on disk: counts per split and task, and every problem found (exit 1 if any)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="pascal-context, nyud, celeba or taskonomy")
    p.add_argument("--root", required=True, help="the data set's root folder")
    p.add_argument("--tasks", type=csv_list, default=None, help="only check these tasks (default: all)")
    p.add_argument("--half-resolution", action="store_true", help="pascal-context: check the half-resolution view")
    p.add_argument("--max-problems", type=int, default=50,
                   help="print at most this many problems (all are counted; default 50)")


@dataclass
class SplitReport:
    """What one split holds: its image count, labelled images per task, and the problems found."""

    images: int = 0
    labelled: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def scan_split(dataset, tasks: list[str]) -> SplitReport:
    """Scan every item of ``dataset`` (a split with ``scan_item``)."""
    report = SplitReport(images=len(dataset), labelled={t: 0 for t in tasks})
    for i in range(len(dataset)):
        present, problems = dataset.scan_item(i)
        for t in present:
            report.labelled[t] += 1
        report.problems.extend(problems)
    return report


def run(args: argparse.Namespace) -> int:
    options = {"half_resolution": True} if args.half_resolution else {}
    cfg = from_mapping(DataConfig, {"dataset": args.dataset, "root": args.root, "tasks": args.tasks,
                                    "options": options})
    try:
        data = create_data(cfg)
    except DataError as err:
        print(f"{args.dataset} at {args.root}: cannot be opened", file=sys.stderr)
        print(f"problem: {err}")
        return 1
    tasks = list(data.tasks)
    problems: list[str] = []
    print(f"{data.name} at {args.root}: tasks {', '.join(tasks)}")
    for split in data.splits:
        try:
            dataset = data.split(split, train=False)
        except DataError as err:
            problems.append(str(err))
            print(f"{split}: unreadable")
            continue
        if not hasattr(dataset, "scan_item"):
            raise ConfigError(f"data set {args.dataset!r} has no files to check")
        report = scan_split(dataset, tasks)
        problems.extend(report.problems)
        counts = ", ".join(f"{t} {n}" for t, n in report.labelled.items())
        print(f"{split}: {report.images} images; labelled: {counts}")
    for p in problems[: max(args.max_problems, 0)]:
        print(f"problem: {p}")
    if len(problems) > args.max_problems:
        print(f"... and {len(problems) - args.max_problems} more problems")
    print(f"{len(problems)} problem(s) found" if problems else "no problems found")
    return 1 if problems else 0
