"""`kdviewer seeds NAME=RUN[,RUN...] NAME=RUN...`: runs over several seeds side by side (metric per seed, mean, sd,
paired differences)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add `kdviewer seeds`."""
    parser = subparsers.add_parser(
        "seeds", help="compare groups of runs over seeds (e.g. KD against no KD)",
        description="Read the run folders of each group (their metrics.json and recipe seed) and print, per group, "
                    "the validation metric of each seed at the kept checkpoint and at the last epoch, the mean and "
                    "the standard deviation; for two groups, or each group against --baseline, the differences "
                    "paired by seed. Quote the patterns: kdviewer seeds kd='runs/kd-s*' nokd='runs/nokd-s*'.")
    parser.add_argument("groups", nargs="+", metavar="NAME=RUN[,RUN...]",
                        help="a group: its name, '=', run folders or glob patterns separated by commas")
    parser.add_argument("--metric", help="a validation metric (default: the runs' primary one, e.g. auc, dice, psnr)")
    parser.add_argument("--baseline", metavar="NAME", help="compare every other group with this one")
    parser.add_argument("--digits", type=int, default=3, help="decimals (default 3)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    from kdviewer.distill.seeds import format_table, load_groups

    groups, metric = load_groups(args.groups, args.metric)
    print(format_table(groups, metric, args.baseline, max(0, min(args.digits, 6))))
    return 0
