"""RGBA arrays to QImage and PNG, with the orientation letters on the edges (as the views show them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter

from kdviewer.gui.planes import EDGE_LABELS

LABEL_COLOR = QColor(255, 220, 120)


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """A QImage (RGBA8888, its own copy of the pixels) of an (h, w, 4) uint8 array."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, rgba.strides[0], QImage.Format.Format_RGBA8888).copy()


def qimage_to_rgba(image: QImage) -> np.ndarray:
    """An (h, w, 4) uint8 copy of a QImage's pixels."""
    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    h, w = image.height(), image.width()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
    return data.reshape(h, image.bytesPerLine())[:, : w * 4].reshape(h, w, 4).copy()


def draw_orientation_labels(image: QImage, view: str) -> QImage:
    """Write the view's orientation letters (A/P/R/L/S/I) on the middles of the image's edges, in place."""
    painter = QPainter(image)
    font = QFont()
    font.setBold(True)
    font.setPixelSize(max(10, min(image.width(), image.height()) // 30))
    painter.setFont(font)
    painter.setPen(LABEL_COLOR)
    margin = 4
    box = QRect(margin, margin, image.width() - 2 * margin, image.height() - 2 * margin)
    align = {
        "top": Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter,
        "bottom": Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter,
        "left": Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
        "right": Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
    }
    for side, letter in EDGE_LABELS[view].items():
        painter.drawText(box, align[side], letter)
    painter.end()
    return image


def save_png(rgba: np.ndarray, path: str | Path, view: str | None = None) -> None:
    """Write an (h, w, 4) uint8 image to a PNG, with orientation letters when `view` is given.

    Raises OSError when the file cannot be written. Needs a QGuiApplication for the letters.
    """
    image = rgba_to_qimage(rgba)
    if view is not None:
        draw_orientation_labels(image, view)
    if not image.save(str(path), "PNG"):
        raise OSError(f"{path}: could not write a PNG there")
