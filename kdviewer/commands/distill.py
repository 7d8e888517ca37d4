"""`kdviewer distill RECIPE --set teacher=RUN_DIR`: distil the recipe's student from a trained teacher."""

from __future__ import annotations

import argparse
from typing import Any

from kdviewer.commands.train import add_run_arguments, run_stage


def register(subparsers: Any) -> None:
    """Add `kdviewer distill`."""
    parser = subparsers.add_parser("distill", help="distil a student from a teacher",
                                   description="Train the recipe's student with the KD method of [distill] "
                                   "(method = \"none\": the no-KD baseline) from the teacher given as "
                                   "--set teacher=RUN_DIR or a checkpoint; exports the student with its card.")
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Distil the student."""
    return run_stage(args, "distill")
