"""The mouse on a slice view: a pyqtgraph ViewBox that turns gestures into calls on its owner.

Gestures (also listed in the help dialog):
wheel: next/previous slice; Ctrl+wheel: zoom; right drag: zoom; middle drag: pan;
left drag: depends on the mouse mode ("crosshair", "window", "pan", "zoom", "measure");
Shift+left drag: window/level in any mode.
"""

from __future__ import annotations

from typing import Protocol

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt

MODES = ("crosshair", "window", "pan", "zoom", "measure")


class GestureTarget(Protocol):
    """What a SliceViewBox calls; positions are view coordinates in mm (x right, y down)."""

    mode: str
    auto_fit: bool

    def on_scroll(self, steps: int) -> None: ...
    def on_point(self, x_mm: float, y_mm: float) -> None: ...
    def on_window_drag(self, dx_px: float, dy_px: float) -> None: ...
    def on_measure(self, start: QPointF, end: QPointF, finished: bool) -> None: ...


class SliceViewBox(pg.ViewBox):
    """A ViewBox with y down, locked aspect (view units are mm) and the viewer's mouse gestures."""

    def __init__(self, owner: GestureTarget) -> None:
        super().__init__(invertY=True, lockAspect=True, enableMenu=False)
        self.owner = owner
        self.setMouseEnabled(False, False)  # our own gestures replace pyqtgraph's

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt name
        """Wheel: change slice; Ctrl+wheel: zoom around the mouse."""
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        if delta == 0:
            return
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            factor = 0.85 if delta > 0 else 1 / 0.85
            self.scaleBy((factor, factor), center=self.mapToView(ev.pos()))
            self.owner.auto_fit = False
        else:
            notches = int(delta / 120)  # 120 per notch of a mouse wheel; touchpads send less
            self.owner.on_scroll(notches or (1 if delta > 0 else -1))
        ev.accept()

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - Qt name
        """Left click moves the crosshair (crosshair mode)."""
        if ev.button() == Qt.MouseButton.LeftButton and self.owner.mode == "crosshair":
            p = self.mapToView(ev.pos())
            self.owner.on_point(p.x(), p.y())
            ev.accept()

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt name
        """Drags: see the module docstring."""
        ev.accept()
        button = ev.button()
        delta = ev.pos() - ev.lastPos()
        shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        action = {Qt.MouseButton.RightButton: "zoom", Qt.MouseButton.MiddleButton: "pan"}.get(button)
        if button == Qt.MouseButton.LeftButton:
            action = "window" if shift else self.owner.mode
        if action in ("pan", "zoom"):
            self.owner.auto_fit = False
        if action == "window":
            self.owner.on_window_drag(delta.x(), delta.y())
        elif action == "pan":
            start, now = self.mapToView(ev.lastPos()), self.mapToView(ev.pos())
            self.translateBy(x=start.x() - now.x(), y=start.y() - now.y())
        elif action == "zoom":
            factor = 1.01 ** delta.y()
            self.scaleBy((factor, factor), center=self.mapToView(ev.buttonDownPos()))
        elif action == "crosshair":
            p = self.mapToView(ev.pos())
            self.owner.on_point(p.x(), p.y())
        elif action == "measure":
            self.owner.on_measure(self.mapToView(ev.buttonDownPos()), self.mapToView(ev.pos()), ev.isFinish())
