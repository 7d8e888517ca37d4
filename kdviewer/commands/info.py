"""`kdviewer info PATH [--json]`: the series found in a file or folder, and the files skipped with why."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `info` subcommand."""
    parser = subparsers.add_parser(
        "info",
        help="list the series in a file or folder (headers only)",
        description="List the image series found in PATH (a file or a folder, searched recursively): uid, "
                    "modality, description, dimensions, spacing, slice count and warnings, then every file "
                    "skipped with the reason. Reads headers only.",
    )
    parser.add_argument("path", metavar="PATH", help="a DICOM folder or file, NIfTI/NRRD/MHA, PNG/JPEG/TIFF")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Scan `args.path` and print what was found; errors are `StudyError`s (one line, exit 2)."""
    from kdviewer.study import open_path

    result = open_path(args.path)
    report = scan_report(args.path, result)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(report))
    return 0


def scan_report(path: str, result: Any) -> dict[str, Any]:
    """The JSON-able summary of a `ScanResult`: {"path", "series": [...], "skipped": [{"path", "reason"}]}."""
    series = []
    for i, ref in enumerate(result.series):
        z, y, x = ref.shape
        series.append({
            "index": i,
            "uid": ref.uid,
            "modality": ref.modality,
            "description": ref.description,
            "kind": ref.kind,
            "dimensions": [x, y, z],
            "spacing": [round(s, 6) for s in ref.spacing],
            "slices": z,
            "dtype": ref.dtype,
            "channels": ref.channels,
            "files": len(ref.files),
            "origin": [round(o, 6) for o in ref.origin],
            "direction": [round(d, 6) for d in ref.direction],
            "windows": [{"name": w.name, "center": w.center, "width": w.width} for w in ref.info.window_presets],
            "warnings": list(ref.warnings),
        })
    skipped = [{"path": str(p), "reason": r} for p, r in result.skipped]
    return {"path": str(path), "series": series, "skipped": skipped}


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of a `scan_report`, one line per series, warnings and skipped files below."""
    lines = [f"{report['path']}: {len(report['series'])} series, {len(report['skipped'])} file(s) skipped", ""]
    header = ("#", "modality", "slices", "dimensions", "spacing mm", "dtype", "description", "uid")
    rows = [header]
    for s in report["series"]:
        rows.append((
            str(s["index"]),
            s["modality"],
            str(s["slices"]),
            "×".join(str(d) for d in s["dimensions"]) + (" rgb" if s["channels"] == 3 else ""),
            ", ".join(f"{v:.4g}" for v in s["spacing"]),
            s["dtype"],
            s["description"] or "-",
            s["uid"],
        ))
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    for s in report["series"]:
        for w in s["warnings"]:
            lines.append(f"warning: series {s['index']}: {w}")
    if report["skipped"]:
        lines += ["", "skipped:"]
        lines += [f"  {k['path']}: {k['reason']}" for k in report["skipped"]]
    return "\n".join(lines) + "\n"
