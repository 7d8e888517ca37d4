"""One plane of the volume on screen: grey image, label overlay, crosshair, orientation letters.

Also the AI results' layers: a saliency heat map, a short result text, the outline mode of the
label overlay, and the before/after comparison of an enhanced series (`compare_view.CompareLayer`).

A thin widget over `ViewerState`: it draws the state's plane with fixed levels (the window bounds,
no per-frame conversion in Python) and the uint8 label plane through a colour lookup table, and
hands every gesture back to the state.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QLabel

from kdviewer.gui import planes
from kdviewer.gui.compare_view import CompareLayer
from kdviewer.gui.measure import Measurement
from kdviewer.gui.overlay import HEAT_LUT, LABEL_LUT, label_outline
from kdviewer.gui.view_box import SliceViewBox
from kdviewer.gui.viewer_state import ViewerState
from kdviewer.imaging.window import window_bounds

CROSSHAIR_PEN = pg.mkPen((255, 200, 0, 160), width=1)
MEASURE_PEN = pg.mkPen((0, 255, 120), width=2)
LETTER_GAP_PX = 16  # the corner texts keep this far from an orientation letter, or move a line away
SLICE_KEYS = {
    Qt.Key.Key_PageUp: 1, Qt.Key.Key_Up: 1, Qt.Key.Key_Right: 1,
    Qt.Key.Key_PageDown: -1, Qt.Key.Key_Down: -1, Qt.Key.Key_Left: -1,
}


class SliceView(pg.GraphicsView):
    """The axial, coronal or sagittal view of a ViewerState."""

    hovered = Signal(str)  # readout text of the voxel under the mouse ("" outside)
    activated = Signal(str)  # this view's name, when the user interacts with it
    measured = Signal(str)  # label of a finished measurement

    def __init__(self, state: ViewerState, view: str, parent=None) -> None:
        super().__init__(parent, background="k")
        self.state = state
        self.view = planes.check_view(view)
        self.mode = "crosshair"
        self.auto_fit = True  # fit the plane to the view until the user zooms or pans
        self.measurements: list[Measurement] = []
        self.box = SliceViewBox(self)
        self.setCentralItem(self.box)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.labels = pg.ImageItem(axisOrder="row-major")
        self.labels.setZValue(1)
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setZValue(1.5)
        self.box.addItem(self.image)
        self.box.addItem(self.labels)
        self.box.addItem(self.heat)
        self.outline = False  # draw label boundaries only
        self.heat_lps: np.ndarray | None = None  # (z, y, x) uint8 saliency in LPS order, or None
        self.heat_visible = True
        self._heat_version = 0
        self.vline = pg.InfiniteLine(angle=90, pen=CROSSHAIR_PEN, movable=False)
        self.hline = pg.InfiniteLine(angle=0, pen=CROSSHAIR_PEN, movable=False)
        for line in (self.vline, self.hline):
            line.setZValue(2)
            self.box.addItem(line, ignoreBounds=True)
        self.ruler = pg.PlotDataItem(pen=MEASURE_PEN)
        self.ruler_text = pg.TextItem(color=(0, 255, 120), anchor=(0, 1))
        for item in (self.ruler, self.ruler_text):
            item.setZValue(3)
            self.box.addItem(item, ignoreBounds=True)
        self.edge = {side: self._make_label() for side in ("top", "bottom", "left", "right")}
        self.corner = self._make_label()
        self.ai_text = self._make_label()
        self.ai_text.setStyleSheet("color: rgb(120, 230, 255); background: rgba(0, 0, 0, 140); padding: 2px;")
        self.ai_text.hide()
        self.compare = CompareLayer(self)
        self.setFocusPolicy(Qt.FocusPolicy.WheelFocus)
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        self._shape: tuple[int, ...] | None = None
        self._labels_rect: QRectF | None = None
        self._drawn: tuple | None = None  # what _draw_images last drew
        state.listen(self._on_state)
        if state.volume is not None:
            self._on_state("volume")

    # -- drawing -----------------------------------------------------------------------------
    def _make_label(self) -> QLabel:
        label = QLabel(self)
        label.setStyleSheet("color: rgb(255, 220, 120); background: transparent; font-weight: bold;")
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        return label

    def _on_state(self, event: str) -> None:
        if self.state.volume is None:
            return
        if self.view not in self.state.views:
            if event == "volume":
                self.blank()
            return
        if event == "volume":
            self._shape = self._labels_rect = self._drawn = None
            self.clear_measurements()
            oriented = not self.state.volume.is_2d or self.state.preview  # a photo or X-ray has no LPS axes
            for side, label in self.edge.items():
                label.setText(planes.EDGE_LABELS[self.view][side] if oriented else "")
            self._place_labels()
        if event in ("volume", "cursor", "window", "overlay"):
            self.redraw()
        if event == "volume":
            self.reset_view()

    def redraw(self) -> None:
        """Draw the state's current plane and overlay (only when they changed), crosshair and texts."""
        state = self.state
        index = state.slice_index(self.view)
        key = (index, state.window, state.overlay_version, state.overlay_opacity, state.overlay_visible,
               self.outline, self._heat_version, self.heat_visible)
        if key != self._drawn:
            self._drawn = key
            self._draw_images()
        row_mm, col_mm = state.pixel_size_mm(self.view)
        row, col = state.crosshair(self.view)
        self.vline.setPos((col + 0.5) * col_mm)
        self.hline.setPos((row + 0.5) * row_mm)
        linked = len(state.views) > 1 and not state.preview  # no crosshair on a lone 2-D image
        self.vline.setVisible(linked)
        self.hline.setVisible(linked)
        self.compare.update()

    def _draw_images(self) -> None:
        state = self.state
        plane = state.plane(self.view)
        levels = (0, 255) if plane.ndim == 3 and plane.dtype == np.uint8 else window_bounds(*state.window)
        self.image.setImage(plane, autoLevels=False, levels=levels)
        labels = state.overlay_plane(self.view)
        row_mm, col_mm = state.pixel_size_mm(self.view)
        rect = QRectF(0, 0, plane.shape[1] * col_mm, plane.shape[0] * row_mm)
        if self._shape != plane.shape[:2]:
            self._shape = plane.shape[:2]
            self.image.setRect(rect)
        if labels is None or not state.overlay_visible:
            self.labels.hide()
        else:
            if self.outline:
                labels = label_outline(labels)
            self.labels.setImage(labels, autoLevels=False, levels=(0, 255), lut=LABEL_LUT)
            self.labels.setOpacity(state.overlay_opacity)
            self.labels.show()
            if self._labels_rect != rect:
                self._labels_rect = rect
                self.labels.setRect(rect)
        self._draw_heat(rect)
        index, count = state.slice_index(self.view), state.slice_count(self.view)
        c, w = state.window
        oblique = state.geometry.obliquity_deg
        tilt = f"   oblique {oblique:.0f}°" if oblique >= 1 else ""  # shown on its nearest axes, not resampled
        self.corner.setText(f"{self.view} {index + 1}/{count}  W{w:.0f} L{c:.0f}{tilt}")
        self._place_corner()
        visible = [m for m in self.measurements if m.slice_index == index]
        self._show_ruler(visible[-1] if visible else None)

    def _draw_heat(self, rect: QRectF) -> None:
        state = self.state
        heat = self.heat_lps
        if heat is None or not self.heat_visible or heat.shape[:3] != state.array_lps.shape[:3]:
            self.heat.hide()
            return
        self.heat.setImage(planes.plane(heat, self.view, state.slice_index(self.view)),
                           autoLevels=False, levels=(0, 255), lut=HEAT_LUT)
        self.heat.setRect(rect)
        self.heat.show()

    # -- AI layers (set by the AI panel through the ViewGrid) ---------------------------------
    def set_heatmap(self, heat_lps: np.ndarray | None) -> None:
        """Show a (z, y, x) uint8 saliency map in LPS order over the image (None: remove it)."""
        self.heat_lps = heat_lps
        self._heat_version += 1
        if self.state.volume is not None and self.view in self.state.views:
            self.redraw()

    def set_heat_visible(self, visible: bool) -> None:
        """Show or hide the saliency map (kept)."""
        self.heat_visible = bool(visible)
        if self.state.volume is not None and self.view in self.state.views:
            self.redraw()

    def set_outline(self, outline: bool) -> None:
        """Draw the label overlay as outlines (True) or filled regions (False)."""
        self.outline = bool(outline)
        if self.state.volume is not None and self.view in self.state.views:
            self.redraw()

    def set_ai_text(self, text: str) -> None:
        """A short result line in the view's top-left corner ("" hides it)."""
        self.ai_text.setText(text)
        self.ai_text.setVisible(bool(text))
        self._place_labels()

    def blank(self) -> None:
        """Show nothing (this view has no plane of the current volume, e.g. a 2-D image)."""
        self.image.clear()
        for item in (self.labels, self.heat, self.vline, self.hline):
            item.hide()
        self.compare.update()
        self._shape = self._labels_rect = self._drawn = None
        self.clear_measurements()
        self.corner.setText("")
        for label in self.edge.values():
            label.setText("")

    def reset_view(self) -> None:
        """Fit the whole plane in the view (zoom and pan reset); it stays fitted when the view resizes."""
        self.auto_fit = True
        if self.image.image is not None:
            self.box.autoRange(padding=0.0, items=[self.image])

    def close(self) -> None:
        """Stop following the state, then close: pyqtgraph's close() deletes the scene's items (and returns None)."""
        self.state.unlisten(self._on_state)
        super().close()

    def resizeEvent(self, ev) -> None:  # noqa: N802 - Qt name
        """Keep the plane fitted (until the user zooms or pans) and the letters on the edges."""
        super().resizeEvent(ev)
        # pyqtgraph resizes during its own __init__ (no layers yet) and in close(), after it has deleted the
        # scene's items (`closed`): fitting the deleted image then would crash.
        if self.closed or not hasattr(self, "compare"):
            return
        if self.auto_fit:
            self.reset_view()
        self._place_labels()

    def _place_labels(self) -> None:
        """Orientation letters on the middles of the edges, slice/window text bottom left, AI text top left."""
        w, h = self.width(), self.height()
        for label in (*self.edge.values(), self.ai_text):
            label.adjustSize()
        e = self.edge
        e["top"].move((w - e["top"].width()) // 2, 4)
        e["bottom"].move((w - e["bottom"].width()) // 2, h - e["bottom"].height() - 4)
        e["left"].move(4, (h - e["left"].height()) // 2)
        e["right"].move(w - e["right"].width() - 4, (h - e["right"].height()) // 2)
        top_y = 4
        if e["top"].text() and 4 + self.ai_text.width() + LETTER_GAP_PX > e["top"].x():
            top_y = e["top"].y() + e["top"].height() + 2  # below the letter when they would overlap
        self.ai_text.move(4, top_y)
        self._place_corner()

    def _place_corner(self) -> None:
        """Slice/window text bottom left; one line higher when it would reach the bottom letter."""
        self.corner.adjustSize()
        bottom = self.edge["bottom"]
        y = self.height() - self.corner.height() - 4
        if bottom.text():
            bottom.adjustSize()
            letter_x = (self.width() - bottom.width()) // 2
            if 4 + self.corner.width() + LETTER_GAP_PX > letter_x:
                y = self.height() - bottom.height() - 4 - self.corner.height() - 2
        self.corner.move(4, y)

    # -- gestures (called by SliceViewBox) ---------------------------------------------------
    def to_pixel(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """(row, col) continuous pixel position of a view point in mm."""
        row_mm, col_mm = self.state.pixel_size_mm(self.view)
        return y_mm / row_mm, x_mm / col_mm

    def on_scroll(self, steps: int) -> None:
        """Step this view's slices (wheel, keys)."""
        self.activated.emit(self.view)
        self.state.scroll(self.view, steps)

    def on_point(self, x_mm: float, y_mm: float) -> None:
        """Put the crosshair at a view point in mm (click or drag in crosshair mode)."""
        self.activated.emit(self.view)
        self.state.click(self.view, *self.to_pixel(x_mm, y_mm))

    def on_window_drag(self, dx_px: float, dy_px: float) -> None:
        """Change the window by a mouse movement in screen pixels."""
        self.activated.emit(self.view)
        self.state.drag_window(dx_px, dy_px)

    def on_measure(self, start: QPointF, end: QPointF, finished: bool) -> None:
        """Draw the ruler from `start` to `end` (view mm); keep it when the drag finishes."""
        m = Measurement(self.view, self.state.slice_index(self.view), (start.x(), start.y()), (end.x(), end.y()))
        self._show_ruler(m)
        if finished:
            self.measurements.append(m)
            self.measured.emit(m.label())

    def _show_ruler(self, m: Measurement | None) -> None:
        if m is None:
            self.ruler.setData([], [])
            self.ruler_text.setText("")
            return
        (x0, y0), (x1, y1) = m.start_mm, m.end_mm
        self.ruler.setData([x0, x1], [y0, y1])
        self.ruler_text.setText(m.label())
        self.ruler_text.setPos(x1, y1)

    def clear_measurements(self) -> None:
        """Forget this view's measurements."""
        self.measurements.clear()
        self._show_ruler(None)

    def keyPressEvent(self, ev: QKeyEvent) -> None:  # noqa: N802 - Qt name
        """PageUp/PageDown and the arrow keys step slices; R resets zoom and pan."""
        if ev.key() in SLICE_KEYS and self.state.volume is not None:
            self.on_scroll(SLICE_KEYS[ev.key()])
        elif ev.key() == Qt.Key.Key_R:
            self.reset_view()
        else:
            super().keyPressEvent(ev)

    def _mouse_moved(self, scene_pos) -> None:
        if self.state.volume is None or self.view not in self.state.views or self.state.preview:
            self.hovered.emit("")  # a preview slice has no reliable position yet
            return
        p = self.box.mapSceneToView(scene_pos)
        readout = self.state.readout(self.view, *self.to_pixel(p.x(), p.y()))
        self.hovered.emit(readout.text() if readout else "")
