"""Start the viewer: `run_viewer(paths)` makes the QApplication and the main window and runs it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtWidgets import QApplication

from kdviewer.gui import gc_guard
from kdviewer.gui.main_window import MainWindow


def make_application() -> QApplication:
    """The running QApplication, or a new one named for QSettings (organisation "kdviewer"), with Python's cycle
    collector run from its GUI thread only (`gc_guard`)."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("kdviewer")
    app.setApplicationName("kdviewer")
    gc_guard.install(app)
    return app  # type: ignore[return-value]


def run_viewer(paths: Sequence[str | Path] = (), overlay: str | Path | None = None) -> int:
    """Open the window on the first of `paths` (if any), with an optional label overlay; returns the exit code."""
    app = make_application()
    window = MainWindow()
    window.show()
    if paths:
        window.open_path(paths[0])
        if overlay is not None:
            window.load_overlay(overlay)  # shown once the image has loaded
    return app.exec()
