"""`kdviewer view [PATH ...] [--overlay MASK]`: open the viewer (`kdviewer PATH` comes here too)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `view` subcommand."""
    parser = subparsers.add_parser(
        "view",
        help="open the viewer (the default command)",
        description="Open the viewer, optionally on a file or folder (the first PATH is opened; a folder is "
                    "searched recursively for series).",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="a DICOM folder or file, NIfTI/NRRD/MHA, image")
    parser.add_argument("--overlay", metavar="MASK", help="a label volume on the same grid, shown in colour")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the Qt application; returns its exit code. A missing path is refused before any window opens."""
    from pathlib import Path

    from kdviewer.study.errors import PathNotFoundError

    for path in [*args.paths, *([args.overlay] if args.overlay else [])]:
        if not Path(path).exists():
            raise PathNotFoundError(path, "no such file or folder")
    from kdviewer.gui.app import run_viewer

    return run_viewer(args.paths, overlay=args.overlay)
