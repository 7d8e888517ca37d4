"""`kdviewer compare TEACHER STUDENT DATA`: a student next to its teacher, on a labelled folder or one study."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kdviewer.strict_json import dumps_strict


def register(subparsers: Any) -> None:
    """Add `kdviewer compare`."""
    parser = subparsers.add_parser(
        "compare", help="compare a student with its teacher on labelled data or a study",
        description="Run TEACHER and STUDENT (registry ids, or .onnx files with their cards) on DATA. Labelled "
                    "data (MedMNIST .npz, class folders, image + mask pairs, DRIVE, volume + labels; plain images "
                    "for restoration) gives both models' metrics side by side, as `kdviewer evaluate` computes "
                    "them, and the cases where they disagree most; a study (a DICOM folder, NIfTI, an image) gives "
                    "teacher-student agreement on it. Both: latency, parameters, file size and speed-up.")
    parser.add_argument("teacher", metavar="TEACHER")
    parser.add_argument("student", metavar="STUDENT")
    parser.add_argument("data", metavar="DATA")
    parser.add_argument("--split", help="the split to score (needed when DATA holds several); val / train on data "
                                        "that training split itself: the split rebuilt from the student's training "
                                        "recipe (else the teacher's)")
    parser.add_argument("--layout", default="auto", help="force a data layout instead of detecting it")
    parser.add_argument("--limit", type=int, help="score only the first N items")
    parser.add_argument("--study", action="store_true", help="treat DATA as one study, not as labelled data")
    parser.add_argument("--series", type=int, default=0, help="study: which series (default 0, the first)")
    parser.add_argument("--slice", type=int, dest="slice_index",
                        help="study: compare on this slice only (classification: default the middle one)")
    parser.add_argument("--reference", metavar="MASK", help="study, segmentation: a reference label volume")
    parser.add_argument("--allow-unpaired", action="store_true",
                        help="compare even when the student's card names another teacher (warns)")
    parser.add_argument("--report", metavar="DIR", help="write report.html and cases.csv into DIR")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: physical cores)")
    parser.add_argument("--models-dir", metavar="DIR", help="user model folder to search for the models")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compare and print (and write the report)."""
    from kdviewer.runtime import resolve_model
    from kdviewer.runtime.compare import compare_on_dataset, compare_on_study, data_kind

    teacher = resolve_model(args.teacher, user_dir=args.models_dir)
    student = resolve_model(args.student, user_dir=args.models_dir)
    kind = "study" if args.study else data_kind(args.data, teacher.task)
    if kind == "dataset":
        result = compare_on_dataset(teacher, student, args.data, args.split, layout=args.layout, limit=args.limit,
                                    allow_unpaired=args.allow_unpaired, threads=args.threads)
    else:
        from kdviewer.study import load_volume

        volume = load_volume(args.data, args.series)
        reference = load_volume(args.reference) if args.reference else None
        result = compare_on_study(teacher, student, volume, args.slice_index, reference=reference,
                                  allow_unpaired=args.allow_unpaired, threads=args.threads)
    if args.report:
        from kdviewer.runtime.report import write_report

        written = write_report(result, args.report, _plot_pngs(result))
    for warning in result.warnings:
        print(f"kdviewer compare: warning: {warning}", file=sys.stderr)
    if args.json:
        sys.stdout.write(dumps_strict(result.to_dict()) + "\n")
    else:
        sys.stdout.write(format_dataset(result) if kind == "dataset" else format_study(result))
    if args.report:
        print(f"report: {written['html']}; cases: {written['csv']}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _plot_pngs(result) -> dict[str, bytes] | None:
    """The report's plots as PNG, drawn with pyqtgraph offscreen; None (the report's own SVG) when Qt cannot start."""
    try:
        from kdviewer.gui.research_plots import report_pngs

        return report_pngs(result)
    except Exception as exc:  # noqa: BLE001 - any Qt failure: the report still gets its plots, as SVG
        print(f"kdviewer compare: note: plots drawn as SVG, Qt could not start ({exc})", file=sys.stderr)
        return None


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _models(result) -> list[str]:
    lines = [f"{'':<10} {'model':<28} {'parameters':>12} {'file bytes':>12} {'latency ms':>11}"]
    for role, m in (("teacher", result.teacher), ("student", result.student)):
        lines.append(f"{role:<10} {m.id:<28} {m.parameters!s:>12} {m.file_bytes:>12} {m.latency_ms:>11.3f}")
    lines.append(f"speed-up {_num(result.speed_up)}")
    return lines


def format_dataset(result) -> str:
    """Models, then each metric of `kdviewer evaluate` side by side, the agreement and the top disagreements."""
    lines = [f"{result.task} on {result.data} (layout {result.layout}, split {result.split}, {len(result.cases)} cases)"]
    if result.split_source:
        lines.append(f"split {result.split}: {result.split_source}")
    lines += _models(result)
    lines.append(f"{'metric':<20} {'teacher':>12} {'student':>12}")
    lines += [f"{k:<20} {_num(t):>12} {_num(s):>12}" for k, t, s in result.metrics_table()]
    for role, metrics in (("teacher", result.teacher_metrics), ("student", result.student_metrics)):
        if "confusion" in metrics:
            lines.append(f"confusion {role} (rows true, columns predicted):")
            lines += ["  " + " ".join(f"{v:>6d}" for v in row) for row in metrics["confusion"]]
    lines += [f"{k:<20} {_num(v)}" for k, v in result.agreement.items()]
    top = result.disagreements(5)
    if top:
        lines.append("disagree most: " + ", ".join(f"{c.key} ({_num(c.disagreement)})" for c in top))
    return "\n".join(lines) + "\n"


def format_study(result) -> str:
    """Models, then the comparison's numbers (nested ones as name.key)."""
    where = "whole volume" if result.slice_index is None else f"slice {result.slice_index}"
    lines = [f"{result.task} on one study ({where})", *_models(result)]

    def walk(d: dict, prefix: str = "") -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                lines.append(f"{prefix + k:<32} {_num(v)}")

    walk(result.metrics)
    return "\n".join(lines) + "\n"
