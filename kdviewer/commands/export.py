"""`kdviewer export RUN_DIR`: export a run's best checkpoint to ONNX with its model card; `kdviewer export
MODEL.json --int8`: re-make an exported model's INT8 sibling on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add `kdviewer export`."""
    parser = subparsers.add_parser(
        "export", help="export a run to ONNX with its model card",
        description="Write <id>.onnx, <id>.json (card) and <id>.md in the run folder. Given an exported model's "
                    "card (<id>.json) with --int8 instead, quantise that model again on this machine and keep "
                    "<id>-int8.* beside it only if it is faster and holds its validation metrics within 1 point.")
    parser.add_argument("run_dir", metavar="RUN_DIR|CARD",
                        help="a run folder of `kdviewer train` or `kdviewer distill`, or an exported model's card")
    parser.add_argument("--which", choices=("best", "last"), default="best", help="which checkpoint")
    parser.add_argument("--int8", action="store_true",
                        help="also a static INT8 model, kept if it is faster and its validation metrics drop "
                             "by at most 1 point")
    parser.add_argument("--float16", action="store_true", help="store the weights as float16")
    parser.add_argument("--data", metavar="PATH",
                        help="with a card: the training data's folder, when not where the card's recipe says")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print the paths written."""
    from kdviewer.distill.export import ExportError, export_run, quantize_exported

    target = Path(args.run_dir)
    if target.is_file():
        if target.suffix == ".onnx":
            target = target.with_suffix(".json")
        if not args.int8 or args.float16:
            raise ExportError(f"{args.run_dir}: an exported model; only --int8 (re-quantise it) applies to it")
        int8_path = quantize_exported(target, args.data, log=print)
        print(int8_path or "no INT8 model kept")
        return 0 if int8_path else 1
    if args.data:
        raise ExportError("--data applies only to an exported model's card")
    onnx_path, card_path = export_run(args.run_dir, args.which, int8=args.int8 or None,
                                      weights="float16" if args.float16 else None, log=print)
    print(onnx_path)
    print(card_path)
    return 0
