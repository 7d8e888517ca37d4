"""`kdviewer export RUN_DIR`: export a run's best checkpoint to ONNX with its model card."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add `kdviewer export`."""
    parser = subparsers.add_parser("export", help="export a run to ONNX with its model card",
                                   description="Write <id>.onnx, <id>.json (card) and <id>.md in the run folder.")
    parser.add_argument("run_dir", help="a run folder of `kdviewer train` or `kdviewer distill`")
    parser.add_argument("--which", choices=("best", "last"), default="best", help="which checkpoint")
    parser.add_argument("--int8", action="store_true",
                        help="also a static INT8 model, kept if the validation metric drops by at most 1 point")
    parser.add_argument("--float16", action="store_true", help="store the weights as float16")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print the paths written."""
    from kdviewer.distill.export import export_run

    onnx_path, card_path = export_run(args.run_dir, args.which, int8=args.int8 or None,
                                      weights="float16" if args.float16 else None, log=print)
    print(onnx_path)
    print(card_path)
    return 0
