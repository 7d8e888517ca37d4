"""The dock of the AI panel, which builds the panel only when it is needed.

The panel imports the runtime (onnxruntime, scipy, scikit-image): the better part of a second the
viewer need not spend before its first slice is on screen. Until a whole series is shown the dock
holds a line of text (the models listed depend on the series). Then, while the dock is open, a
thread imports the panel's logic off the event loop and the panel replaces the text once it is in.
`panel()` builds it at once, whenever a caller needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QThread
from PySide6.QtWidgets import QDockWidget, QLabel, QWidget

from kdviewer.gui.viewer_state import ViewerState

if TYPE_CHECKING:
    from kdviewer.gui.ai_panel import AiPanel, ShowMessage
    from kdviewer.gui.view_grid import ViewGrid
    from kdviewer.study.volume import Volume

PLACEHOLDER_TEXT = "Open a series to see the models that fit it."  # the panel's own first status line


class _ImportThread(QThread):
    """Imports the panel's logic (the runtime and its libraries, no Qt), so the event loop never waits for them."""

    def run(self) -> None:  # noqa: D102 - QThread entry point
        import kdviewer.gui.ai_logic  # noqa: F401 - the panel's widgets are then imported in a few ms


class AiDock(QDockWidget):
    """The "AI models" dock (object name "ai"): a placeholder until the AiPanel is built; the arguments are the panel's."""

    def __init__(self, state: ViewerState, grid: ViewGrid, add_series: Callable[[Volume], int],
                 show_series: Callable[[Volume], None], show_error: ShowMessage, parent: QWidget) -> None:
        super().__init__("AI models", parent)
        self.setObjectName("ai")
        self.state = state
        self._panel_args = (state, grid, add_series, show_series, show_error)
        self._panel: AiPanel | None = None
        self._importer: _ImportThread | None = None
        self._imported = False
        placeholder = QLabel(PLACEHOLDER_TEXT, self)
        placeholder.setWordWrap(True)
        placeholder.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        placeholder.setContentsMargins(8, 8, 8, 8)
        self.setWidget(placeholder)
        state.listen(self._on_state)
        self.visibilityChanged.connect(self._on_visibility)

    def panel(self) -> AiPanel:
        """The AI panel, built (and put in the dock) on the first call."""
        if self._panel is None:
            from kdviewer.gui.ai_panel import AiPanel

            state, grid, add_series, show_series, show_error = self._panel_args
            self._panel = AiPanel(state, grid, add_series, show_series, show_error, parent=self)
            placeholder = self.widget()
            self.setWidget(self._panel)
            placeholder.deleteLater()
        return self._panel

    def built_panel(self) -> AiPanel | None:
        """The AI panel if it has been built, else None (nothing is imported)."""
        return self._panel

    def wait(self, timeout_ms: int = 10000) -> None:
        """Wait for the background import, if one runs (closing the window)."""
        if self._importer is not None:
            self._importer.wait(timeout_ms)

    def _on_state(self, event: str) -> None:
        if event == "volume":
            self._prepare()

    def _on_visibility(self, visible: bool) -> None:
        if visible:
            self._prepare()

    def _prepare(self) -> None:
        """Once a whole series is shown in an open dock: import in the background, then build the panel."""
        if self._panel is not None or not self.isVisible() or self.state.volume is None or self.state.preview:
            return
        if self._imported:
            self.panel()
        elif self._importer is None:
            self._importer = _ImportThread(self)
            self._importer.finished.connect(self._on_imported)
            self._importer.start()

    def _on_imported(self) -> None:
        self._imported = True
        self._prepare()
