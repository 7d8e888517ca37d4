"""Before/after in one slice view: the enhanced series drawn right of a draggable vertical divider.

The original plane stays where it is; the enhanced plane of the same slice is cropped at the divider
and laid over the right part, in millimetres, so a super-resolved series (more, smaller pixels over
the same extent) lines up with its source. Both go through the view's window.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

from kdviewer.gui import planes
from kdviewer.gui.geometry import display_geometry
from kdviewer.imaging.window import window_bounds
from kdviewer.study.volume import Volume

DIVIDER_PEN = pg.mkPen((80, 200, 255), width=2)
DIVIDER_HOVER_PEN = pg.mkPen((160, 230, 255), width=4)


def after_slice_index(index: int, count_before: int, count_after: int) -> int:
    """The enhanced series' slice at the same position as slice `index` of the source (same extent)."""
    if count_after == count_before:
        return index
    return int(np.clip(np.floor((index + 0.5) * count_after / count_before), 0, count_after - 1))


def split_column(fraction: float, columns: int) -> int:
    """The first column right of a divider at `fraction` (0 = left edge, 1 = right edge) of the width."""
    return int(np.clip(round(float(fraction) * columns), 0, columns))


class CompareLayer:
    """The "after" image and the divider of one SliceView (see the module docstring)."""

    def __init__(self, view) -> None:
        self.view = view  # a SliceView
        self.before: Volume | None = None
        self.after_lps: np.ndarray | None = None
        self.enabled = False
        self.fraction = 0.5
        self._moving = False
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(0.5)  # above the original, below labels and crosshair
        self.line = pg.InfiniteLine(angle=90, movable=True, pen=DIVIDER_PEN, hoverPen=DIVIDER_HOVER_PEN)
        self.line.setZValue(4)
        self.line.sigPositionChanged.connect(self._line_moved)
        self.before_text = pg.TextItem("before", color=(80, 200, 255), anchor=(1, 0))
        self.after_text = pg.TextItem("after", color=(80, 200, 255), anchor=(0, 0))
        view.box.addItem(self.image)
        for item in (self.line, self.before_text, self.after_text):
            item.setZValue(4)
            view.box.addItem(item, ignoreBounds=True)
        self._hide()

    def set_pair(self, before: Volume | None, after: Volume | None) -> None:
        """Compare `before` (a volume the views show) with `after` (its enhanced series); None: no pair."""
        self.before = before
        self.after_lps = None if after is None else display_geometry(after).array_lps
        self.update()

    def set_enabled(self, enabled: bool) -> None:
        """Show or hide the comparison (the toggle)."""
        self.enabled = bool(enabled)
        self.update()

    def set_fraction(self, fraction: float) -> None:
        """Put the divider at `fraction` of the plane's width (0..1)."""
        self.fraction = float(np.clip(fraction, 0.0, 1.0))
        self.update()

    @property
    def active(self) -> bool:
        """True while the comparison is on screen in this view."""
        state = self.view.state
        return (self.enabled and self.after_lps is not None and self.before is not None
                and state.volume is self.before and self.view.view in state.views)

    def _hide(self) -> None:
        for item in (self.image, self.line, self.before_text, self.after_text):
            item.hide()

    def _width_height_mm(self) -> tuple[float, float]:
        state = self.view.state
        plane = state.plane(self.view.view)
        row_mm, col_mm = state.pixel_size_mm(self.view.view)
        return plane.shape[1] * col_mm, plane.shape[0] * row_mm

    def update(self) -> None:
        """Draw the enhanced plane right of the divider for the view's current slice and window."""
        if not self.active:
            self._hide()
            return
        state, name = self.view.state, self.view.view
        width_mm, height_mm = self._width_height_mm()
        index = after_slice_index(state.slice_index(name), state.slice_count(name),
                                  planes.slice_count(self.after_lps.shape, name))
        after = planes.plane(self.after_lps, name, index)
        first = split_column(self.fraction, after.shape[1])
        col_mm = width_mm / after.shape[1]
        if first < after.shape[1]:
            crop = np.ascontiguousarray(after[:, first:])
            self.image.setImage(crop, autoLevels=False, levels=window_bounds(*state.window))
            self.image.setRect(QRectF(first * col_mm, 0.0, crop.shape[1] * col_mm, height_mm))
            self.image.show()
        else:
            self.image.hide()
        x = self.fraction * width_mm
        self._moving = True
        try:
            self.line.setPos(x)
        finally:
            self._moving = False
        self.before_text.setPos(x, 0.0)
        self.after_text.setPos(x, 0.0)
        for item in (self.line, self.before_text, self.after_text):
            item.show()

    def _line_moved(self) -> None:
        if self._moving or not self.active:
            return
        width_mm, _ = self._width_height_mm()
        self.set_fraction(self.line.value() / width_mm if width_mm > 0 else 0.5)
