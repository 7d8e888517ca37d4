"""The header of the current slice's file (DICOM elements, or image metadata) in a table with a filter box.

The rows come from `kdviewer.study.dicom_tags` (read on demand, no Qt); this widget only shows and
filters them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from kdviewer.study.dicom_tags import TagRow, filter_rows

COLUMNS = ("Tag", "Name", "VR", "Value")
INDENT = "    "  # per sequence level, in the Name column
NAME_WIDTH_PX = 105  # long keywords are elided (the tooltip and a wider dock show them whole)


def filter_tags(tags: Mapping[str, str], text: str) -> list[tuple[str, str]]:
    """The (name, value) pairs whose name or value contains `text` (case-insensitive), sorted by name."""
    needle = text.strip().lower()
    pairs = sorted((str(k), str(v)) for k, v in tags.items())
    if not needle:
        return pairs
    return [(k, v) for k, v in pairs if needle in k.lower() or needle in v.lower()]


class TagsPanel(QWidget):
    """A searchable table of header rows (tag, name, VR, value), nested sequence items indented."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list[TagRow] = []
        self.source = QLabel("", self)
        self.source.setWordWrap(True)
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter tags (tag, name, VR or value)")
        self.filter.setClearButtonEnabled(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        for column in (0, 2):  # tag and VR: as wide as their text
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(1, NAME_WIDTH_PX)
        header.setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._small = self.table.font()
        self._small.setPointSizeF(self._small.pointSizeF() * 0.85)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.source)
        layout.addWidget(self.filter)
        layout.addWidget(self.table)
        self.filter.textChanged.connect(self._refresh)

    def set_rows(self, rows: Sequence[TagRow], source: str = "") -> None:
        """Show another file's header rows (keeps the filter text); `source` names the file."""
        self.rows = list(rows)
        self.source.setText(source)
        self.source.setToolTip(source)
        self._refresh()

    def set_tags(self, tags: Mapping[str, str], source: str = "") -> None:
        """Show plain (name, value) pairs, sorted by name (a series without a file header)."""
        self.set_rows([TagRow("", str(k), "", str(v)) for k, v in sorted(tags.items())], source)

    def _refresh(self) -> None:
        rows = filter_rows(self.rows, self.filter.text())
        dicom = any(row.tag for row in self.rows)
        self.table.setColumnHidden(0, not dicom)  # metadata of other formats has no tags and VRs
        self.table.setColumnHidden(2, not dicom)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = (row.tag, INDENT * row.depth + row.name, row.vr, row.value)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column in (1, 3):
                    item.setToolTip(text)
                else:
                    item.setFont(self._small)  # tag and VR: narrow columns, so the value keeps some room
                self.table.setItem(r, column, item)

    def visible_rows(self) -> list[TagRow]:
        """The rows shown now (after the filter)."""
        return filter_rows(self.rows, self.filter.text())

    def visible_tags(self) -> list[tuple[str, str]]:
        """The (name, value) pairs shown now."""
        return [(row.name, row.value) for row in self.visible_rows()]
