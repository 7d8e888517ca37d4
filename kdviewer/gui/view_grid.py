"""The slice views arranged 1×3, 2×2 (fourth pane: series information) or one view alone."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from kdviewer.gui.planes import VIEWS
from kdviewer.gui.slice_view import SliceView
from kdviewer.gui.viewer_state import ViewerState
from kdviewer.study.volume import Volume

POSITIONS = {
    "1x3": {"axial": (0, 0), "coronal": (0, 1), "sagittal": (0, 2)},
    "2x2": {"axial": (0, 0), "coronal": (0, 1), "sagittal": (1, 0), "info": (1, 1)},
}


def series_info_text(state: ViewerState) -> str:
    """The fourth pane's text: what is loaded, its geometry, window and warnings."""
    volume = state.volume
    if volume is None:
        return "No series loaded.\n\nFile → Open, drop a file or folder here, or press F1 for help."
    info = volume.info
    z, y, x = volume.shape
    sx, sy, sz = volume.spacing
    lines = [
        info.description or "(no description)",
        f"Modality {info.modality}   {x}×{y}×{z} voxels   {sx:.3f}×{sy:.3f}×{sz:.3f} mm",
        f"Source {info.source}" if info.source else "",
        f"Window C {state.window.center:g} W {state.window.width:g} {info.units}".rstrip(),
        f"Overlay: {state.overlay.info.source or 'label volume'}" if state.overlay is not None else "",
        *(f"⚠ {w}" for w in info.warnings),
    ]
    return "\n".join(line for line in lines if line)


class ViewGrid(QWidget):
    """The three SliceViews of one ViewerState, plus an information pane for the 2×2 layout."""

    def __init__(self, state: ViewerState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.views = {view: SliceView(state, view, self) for view in VIEWS}
        self.info = QLabel(self)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.info.setWordWrap(True)
        self.info.setStyleSheet("background: black; color: rgb(220, 220, 220); padding: 8px;")
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.active = "axial"
        self.layout_name = ""
        self._positions: dict[str, tuple[int, int]] = {}  # where the panes are now
        for view in self.views.values():
            view.activated.connect(self._set_active)
        state.listen(self._on_state)
        self.set_layout(state.layout)

    def _set_active(self, view: str) -> None:
        self.active = view

    def _on_state(self, event: str) -> None:
        if event in ("layout", "volume"):
            self.set_layout(self.state.layout)
        if event in ("volume", "window", "overlay"):
            self.info.setText(series_info_text(self.state))

    def set_layout(self, layout: str) -> None:
        """Arrange the panes: "1x3", "2x2" or "single" (the active view alone)."""
        positions = POSITIONS.get(layout, {self.active: (0, 0)})
        if self.state.volume is not None and self.state.volume.is_2d and not self.state.preview:
            positions = {"axial": (0, 0)}
        if positions != self._positions:  # every new volume comes here: re-arrange only what changed
            self._place(positions)
        self.info.setText(series_info_text(self.state))
        self.layout_name = layout

    def _place(self, positions: dict[str, tuple[int, int]]) -> None:
        panes = {**self.views, "info": self.info}
        for widget in panes.values():
            self.grid.removeWidget(widget)
            widget.hide()
        for r in range(2):
            self.grid.setRowStretch(r, 0)
        for c in range(3):
            self.grid.setColumnStretch(c, 0)
        for name, (row, col) in positions.items():
            self.grid.addWidget(panes[name], row, col)
            self.grid.setRowStretch(row, 1)
            self.grid.setColumnStretch(col, 1)
            panes[name].show()
        self._positions = dict(positions)

    def visible_views(self) -> list[SliceView]:
        """The slice views on screen now."""
        return [v for v in self.views.values() if not v.isHidden()]

    # -- AI layers, on every view ------------------------------------------------------------
    def set_heatmap(self, heat_lps: np.ndarray | None) -> None:
        """A (z, y, x) uint8 saliency map in LPS order over every view (None: remove it)."""
        for view in self.views.values():
            view.set_heatmap(heat_lps)

    def set_heat_visible(self, visible: bool) -> None:
        """Show or hide the saliency map."""
        for view in self.views.values():
            view.set_heat_visible(visible)

    def set_outline(self, outline: bool) -> None:
        """Label overlay as outlines (True) or filled (False)."""
        for view in self.views.values():
            view.set_outline(outline)

    def set_ai_text(self, text: str) -> None:
        """A short AI result line in each view's corner ("" hides it)."""
        for view in self.views.values():
            view.set_ai_text(text)

    def set_compare(self, before: Volume | None, after: Volume | None) -> None:
        """Compare `before` with its enhanced series `after` (divider views); None: no comparison."""
        for view in self.views.values():
            view.compare.set_pair(before, after)

    def set_compare_enabled(self, enabled: bool) -> None:
        """Show or hide the before/after divider in every view."""
        for view in self.views.values():
            view.compare.set_enabled(enabled)
