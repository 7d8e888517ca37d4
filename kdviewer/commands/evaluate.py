"""`kdviewer evaluate MODEL DATA [--split NAME] [--json]`: a model's metrics on a labelled data set."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kdviewer.strict_json import dumps_strict


def register(subparsers: Any) -> None:
    """Add `kdviewer evaluate`."""
    parser = subparsers.add_parser(
        "evaluate", help="score a model on a labelled data set",
        description="Run MODEL (a registry id, or an .onnx with its card) on every item of one split of DATA "
                    "(any layout kdviewer reads: MedMNIST .npz, class folders, image + mask pairs, DRIVE, "
                    "volume + labels, plain images for restoration) and print the task's metrics.")
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("data", metavar="DATA")
    parser.add_argument("--split", help="the split to score (needed when DATA holds several); val / train on data "
                                        "that training split itself (class folders, volumes, DRIVE, plain images): "
                                        "the split rebuilt from MODEL's training recipe")
    parser.add_argument("--layout", default="auto", help="force a layout instead of detecting it")
    parser.add_argument("--limit", type=int, help="score only the first N items")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: physical cores)")
    parser.add_argument("--models-dir", metavar="DIR", help="user model folder to search for MODEL")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print."""
    from kdviewer.runtime import resolve_model
    from kdviewer.runtime.evaluate import evaluate_model

    model = resolve_model(args.model, user_dir=args.models_dir)
    result = evaluate_model(model, args.data, args.split, layout=args.layout, threads=args.threads,
                            limit=args.limit)
    if args.json:
        sys.stdout.write(dumps_strict(result) + "\n")
    else:
        sys.stdout.write(format_table(result))
    return 0


def format_table(result: dict[str, Any]) -> str:
    """Metric per line; floats with 4 decimals; the confusion matrix as rows; each warning as "warning: ..."."""
    lines = []
    for key, value in result.items():
        if key == "warnings":
            lines += [f"warning: {w}" for w in value]
        elif key == "confusion":
            lines.append("confusion (rows true, columns predicted):")
            lines += ["  " + " ".join(f"{v:>6d}" for v in row) for row in value]
        elif isinstance(value, float):
            lines.append(f"{key:<20} {value:.4f}")
        else:
            lines.append(f"{key:<20} {value}")
    return "\n".join(lines) + "\n"
