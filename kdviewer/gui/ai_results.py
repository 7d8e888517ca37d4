"""The AI panel's result boxes: classification bars, segmentation legend and controls, enhancement controls.

Each box shows, under its result, the model's caveat (`LimitsNote`): the intended use and the card's
limits in plain words, with the data and its licence, always in view while the result is.

Thin widgets: each shows an `AiRun` and exposes its controls; the AI panel connects them to the
views and to `AiPanelLogic`.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from kdviewer.gui.ai_logic import (
    AiRun,
    Caveat,
    LegendRow,
    caveat_is_long,
    caveat_limits,
    legend_rows,
    model_caveat,
)
from kdviewer.runtime.segment import extent_text

BAR_STEPS = 1000  # probability bars have 0.1 % resolution


def _buttons(parent: QWidget, *widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    row.addStretch(1)
    return row


def _swatch(color: tuple[int, int, int], size: int = 12) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(*color))
    return QIcon(pixmap)


class LimitsNote(QWidget):
    """The caveat under a result: intended use (red, bold), the card's limits as bullets, data and licence.

    Short lists are shown in full; a long one shows its first limits shortened and a toggle for the rest.
    The tooltip always holds the full text.
    """

    USE_STYLE = "color: #c0392b; font-weight: bold;"  # as the card's intended-use line
    MISFIT_STYLE = "color: #d35400;"  # as the card's "not made for this series" warning

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caveat: Caveat | None = None
        self.use = QLabel("", self)
        self.use.setWordWrap(True)
        self.use.setStyleSheet(self.USE_STYLE)
        self.misfit = QLabel("", self)
        self.misfit.setWordWrap(True)
        self.misfit.setStyleSheet(self.MISFIT_STYLE)
        self.misfit.hide()
        self.limits = QLabel("", self)
        self.limits.setWordWrap(True)
        self.limits.setTextFormat(Qt.TextFormat.RichText)
        self.limits.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.toggle = QToolButton(self)
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toggle.toggled.connect(lambda _: self._fill())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.use)
        layout.addWidget(self.misfit)
        layout.addWidget(self.limits)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)

    def show_run(self, run: AiRun) -> None:
        """Show the caveat of the model that made `run` (collapsed again when it is long)."""
        self.caveat = model_caveat(run.model, run.source)
        self.toggle.blockSignals(True)
        self.toggle.setChecked(False)
        self.toggle.blockSignals(False)
        self._fill()

    def shown_limits(self) -> list[str]:
        """The limits as the note shows them now (shortened ones end in "…")."""
        return caveat_limits(self.caveat, self.toggle.isChecked()) if self.caveat is not None else []

    def full_text(self) -> str:
        """Intended use, every limit in full, data and licence: the tooltip's plain text."""
        if self.caveat is None:
            return ""
        c = self.caveat
        misfit = [f"⚠ {c.misfit}"] if c.misfit else []
        return "\n".join([c.use, *misfit, "Limits:", *(f"• {limit}" for limit in c.limits), c.data])

    def _fill(self) -> None:
        c = self.caveat
        if c is None:
            return
        long = caveat_is_long(c)
        rows = "".join(f"<tr><td>•&nbsp;</td><td>{escape(limit)}</td></tr>" for limit in self.shown_limits())
        self.use.setText(c.use)
        self.misfit.setText(f"⚠ {c.misfit}")
        self.misfit.setVisible(bool(c.misfit))
        self.limits.setText(f"<b>Limits</b><table cellspacing='0' cellpadding='0'>{rows}</table>"
                            f"<span style='color: gray;'>{escape(c.data)}</span>")
        self.toggle.setVisible(long)
        self.toggle.setText("Show fewer" if self.toggle.isChecked() else f"Show all {len(c.limits)} limits")
        misfit = [f"⚠ {escape(c.misfit)}"] if c.misfit else []
        tip = "<br>".join([f"<b>{escape(c.use)}</b>", *misfit, "<b>Limits</b>",
                           *(f"• {escape(limit)}" for limit in c.limits), escape(c.data)])
        for widget in (self, self.use, self.misfit, self.limits):
            widget.setToolTip(tip)


