"""The DICOM tags of the current series in a table with a filter box."""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtWidgets import QHeaderView, QLineEdit, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget


def filter_tags(tags: Mapping[str, str], text: str) -> list[tuple[str, str]]:
    """The (name, value) pairs whose name or value contains `text` (case-insensitive), sorted by name."""
    needle = text.strip().lower()
    pairs = sorted((str(k), str(v)) for k, v in tags.items())
    if not needle:
        return pairs
    return [(k, v) for k, v in pairs if needle in k.lower() or needle in v.lower()]


class TagsPanel(QWidget):
    """A searchable table of a series' tags (`Volume.info.tags`)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tags: Mapping[str, str] = {}
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter tags (name or value)")
        self.filter.setClearButtonEnabled(True)
        self.table = QTableWidget(0, 2, self)
        self.table.setHorizontalHeaderLabels(["Tag", "Value"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter)
        layout.addWidget(self.table)
        self.filter.textChanged.connect(self._refresh)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Show another series' tags (keeps the filter text)."""
        self.tags = dict(tags)
        self._refresh()

    def _refresh(self) -> None:
        rows = filter_tags(self.tags, self.filter.text())
        self.table.setRowCount(len(rows))
        for row, (name, value) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(name))
            self.table.setItem(row, 1, QTableWidgetItem(value))

    def visible_tags(self) -> list[tuple[str, str]]:
        """The (name, value) rows shown now."""
        return [(self.table.item(r, 0).text(), self.table.item(r, 1).text()) for r in range(self.table.rowCount())]
