"""Helpers shared by the viewer tests: data paths, loading, mouse gestures on pyqtgraph views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # as in conftest.py

IRCAD_DICOM = DATASETS / "ircadb-liver17" / "dicom"
IRCAD_MASK = DATASETS / "ircadb-liver17" / "liver_mask.nii.gz"
PACSMAN_DICOM = DATASETS / "pacsman-synthetic" / "dicomseries"
PACSMAN_BIDS = DATASETS / "pacsman-synthetic" / "bids" / "sub-000001_T1w.nii.gz"
PACSMAN_PNG = DATASETS / "pacsman-synthetic" / "png" / "pacsman.png"


def open_and_wait(qtbot, window, path: str | Path, timeout_ms: int = 20000):
    """Open `path` in `window` and wait until the full volume is shown; returns it."""
    with qtbot.waitSignal(window.volume_loaded, timeout=timeout_ms) as blocker:
        window.open_path(path)
    return blocker.args[0]


def widget_point(view, x_mm: float, y_mm: float) -> QPoint:
    """Viewport pixel of a view point in mm."""
    scene = view.box.mapViewToScene(QPointF(x_mm, y_mm))
    return view.mapFromScene(scene)


def pixel_point(view, row: float, col: float) -> QPoint:
    """Viewport pixel of the centre of plane pixel (row, col)."""
    row_mm, col_mm = view.state.pixel_size_mm(view.view)
    return widget_point(view, (col + 0.5) * col_mm, (row + 0.5) * row_mm)


def wheel(view, steps: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """Turn the mouse wheel over the middle of a view (positive: away from the user)."""
    centre = QPointF(view.viewport().width() / 2, view.viewport().height() / 2)
    event = QWheelEvent(centre, QPointF(view.viewport().mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * steps), Qt.MouseButton.NoButton, modifiers,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)


def _mouse(view, kind, pos: QPoint, button, buttons, modifiers) -> None:
    event = QMouseEvent(kind, QPointF(pos), QPointF(view.viewport().mapToGlobal(pos)), button, buttons, modifiers)
    QApplication.sendEvent(view.viewport(), event)


def drag(view, start: QPoint, end: QPoint, button=Qt.MouseButton.LeftButton,
         modifiers=Qt.KeyboardModifier.NoModifier, steps: int = 8) -> None:
    """Press at `start`, move in steps to `end` with the button held, release."""
    _mouse(view, QEvent.Type.MouseButtonPress, start, button, button, modifiers)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        p = QPoint(round(start.x() + (end.x() - start.x()) * t), round(start.y() + (end.y() - start.y()) * t))
        _mouse(view, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button, modifiers)
    _mouse(view, QEvent.Type.MouseButtonRelease, end, button, Qt.MouseButton.NoButton, modifiers)


def click(view, pos: QPoint, button=Qt.MouseButton.LeftButton) -> None:
    """Press and release at `pos` without moving."""
    _mouse(view, QEvent.Type.MouseButtonPress, pos, button, button, Qt.KeyboardModifier.NoModifier)
    _mouse(view, QEvent.Type.MouseButtonRelease, pos, button, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
