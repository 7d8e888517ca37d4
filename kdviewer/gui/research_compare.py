"""The Research panel's "Compare" tab: pick a teacher/student pair, then compare them on the open study
or on a labelled folder (two sub-tabs, `StudyCompare` and `DatasetCompare`).

The pair list is `pair_entries` of the registry: comparable pairs first, then students that cannot be
compared (greyed, the reason in their tooltip and under the list).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from kdviewer.gui.research_compare_dataset import DatasetCompare
from kdviewer.gui.research_compare_logic import CompareLogic, PairEntry
from kdviewer.gui.research_compare_study import StudyCompare
from kdviewer.gui.viewer_state import ViewerState
from kdviewer.study.volume import Volume

ShowMessage = Callable[[QWidget, str, str], object]


class CompareTab(QWidget):
    """Pair picker over two sub-tabs: "On the open study" and "On a labelled folder".

    open_path(path): open a file in the viewer; show_case(volume, mask): show a case image as a new series
    of the session (with its truth mask as overlay); show_error(parent, title, message): a dialog.
    """

    def __init__(self, state: ViewerState, open_path: Callable[[Path], None],
                 show_case: Callable[[Volume, Volume | None], None], show_error: ShowMessage,
                 logic: CompareLogic | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.logic = logic or CompareLogic()
        self.entries: list[PairEntry] = []
        self.pair_combo = QComboBox(self)
        self.pair_combo.setMinimumContentsLength(30)
        self.rescan = QPushButton("Rescan", self)
        self.pair_note = QLabel("", self)
        self.pair_note.setWordWrap(True)
        self.pair_note.setStyleSheet("color: #666;")
        self.study = StudyCompare(self.logic, state, self.selected_pair, show_error, self)
        self.dataset = DatasetCompare(self.logic, self.selected_pair, open_path, show_case, show_error, self)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.study, "On the open study")
        self.tabs.addTab(self.dataset, "On a labelled folder")
        row = QHBoxLayout()
        row.addWidget(QLabel("Pair (student vs its teacher)", self))
        row.addWidget(self.pair_combo, 1)
        row.addWidget(self.rescan)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(row)
        layout.addWidget(self.pair_note)
        layout.addWidget(self.tabs, 1)
        self.pair_combo.currentIndexChanged.connect(self._on_pair)
        self.rescan.clicked.connect(lambda: self.refresh(rescan=True))
        self.refresh()

    def refresh(self, rescan: bool = False) -> None:
        """List the registry's pairs again (rescan: read the model folders again)."""
        current = self.selected_pair()
        self.entries = self.logic.pairs(rescan)
        self.pair_combo.blockSignals(True)
        self.pair_combo.clear()
        model = self.pair_combo.model()
        for k, e in enumerate(self.entries):
            self.pair_combo.addItem(e.title())
            self.pair_combo.setItemData(k, e.problem or f"{e.task}: {e.student_id} distilled from {e.teacher_id}",
                                        Qt.ItemDataRole.ToolTipRole)
            if not e.available and isinstance(model, QStandardItemModel):
                model.item(k).setEnabled(False)
        ids = [e.student_id for e in self.entries]
        if current is not None and current.student_id in ids:
            self.pair_combo.setCurrentIndex(ids.index(current.student_id))
        else:
            self.pair_combo.setCurrentIndex(0 if self.entries else -1)
        self.pair_combo.blockSignals(False)
        self._on_pair()

    def selected_pair(self) -> PairEntry | None:
        """The pair chosen (None when the registry holds none)."""
        k = self.pair_combo.currentIndex()
        return self.entries[k] if 0 <= k < len(self.entries) else None

    def select_pair(self, student_id: str) -> None:
        """Choose the pair of `student_id` (raises KeyError when it is not listed)."""
        ids = [e.student_id for e in self.entries]
        if student_id not in ids:
            raise KeyError(f"{student_id} is not listed (listed: {', '.join(ids) or 'none'})")
        self.pair_combo.setCurrentIndex(ids.index(student_id))

    def _on_pair(self) -> None:
        good = [e for e in self.entries if e.available]
        bad = [e for e in self.entries if not e.available]
        if not self.entries:
            note = ("No teacher/student pair in the registry: a student's card names its teacher "
                    "(models/ and your kdviewer/models folder).")
        else:
            note = f"{len(good)} comparable pair{'s' if len(good) != 1 else ''}."
            if bad:
                note += " Not comparable: " + "; ".join(f"{e.student_id}: {e.problem}" for e in bad[:3])
                note += f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        self.pair_note.setText(note)
        self.study.sync()
        self.dataset.sync()
        if self.dataset.preview is not None and not self.dataset.is_running():
            self.dataset.set_folder(self.dataset.preview.path)  # the task may have changed

    def wait(self, timeout_ms: int = 10000) -> None:
        """Cancel and wait for a running comparison (closing the window)."""
        self.study.wait(timeout_ms)
        self.dataset.wait(timeout_ms)