class ClassificationBox(QGroupBox):
    """The top label, one probability bar per class, the saliency toggle and the JSON export."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Classification", parent)
        self.headline = QLabel("", self)
        self.headline.setStyleSheet("font-weight: bold;")
        self.headline.setWordWrap(True)  # a long model id must not widen the dock (it clipped the bars)
        self.bars_widget = QWidget(self)
        self.bars = QGridLayout(self.bars_widget)
        self.bars.setContentsMargins(0, 0, 0, 0)
        self.saliency_check = QCheckBox("Saliency map", self)
        self.saliency_check.setToolTip("Occlusion sensitivity: where hiding the image lowers the top class most")
        self.saliency_check.setChecked(True)
        self.export_json = QPushButton("Export JSON…", self)
        self.export_json.setToolTip("Save the label, probabilities, model and source as JSON")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.headline)
        layout.addWidget(self.bars_widget)
        self.note = LimitsNote(self)
        layout.addWidget(self.note)
        layout.addWidget(self.saliency_check)
        layout.addLayout(_buttons(self, self.export_json))
        self.shown: list[tuple[str, float]] = []

    def show_run(self, run: AiRun) -> None:
        """Show a classification run: bars sorted as the card lists the classes."""
        result = run.result
        while self.bars.count():
            item = self.bars.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.shown = [(label, float(p)) for label, p in zip(result.labels, result.probabilities, strict=True)]
        top = result.top_label
        for row, (label, p) in enumerate(self.shown):
            name = QLabel(label, self.bars_widget)
            if label == top:
                name.setStyleSheet("font-weight: bold;")
            bar = QProgressBar(self.bars_widget)
            bar.setRange(0, BAR_STEPS)
            bar.setValue(round(p * BAR_STEPS))
            bar.setFormat(f"{p:.1%}")
            self.bars.addWidget(name, row, 0)
            self.bars.addWidget(bar, row, 1)
        where = f", slice {run.slice_index + 1}" if run.slice_index is not None else ""
        self.headline.setText(f"{top}  {result.top_probability:.1%}   ({run.model.id}{where})")
        self.saliency_check.setEnabled(result.saliency is not None)
        self.note.show_run(run)


class SegmentationBox(QGroupBox):
    """Legend (colour, label, size: mL, cm² or px), show/outline/opacity, jump to the largest lesion, exports."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Segmentation", parent)
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        self.legend = QTableWidget(0, 2, self)
        self.legend.setHorizontalHeaderLabels(["Label", "Size"])
        self.legend.verticalHeader().hide()
        self.legend.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.legend.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.legend.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        header = self.legend.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.visible_check = QCheckBox("Show", self)
        self.visible_check.setChecked(True)
        self.outline_check = QCheckBox("Outline", self)
        self.opacity = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity.setRange(0, 100)
        self.opacity.setToolTip("Overlay opacity")
        self.jump_button = QPushButton("Jump to largest lesion", self)
        self.export_nifti = QPushButton("NIfTI…", self)
        self.export_nifti.setToolTip("Save the mask as NIfTI")
        self.export_seg = QPushButton("DICOM SEG…", self)
        self.opacity.setMinimumWidth(60)
        controls = QHBoxLayout()
        controls.addWidget(self.visible_check)
        controls.addWidget(self.outline_check)
        controls.addWidget(self.opacity, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.summary)
        layout.addWidget(self.legend)
        self.note = LimitsNote(self)
        layout.addWidget(self.note)
        layout.addLayout(controls)
        layout.addLayout(_buttons(self, self.jump_button))
        layout.addWidget(QLabel("Export the mask as", self))
        layout.addLayout(_buttons(self, self.export_nifti, self.export_seg))
        self.rows: list[LegendRow] = []

    def show_run(self, run: AiRun, dicom_source: bool) -> None:
        """Show a segmentation run's legend; DICOM SEG export only for a DICOM source."""
        self.rows = legend_rows(run.result)
        self.legend.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            name = QTableWidgetItem(_swatch(row.color), f"{row.value}  {row.name}")
            self.legend.setItem(r, 0, name)
            volume = QTableWidgetItem(extent_text(row.volume_ml, run.source))
            volume.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.legend.setItem(r, 1, volume)
        rows_px = self.legend.verticalHeader().defaultSectionSize() * min(max(len(self.rows), 1), 6)
        self.legend.setFixedHeight(rows_px + self.legend.horizontalHeader().height() + 4)
        if self.rows:
            self.legend.selectRow(max(range(len(self.rows)), key=lambda i: self.rows[i].volume_ml))
        self.summary.setText(f"{run.model.id}: {len(self.rows)} label{'s' if len(self.rows) != 1 else ''}")
        self.export_seg.setEnabled(dicom_source)
        self.export_seg.setToolTip("" if dicom_source else "DICOM SEG needs a DICOM source series")
        has_voxels = any(row.volume_ml > 0 for row in self.rows)
        self.jump_button.setEnabled(has_voxels)
        self.note.show_run(run)

    def legend_texts(self) -> list[tuple[str, str]]:
        """(label name, "12.34 mL" / "4.56 cm²" / "1,234 px") as shown."""
        return [(row.name, self.legend.item(r, 1).text()) for r, row in enumerate(self.rows)]

    def selected_value(self) -> int | None:
        """The label value of the selected legend row (None without rows)."""
        rows = self.legend.selectionModel().selectedRows()
        if rows:
            return self.rows[rows[0].row()].value
        return self.rows[0].value if self.rows else None


class EnhancementBox(QGroupBox):
    """The new series, the before/after toggle, switching the views between them, exports."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Enhancement", parent)
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        self.compare_check = QCheckBox("Before / after divider", self)
        self.compare_check.setToolTip("Original left, enhanced right of a divider you drag in the views")
        self.show_enhanced = QPushButton("Show enhanced", self)
        self.show_original = QPushButton("Show original", self)
        self.export_nifti = QPushButton("NIfTI…", self)
        self.export_nifti.setToolTip("Save the enhanced series as NIfTI")
        self.export_dicom = QPushButton("DICOM…", self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.summary)
        self.note = LimitsNote(self)
        layout.addWidget(self.note)
        layout.addWidget(self.compare_check)
        layout.addLayout(_buttons(self, self.show_enhanced, self.show_original))
        layout.addWidget(QLabel("Export the enhanced series as", self))
        layout.addLayout(_buttons(self, self.export_nifti, self.export_dicom))

    def show_run(self, run: AiRun, dicom_source: bool) -> None:
        """Show an enhancement run; DICOM export only when the source was DICOM with the same slices."""
        result = run.result
        z, y, x = result.volume.shape
        sx, sy, sz = result.volume.spacing
        scale = f" ×{result.scale}" if result.scale > 1 else ""
        self.summary.setText(f"{result.volume.info.description or run.model.id}{scale}\n"
                             f"{x}×{y}×{z} voxels, {sx:.3g}×{sy:.3g}×{sz:.3g} mm; added to the series list")
        self.export_dicom.setEnabled(dicom_source)
        self.export_dicom.setToolTip("" if dicom_source else "DICOM export needs a DICOM source series")
        self.note.show_run(run)
