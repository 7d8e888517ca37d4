"""`kdviewer ensemble RUN RUN [RUN ...] --out DIR`: one teacher made of several trained teachers."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add `kdviewer ensemble`."""
    parser = subparsers.add_parser(
        "ensemble", help="make one teacher of several trained teachers (their outputs averaged)",
        description="Write a run folder whose best.pt is the ensemble of the given teacher runs (the same recipe "
                    "data, e.g. trained with --set seed=1, 2, ...): their logits (or images) averaged, validated "
                    "on the recipe's validation split. Distil it with `kdviewer distill RECIPE --set "
                    "teacher=DIR`; export it with `kdviewer export DIR`.")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="finished `kdviewer train` run folders (two or more)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the ensemble's run folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Make the ensemble and print its folder."""
    from kdviewer.distill.ensemble import ensemble_runs

    print(ensemble_runs(args.runs, args.out, log=print))
    return 0
