"""`kdviewer train RECIPE`: train the recipe's teacher (and export it to ONNX with its card)."""

from __future__ import annotations

import argparse
from typing import Any

STAGE = "train"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `train` and `distill` share (quick trials, resume, progress)."""
    parser.add_argument("recipe", help="the recipe TOML file")
    parser.add_argument("--epochs", type=int, help="override the stage's epochs")
    parser.add_argument("--max-steps", type=int, help="stop after N optimizer steps (quick trials)")
    parser.add_argument("--out", help="the run folder (default runs/<name>-<stage>-<time>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, dotted for tables (distill.temperature=2); repeatable")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--progress", choices=("json", "bar"), default="bar",
                        help="json: one JSON event per line on stdout (for the jobs layer); bar: a progress bar")


def register(subparsers: Any) -> None:
    """Add `kdviewer train`."""
    parser = subparsers.add_parser("train", help="train a teacher from a recipe",
                                   description="Train the recipe's teacher network; the run folder gets "
                                   "checkpoints, events, metrics and the exported ONNX model with its card.")
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def run_stage(args: argparse.Namespace, stage: str) -> int:
    """Load the recipe with the command line's overrides and run `stage` ("train" or "distill")."""
    from kdviewer.distill.recipe import load_recipe
    from kdviewer.distill.trainer import distill_student, train_teacher

    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"{stage}.epochs={args.epochs}")
    if args.max_steps is not None:
        overrides.append(f"{stage}.max_steps={args.max_steps}")
    if args.resume and not args.out:
        from kdviewer.errors import KdviewerError

        raise KdviewerError("--resume needs --out RUN_DIR (the run to continue)")
    recipe = load_recipe(args.recipe, overrides)
    fit = train_teacher if stage == "train" else distill_student
    fit(recipe, args.out, resume=args.resume, progress=args.progress)
    return 0


def run(args: argparse.Namespace) -> int:
    """Train the teacher."""
    return run_stage(args, STAGE)
