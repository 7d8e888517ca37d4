"""Two slice views side by side, teacher left and student right, that move together.

Each side is a `SliceView` (axial) of its own `ViewerState`, so each can show its own model's mask or
output; the states follow each other (slice and crosshair always, window while both show the same kind
of image) and the views' ViewBoxes are linked, so zoom and pan are shared.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from kdviewer.gui.slice_view import SliceView
from kdviewer.gui.viewer_state import ViewerState
from kdviewer.study.volume import Volume

TITLE_STYLE = "font-weight: bold; padding: 2px 4px;"


class LinkedViews(QWidget):
    """`left` (teacher) and `right` (student): two SliceViews whose slice, window, zoom and pan move together."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.states = (ViewerState(), ViewerState())
        for s in self.states:
            s.layout = "single"
        self.left = SliceView(self.states[0], "axial", self)
        self.right = SliceView(self.states[1], "axial", self)
        self.right.box.setXLink(self.left.box)
        self.right.box.setYLink(self.left.box)
        for v in (self.left, self.right):  # no crosshair before there is an image (a view shows it with one)
            v.vline.hide()
            v.hline.hide()
        self.titles = (QLabel("Teacher", self), QLabel("Student", self))
        for t in self.titles:
            t.setStyleSheet(TITLE_STYLE)
            t.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(4)
        grid.setVerticalSpacing(0)
        grid.addWidget(self.titles[0], 0, 0)
        grid.addWidget(self.titles[1], 0, 1)
        grid.addWidget(self.left, 1, 0)
        grid.addWidget(self.right, 1, 1)
        grid.setRowStretch(1, 1)
        self.sync_window = True
        self._syncing = False
        self.states[0].listen(lambda e: self._follow(0, e))
        self.states[1].listen(lambda e: self._follow(1, e))

    @property
    def views(self) -> tuple[SliceView, SliceView]:
        return self.left, self.right

    def set_titles(self, left: str, right: str) -> None:
        """The captions above the two views."""
        self.titles[0].setText(left)
        self.titles[1].setText(right)

    def show_pair(self, left: Volume, right: Volume, left_labels: Volume | None = None,
                  right_labels: Volume | None = None, sync_window: bool = True) -> None:
        """Show `left` and `right` (same slice count), each with its label overlay; the slice stays where it was
        when the slice count is unchanged; `sync_window`: the right view takes the left view's window."""
        keep = None
        a, b = self.states
        if a.volume is not None and a.volume.shape[0] == left.shape[0]:
            keep = a.slice_index("axial")
        self.sync_window = sync_window
        self._syncing = True
        try:
            a.set_volume(left)
            b.set_volume(right)
            if keep is not None:
                a.set_slice("axial", keep)
            b.cursor = a.cursor
            if sync_window:
                b.window = a.window
            a.set_overlay(left_labels)
            b.set_overlay(right_labels)
        finally:
            self._syncing = False
        b._emit("cursor")
        b._emit("window")

    def set_overlay_opacity(self, opacity: float) -> None:
        """The opacity of both overlays (0..1)."""
        for s in self.states:
            s.set_overlay_opacity(opacity)

    def _follow(self, source: int, event: str) -> None:
        """Copy a change of one state to the other (cursor always; window when synchronised)."""
        if self._syncing:
            return
        src, dst = self.states[source], self.states[1 - source]
        if src.volume is None or dst.volume is None:
            return
        self._syncing = True
        try:
            if event == "cursor" and dst.cursor != src.cursor and dst.array_lps.shape[:3] == src.array_lps.shape[:3]:
                dst.cursor = src.cursor
                dst._emit("cursor")
            elif event == "window" and self.sync_window and dst.window != src.window:
                dst.set_window(*src.window)
        finally:
            self._syncing = False

    def close_views(self) -> None:
        """Stop the views following their states (closing the panel)."""
        for v in self.views:
            v.close()
