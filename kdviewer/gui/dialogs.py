"""Dialogs: errors (non-blocking), skipped files, and the help with the keyboard shortcuts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QMessageBox,
    QPlainTextEdit,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from kdviewer.gui.shortcuts import help_html


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> QMessageBox:
    """Show an error without blocking the event loop (window-modal, `open()`); returns the box."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.open()
    return box


def skipped_text(skipped: Sequence[tuple[Path, str]]) -> str:
    """One line per skipped file: "name: reason"."""
    return "\n".join(f"{path}: {reason}" for path, reason in skipped)


class SkippedFilesDialog(QDialog):
    """The files a scan did not use, each with the reason."""

    def __init__(self, skipped: Sequence[tuple[Path, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Skipped files ({len(skipped)})")
        text = QPlainTextEdit(skipped_text(skipped), self)
        text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)
        self.resize(700, 300)


class HelpDialog(QDialog):
    """Keyboard shortcuts and mouse gestures (F1)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("kdviewer: shortcuts")
        self.text = QTextBrowser(self)
        self.text.setHtml(help_html())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(520, 560)
