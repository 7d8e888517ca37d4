"""`kdviewer models list|verify|show ID|install RUN_DIR`: the models the registry finds, their checks and
their cards; install a finished run's model into the user model folder."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kdviewer.strict_json import dumps_strict


def register(subparsers: Any) -> None:
    """Add `kdviewer models`."""
    parser = subparsers.add_parser(
        "models", help="list, verify and show the registered models",
        description="Models are <id>.onnx + <id>.json cards in the repository's models/ and the user's data "
                    "folder (KDVIEWER_HOME/models or the platform's user data folder). Cards are checked "
                    "against the schema and each file against its card's sha256.")
    parser.add_argument("--models-dir", metavar="DIR", help="user model folder to search instead of the default")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="the usable models (and the refused ones)")
    lst.add_argument("--modality", help="only models for this modality (CT, MR, CR, ...)")
    lst.add_argument("--task", choices=("classify", "segment", "denoise", "super_resolve"))
    lst.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    sub.add_parser("verify", help="check every card and sha256; exit 2 when any is refused")
    show = sub.add_parser("show", help="print one model's card")
    show.add_argument("model_id", metavar="ID", help="a registry id, or a path to an .onnx or card .json")
    show.add_argument("--json", action="store_true", help="the card as JSON")
    install = sub.add_parser("install", help="copy a finished run's exported model(s) into the user model folder",
                             description="Copy <id>.onnx, <id>.json and <id>.md of a finished `kdviewer train` or "
                                         "`distill` run into the user model folder (or --models-dir), checked "
                                         "against the card; a user model with the same id is replaced.")
    install.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (--out of train/distill)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to list / verify / show / install."""
    from kdviewer.runtime import resolve_model, scan_models

    if args.models_command == "install":
        from kdviewer.runtime.install import install_run

        for model in install_run(args.run_dir, user_dir=args.models_dir):
            print(f"installed {model.id:<32} {model.onnx_path}")
        return 0
    if args.models_command == "show":
        model = resolve_model(args.model_id, user_dir=args.models_dir)
        if args.json:
            sys.stdout.write(dumps_strict(model.card.to_dict(), indent=2) + "\n")
        else:
            sys.stdout.write(format_card(model))
        return 0
    scan = scan_models(user_dir=args.models_dir)
    if args.models_command == "verify":
        for m in scan.models:
            print(f"ok       {m.id:<32} {m.onnx_path}")
        for path, reason in scan.refused:
            print(f"REFUSED  {path}: {reason}")
        print(f"{len(scan.models)} model(s) verified, {len(scan.refused)} refused")
        return 2 if scan.refused else 0
    models = scan.fitting(args.modality, args.task)
    if args.json:
        data = {"models": [summary(m) for m in models],
                "refused": [{"card": str(p), "reason": r} for p, r in scan.refused]}
        sys.stdout.write(dumps_strict(data, indent=2) + "\n")
        return 0
    print(f"{'ID':<32} {'TASK':<14} {'ROLE':<9} {'MODALITIES':<14} {'ORIGIN':<8} FILE")
    for m in models:
        print(f"{m.id:<32} {m.task:<14} {m.role:<9} {','.join(m.modalities) or 'any':<14} {m.origin:<8} "
              f"{m.onnx_path}")
    for path, reason in scan.refused:
        print(f"refused: {reason}" if str(path) in reason else f"refused: {path}: {reason}")
    return 0


def summary(model: Any) -> dict[str, Any]:
    """The fields `models list --json` prints for one model."""
    card = model.card
    return {"id": model.id, "task": model.task, "role": model.role, "teacher": card.teacher,
            "modalities": list(model.modalities), "labels": list(model.labels), "origin": model.origin,
            "file": str(model.onnx_path), "bytes": card.file.get("bytes"), "weights": card.file.get("weights"),
            "metrics": card.metrics}


def format_card(model: Any) -> str:
    """A readable card: what it does, its data and licence, metrics, intended use and limits."""
    c = model.card
    lines = [
        f"{c.id}  ({c.task}, {c.role}{', teacher ' + c.teacher if c.teacher else ''})",
        f"  architecture: {c.architecture.get('name')} ({c.architecture.get('parameters', '?')} parameters)",
        f"  file:         {model.onnx_path} ({c.file.get('bytes')} bytes, {c.file.get('weights', 'float32')})",
        f"  input:        {c.input.get('shape')} modalities {', '.join(model.modalities) or 'any'}, "
        f"preprocess {c.input.get('preprocess')}",
        f"  output:       {c.output}",
        f"  data:         {c.training.get('dataset', '?')} (licence: {c.training.get('licence') or 'unknown'})",
        f"  metrics:      {json.dumps(c.metrics)}",
        f"  intended use: {c.intended_use}",
    ]
    lines += [f"  limit:        {limit}" for limit in c.limits]
    return "\n".join(lines) + "\n"
