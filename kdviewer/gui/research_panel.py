"""The "Research" dock: a student next to its teacher ("Compare") and distillation in the background ("Distil").

Like the AI dock, it builds its content only when first shown (View → Research panel): the tabs import
the runtime (onnxruntime, scipy), which the viewer need not load before its first slice. Until then the
dock holds a line of text; a background thread imports the Compare tab's logic, then the tabs are built.
The Distil tab (`kdviewer.gui.research_distill.DistilTab`) is added when that module is present, else a
placeholder says so.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QThread
from PySide6.QtWidgets import QDockWidget, QLabel, QTabWidget, QWidget

from kdviewer.gui.viewer_state import ViewerState

if TYPE_CHECKING:
    from kdviewer.gui.research_compare import CompareTab
    from kdviewer.study.volume import Volume

ShowMessage = Callable[[QWidget, str, str], object]
LOADING_TEXT = "Loading the research tools…"
DISTIL_MODULE = "kdviewer.gui.research_distill"


class _ImportThread(QThread):
    """Imports the Compare tab's logic (the runtime, no Qt) off the event loop."""

    def run(self) -> None:  # noqa: D102 - QThread entry point
        import kdviewer.gui.research_compare_logic  # noqa: F401


def _placeholder(text: str, parent: QWidget) -> QLabel:
    label = QLabel(text, parent)
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    label.setContentsMargins(8, 8, 8, 8)
    return label


class ResearchPanel(QTabWidget):
    """Tabs "Compare" (`CompareTab`) and "Distil" (`DistilTab`, or a placeholder without it)."""

    def __init__(self, state: ViewerState, open_path: Callable[[Path], None],
                 show_case: Callable[[Volume, Volume | None], None], show_error: ShowMessage,
                 parent: QWidget | None = None, main_window: QWidget | None = None) -> None:
        super().__init__(parent)
        from kdviewer.gui.research_compare import CompareTab

        self.compare: CompareTab = CompareTab(state, open_path, show_case, show_error, parent=self)
        self.addTab(self.compare, "Compare")
        self.distil = self._distil_tab(state, show_error, main_window)
        self.addTab(self.distil, "Distil")
        installed = getattr(self.distil, "model_installed", None)
        if installed is not None:  # a new student can be compared at once
            installed.connect(lambda _id: self.compare.refresh(rescan=True))

    def _distil_tab(self, state: ViewerState, show_error: ShowMessage, main_window: QWidget | None) -> QWidget:
        """The DistilTab when its module exists (given the arguments it names), else a placeholder."""
        if importlib.util.find_spec(DISTIL_MODULE) is None:
            return _placeholder("Distillation in the background is not available in this build.", self)
        try:
            module = importlib.import_module(DISTIL_MODULE)
            tab_class = module.DistilTab
            offered = {"state": state, "show_error": show_error, "parent": self, "main_window": main_window}
            names = inspect.signature(tab_class).parameters
            return tab_class(**{k: v for k, v in offered.items() if k in names})
        except Exception as exc:  # noqa: BLE001 - the Compare tab keeps working whatever the Distil tab does
            return _placeholder(f"The Distil tab could not start: {exc}", self)

    def wait(self, timeout_ms: int = 10000) -> None:
        """Cancel and wait for background runs (closing the window)."""
        self.compare.wait(timeout_ms)
        wait = getattr(self.distil, "wait", None)
        if callable(wait):
            wait(timeout_ms)


class ResearchDock(QDockWidget):
    """The "Research" dock (object name "research"), hidden at first; the panel is built when first shown."""

    def __init__(self, state: ViewerState, open_path: Callable[[Path], None],
                 show_case: Callable[[Volume, Volume | None], None], show_error: ShowMessage,
                 parent: QWidget) -> None:
        super().__init__("Research", parent)
        self.setObjectName("research")
        self._panel_args = (state, open_path, show_case, show_error)
        self._panel: ResearchPanel | None = None
        self._importer: _ImportThread | None = None
        self.setWidget(_placeholder(LOADING_TEXT, self))
        self.visibilityChanged.connect(self._on_visibility)
        action = self.toggleViewAction()
        action.setText("Research panel")
        action.setObjectName("toggle_research")

    def panel(self) -> ResearchPanel:
        """The research panel, built (and put in the dock) on the first call."""
        if self._panel is None:
            self._panel = ResearchPanel(*self._panel_args, parent=self, main_window=self.parentWidget())
            placeholder = self.widget()
            self.setWidget(self._panel)
            placeholder.deleteLater()
        return self._panel

    def built_panel(self) -> ResearchPanel | None:
        """The panel if it has been built, else None (nothing is imported)."""
        return self._panel

    def wait(self, timeout_ms: int = 10000) -> None:
        """Wait for the background import and cancel and wait for running comparisons (closing the window)."""
        if self._importer is not None:
            self._importer.wait(timeout_ms)
        if self._panel is not None:
            self._panel.wait(timeout_ms)

    def _on_visibility(self, visible: bool) -> None:
        if not visible or self._panel is not None:
            return
        if self._importer is None:
            self._importer = _ImportThread(self)
            self._importer.finished.connect(self._on_imported)
            self._importer.start()

    def _on_imported(self) -> None:
        if self._panel is None:
            self.panel()
