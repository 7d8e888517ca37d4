"""The series found in the opened path: thumbnail, description, modality, slices, dimensions.

Double-click (or Enter) on a series loads it.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem


def series_summary(ref) -> str:
    """Two lines describing a SeriesRef: description, then modality, slices, matrix and spacing."""
    z, y, x = ref.shape
    sx, sy, sz = ref.spacing
    description = ref.description or "(no description)"
    warn = f"   ⚠ {len(ref.warnings)} warning(s)" if ref.warnings else ""
    return (f"{description}\n{ref.modality}   {z} slice{'s' if z != 1 else ''}   {x}×{y}   "
            f"{sx:.2f}×{sy:.2f}×{sz:.2f} mm{warn}")


def uint8_to_pixmap(image: np.ndarray) -> QPixmap:
    """A QPixmap of an (h, w) or (h, w, 3) uint8 array."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    if image.ndim == 2:
        qimage = QImage(image.data, w, h, image.strides[0], QImage.Format.Format_Grayscale8)
    else:
        qimage = QImage(image.data, w, h, image.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy())


class SeriesBrowser(QListWidget):
    """A list of the scanned series; emits `chosen(series number)` on double-click."""

    chosen = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setIconSize(QSize(64, 64))
        self.setSpacing(2)
        self.setWordWrap(True)
        self.refs: tuple = ()
        self.itemActivated.connect(lambda item: self.chosen.emit(self.row(item)))

    def set_series(self, refs: tuple) -> None:
        """Show the series of a scan (SeriesRef objects)."""
        self.clear()
        self.refs = tuple(refs)
        for ref in self.refs:
            item = QListWidgetItem(series_summary(ref))
            item.setToolTip("\n".join((ref.uid, *ref.warnings)))
            self.addItem(item)

    def set_thumbnail(self, number: int, image: np.ndarray) -> None:
        """Give series `number` its thumbnail ((h, w[, 3]) uint8)."""
        if 0 <= number < self.count():
            self.item(number).setIcon(QIcon(uint8_to_pixmap(image)))

    def mark_current(self, number: int) -> None:
        """Highlight the series shown in the views."""
        for row in range(self.count()):
            font = self.item(row).font()
            font.setBold(row == number)
            self.item(row).setFont(font)
        if 0 <= number < self.count():
            self.setCurrentRow(number)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        return QSize(280, 200)


