"""A compact, read-only table of (quantity, teacher, student) rows; a value both share spans the two columns."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget


class NumbersTable(QTableWidget):
    """Rows (quantity, teacher, student); a row whose student cell is "" shows its value across both columns."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 3, parent)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(20)
        self.setWordWrap(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in (1, 2):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.setHorizontalHeaderLabels(["", "teacher", "student"])

    def set_rows(self, rows: list[tuple[str, str, str]], header: tuple[str, str, str] = ("", "teacher", "student")
                 ) -> None:
        """Show `rows` (see the class docstring)."""
        self.clearSpans()
        self.setRowCount(len(rows))
        self.setHorizontalHeaderLabels(list(header))
        for r, (name, t, s) in enumerate(rows):
            self.setItem(r, 0, QTableWidgetItem(name))
            for c, text in ((1, t), (2, s)):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(r, c, item)
            if s == "" and t != "":
                self.setSpan(r, 1, 1, 2)
                self.item(r, 1).setTextAlignment(Qt.AlignmentFlag.AlignCenter)

    def values(self) -> dict[str, tuple[str, str]]:
        """{quantity: (teacher text, student text)} as shown (for tests and copying)."""
        out = {}
        for r in range(self.rowCount()):
            out[self.item(r, 0).text()] = (self.item(r, 1).text(), self.item(r, 2).text())
        return out
