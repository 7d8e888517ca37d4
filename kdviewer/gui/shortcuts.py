"""Every keyboard shortcut and mouse gesture in one table: the menus use it and F1 shows it."""

from __future__ import annotations

from html import escape

from kdviewer.imaging.window import PRESETS

# Window presets on the number keys: 0 is the file's own (or automatic) window.
PRESET_KEYS: dict[str, str] = {"file": "0", **{name: str(n) for n, name in enumerate(PRESETS, start=1)}}

# Shortcuts of menu/toolbar actions, by action name.
ACTION_KEYS: dict[str, str] = {
    "open_file": "Ctrl+O",
    "open_folder": "Ctrl+Shift+O",
    "open_overlay": "Ctrl+L",
    "export_view": "Ctrl+E",
    "export_window": "Ctrl+Shift+E",
    "quit": "Ctrl+Q",
    "layout_1x3": "F2",
    "layout_2x2": "F3",
    "layout_single": "F4",
    "mode_crosshair": "C",
    "mode_window": "W",
    "mode_pan": "P",
    "mode_zoom": "Z",
    "mode_measure": "M",
    "toggle_overlay": "O",
    "reset_view": "R",
    "help": "F1",
}

KEYBOARD: tuple[tuple[str, str], ...] = (
    ("Ctrl+O / Ctrl+Shift+O", "open a file / a folder (or drop it on the window)"),
    ("Ctrl+L", "open an overlay (label volume on the same grid)"),
    ("Ctrl+E / Ctrl+Shift+E", "export a screenshot of the active view / the window (PNG)"),
    ("PageUp, Up, Right", "next slice in the active view"),
    ("PageDown, Down, Left", "previous slice in the active view"),
    ("R", "reset zoom and pan"),
    ("0", "the file's own window (automatic when it has none)"),
    *((PRESET_KEYS[name], f"{name} window (C {w.center:g}, W {w.width:g})") for name, w in PRESETS.items()),
    ("C / W / P / Z / M", "left mouse: crosshair / window-level / pan / zoom / measure"),
    ("O", "show or hide the overlay"),
    ("F2 / F3 / F4", "layout 1×3 / 2×2 / single view"),
    ("F1", "this help"),
    ("Ctrl+Q", "quit"),
)

MOUSE: tuple[tuple[str, str], ...] = (
    ("wheel", "next / previous slice"),
    ("Ctrl+wheel, right drag", "zoom"),
    ("middle drag", "pan"),
    ("Shift+left drag", "window/level: horizontal = width, vertical = level"),
    ("left click / drag", "crosshair: the other views follow (in crosshair mode)"),
    ("left drag in measure mode", "distance in mm"),
    ("hover", "value (HU or stored units), position in mm LPS and voxel index in the status bar"),
)


def help_html() -> str:
    """The help dialog's text: two tables, keyboard then mouse."""
    def table(rows: tuple[tuple[str, str], ...]) -> str:
        cells = "".join(f"<tr><td><b>{escape(k)}</b></td><td>{escape(v)}</td></tr>" for k, v in rows)
        return f"<table cellspacing='4'>{cells}</table>"
    return (f"<h3>Keyboard</h3>{table(KEYBOARD)}<h3>Mouse</h3>{table(MOUSE)}"
            "<p>Research use only. Not for diagnosis.</p>")
