"""`kdviewer screenshot PATH --out FILE.png ...`: one view rendered offscreen by the viewer's own code."""

from __future__ import annotations

import argparse
import os
from typing import Any

from kdviewer.errors import KdviewerError

VIEWS = ("axial", "coronal", "sagittal")


def register(subparsers: Any) -> None:
    """Add the `screenshot` subcommand."""
    parser = subparsers.add_parser(
        "screenshot",
        help="render one view of a series to a PNG (no window)",
        description="Render one view of a series to a PNG with the viewer's rendering code, offscreen: "
                    "radiological orientation, pixel aspect from the spacing, orientation letters.",
    )
    parser.add_argument("path", metavar="PATH", help="a DICOM folder or file, NIfTI/NRRD/MHA, image")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write")
    parser.add_argument("--series", type=int, default=0, metavar="N", help="series number in PATH (default 0)")
    parser.add_argument("--view", choices=VIEWS, default="axial")
    parser.add_argument("--slice", type=int, default=None, metavar="N",
                        help="slice in the view's order, 0-based (axial: inferior to superior; default: middle)")
    parser.add_argument("--window", metavar="PRESET|C,W",
                        help="a preset (lung, mediastinum, abdomen, liver, bone, brain, file) or center,width")
    parser.add_argument("--overlay", metavar="MASK", help="a label volume on the same grid")
    parser.add_argument("--opacity", type=float, default=0.5, help="overlay opacity 0..1 (default 0.5)")
    parser.add_argument("--size", metavar="WxH", help="canvas size in pixels (default: the plane at its finest pixel)")
    parser.add_argument("--no-labels", action="store_true", help="leave out the orientation letters")
    parser.set_defaults(func=run)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """"800x600" -> (800, 600); None stays None."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise KdviewerError(f"--size {text!r}: expected WxH, e.g. 800x600") from None
    if not (0 < w <= 16384 and 0 < h <= 16384):
        raise KdviewerError(f"--size {text!r}: width and height must be 1..16384")
    return w, h


def run(args: argparse.Namespace) -> int:
    """Load, render and write the PNG; bad input raises KdviewerError (one line, exit 2)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    from kdviewer.gui.image_export import save_png
    from kdviewer.gui.render import render_view
    from kdviewer.gui.viewer_state import ViewerState
    from kdviewer.imaging.window import parse_window
    from kdviewer.study.open import load_series, load_volume, open_path

    size = parse_size(args.size)
    scan = open_path(args.path)
    if not 0 <= args.series < len(scan.series):
        raise KdviewerError(f"{args.path}: --series {args.series}: there are {len(scan.series)} series (0..{len(scan.series) - 1})")
    volume = load_series(scan.series[args.series])
    overlay = load_volume(args.overlay) if args.overlay else None
    window = None
    if args.window:
        state = ViewerState()
        state.set_volume(volume)
        try:
            window = parse_window(args.window, state.presets)
        except ValueError as exc:
            raise KdviewerError(f"--window: {exc}") from None
    try:
        rgba = render_view(volume, args.view, args.slice, window, overlay, args.opacity, size)
    except ValueError as exc:
        raise KdviewerError(f"{args.path}: {exc}") from None
    app = QGuiApplication.instance() or QGuiApplication(["kdviewer"])  # fonts for the letters
    # A 2-D picture (photo, X-ray) has no patient axes to label.
    save_png(rgba, args.out, None if args.no_labels or volume.is_2d else args.view)
    del app
    print(f"{args.out}: {args.view} slice {args.slice if args.slice is not None else 'middle'}, "
          f"{rgba.shape[1]}x{rgba.shape[0]}")
    return 0
