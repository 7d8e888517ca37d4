"""Teacher vs student on the open study: run both in the background, show them side by side, and the numbers.

A thin widget over `CompareLogic.run_study` (the runtime's `compare_on_study`): the two linked views
(`LinkedViews`) show the study with each model's mask or output; "Show" switches to the disagreement map
(segmentation: coloured by who is right when a reference mask is loaded) or the difference image
(enhancement); classification shows both probability sets as bars.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from kdviewer.gui.background_run import BackgroundRun
from kdviewer.gui.overlay import LABEL_COLORS
from kdviewer.gui.report_export import ReportExport
from kdviewer.gui.research_compare_logic import (
    AGREED,
    CompareLogic,
    PairEntry,
    disagreement_overlay,
    study_rows,
)
from kdviewer.gui.research_compare_table import NumbersTable
from kdviewer.gui.research_compare_views import LinkedViews
from kdviewer.gui.research_plots import plot_png, probability_plot
from kdviewer.gui.viewer_state import ViewerState
from kdviewer.runtime.compare import StudyComparison
from kdviewer.study.volume import Volume

ShowMessage = Callable[[QWidget, str, str], object]
CODES = {False: ("teacher only", "student only", "labels differ"), True: ("only the teacher right",
                                                                         "only the student right", "both wrong")}


def legend_html(with_reference: bool) -> str:
    """The disagreement colours (label colours 1..3 of the overlay LUT) and what they mean."""
    spans = []
    for k, text in [*enumerate(CODES[with_reference]), (AGREED - 1, "agreed foreground")]:
        r, g, b = LABEL_COLORS[k]
        spans.append(f"<span style='color: rgb({r},{g},{b}); font-size: 14pt'>■</span> {text}")
    return "&nbsp;&nbsp;".join(spans)


class StudyCompare(BackgroundRun, ReportExport, QWidget):
    """Compare / Cancel / progress, reference mask, the two views, the numbers table and the bars."""

    run_done = Signal(str)  # "succeeded", "failed" or "cancelled", once the run's thread has ended

    def __init__(self, logic: CompareLogic, state: ViewerState, pair: Callable[[], PairEntry | None],
                 show_error: ShowMessage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.logic, self.state, self.pair = logic, state, pair
        self.show_error = show_error
        self._init_background_run()
        self._run_source: Volume | None = None  # the study the running comparison runs on
        self.reference: Volume | None = None
        self.result: StudyComparison | None = None
        self.source: Volume | None = None  # the study's volume the result belongs to
        self.plot = None
        self._build()
        state.listen(self._on_state)

    def _build(self) -> None:
        self.run_button = QPushButton("Compare on the open study", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.slice_only = QCheckBox("Shown slice only", self)
        self.slice_only.setToolTip("Compare on the axial slice shown in the viewer (faster; classification always "
                                   "uses one slice). Off: the whole volume.")
        self.reference_button = QPushButton("Load reference mask…", self)
        self.reference_button.setToolTip("A label volume on the study's grid: the disagreement is then coloured by "
                                         "who is right")
        self.export_button = QPushButton("Export report…", self)
        self.export_button.setEnabled(False)
        self.show_combo = QComboBox(self)
        self.show_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.show_combo.setEnabled(False)
        self.opacity = QCheckBox("Overlay", self)
        self.opacity.setChecked(True)
        self.opacity.setEnabled(False)
        self.legend = QLabel("", self)
        self.status = QLabel("Open a study and pick a pair, then press Compare.", self)
        self.status.setWordWrap(True)
        self.views = LinkedViews(self)
        self.table = NumbersTable(self)
        self.bars_box = QWidget(self)
        self.bars_layout = QVBoxLayout(self.bars_box)
        self.bars_layout.setContentsMargins(0, 0, 0, 0)
        self.bars_box.hide()
        top = QHBoxLayout()
        for w in (self.run_button, self.cancel_button, self.slice_only, self.reference_button):
            top.addWidget(w)
        top.addWidget(self.progress, 1)
        top.addWidget(self.export_button)
        show = QHBoxLayout()
        show.addWidget(QLabel("Show", self))
        show.addWidget(self.show_combo)
        show.addWidget(self.opacity)
        show.addWidget(self.legend, 1)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.table, 2)
        right_layout.addWidget(self.bars_box, 1)
        split = QSplitter(self)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(show)
        left_layout.addWidget(self.views, 1)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.reference_button.clicked.connect(self.choose_reference)
        self.export_button.clicked.connect(self.choose_export)
        self.show_combo.currentIndexChanged.connect(lambda _: self._show_views())
        self.opacity.toggled.connect(lambda on: [s.set_overlay_visible(on) for s in self.views.states])
        self.sync()

    # -- state -------------------------------------------------------------------------------
    def sync(self) -> None:
        """Enable the buttons that make sense now."""
        pair = self.pair()
        running = self.thread is not None
        ready = self.state.volume is not None and not self.state.preview
        self.run_button.setEnabled(bool(pair and pair.available and ready and not running))
        self.cancel_button.setEnabled(running)
        self.reference_button.setEnabled(bool(ready and pair and pair.task == "segment" and not running))
        self.export_button.setEnabled(self.result is not None and not running)

    def _on_state(self, event: str) -> None:
        if event == "volume" and not self.state.preview and self.state.volume is not self.source:
            if self.state.volume is not None and self.reference is not None \
                    and not self.state.volume.same_grid(self.reference):
                self.reference = None
            if self.result is not None and not self.is_running():
                what = self.source.info.description or self.source.info.source or "the previous study"
                self.status.setText(f"The viewer shows another study now; the comparison shown is of {what}.")
            self.sync()

    # -- running -----------------------------------------------------------------------------
    def run(self) -> None:
        """Run both models of the selected pair on the open study in the background."""
        pair, volume = self.pair(), self.state.volume
        if pair is None or not pair.available or volume is None or self.state.preview or self.is_running():
            return
        slice_index = None
        if pair.task == "classify" or self.slice_only.isChecked() or volume.is_2d:
            slice_index = self.state.geometry.original_index_xyz(self.state.cursor)[2] if not volume.is_2d else 0
        reference = self.reference
        where = "the whole volume" if slice_index is None else f"slice {slice_index}"
        self._run_source = volume
        self.start_thread(lambda progress, cancel: self.logic.run_study(pair, volume, slice_index, reference,
                                                                        progress, cancel),
                          f"Running {pair.teacher_id} and {pair.student_id} on {where}…")

    def _sync_buttons(self) -> None:
        self.sync()

    def _on_succeeded(self, result: StudyComparison) -> None:
        self.result, self.source = result, self._run_source
        self.logic.study_result = result
        self.show_result()
        s = result.student
        self.status.setText(f"Done: teacher {result.teacher.latency_ms:.1f} ms, student {s.latency_ms:.1f} ms "
                            f"(speed-up {result.speed_up:.2f}×)." + "".join(f"  ⚠ {w}" for w in result.warnings))
        self._outcome = "succeeded"

    # -- the reference mask ------------------------------------------------------------------
    def choose_reference(self) -> None:
        """Ask for a label volume on the study's grid; a finished segmentation comparison runs again with it."""
        path, _ = QFileDialog.getOpenFileName(self, "Reference mask (label volume on the study's grid)", "",
                                              "Label volumes (*.nii *.nii.gz *.nrrd *.mha *.mhd *.png);;All files (*)")
        if path:
            self.load_reference(path)

    def load_reference(self, path: str) -> bool:
        """Load a reference mask; False (and a dialog) when it cannot be read or does not fit the study."""
        from kdviewer.errors import KdviewerError
        from kdviewer.study import load_volume

        volume = self.state.volume
        try:
            ref = load_volume(path)
        except (KdviewerError, OSError, ValueError) as exc:
            self.show_error(self.window(), "Could not read the reference mask", str(exc))
            return False
        if volume is None or ref.shape != volume.shape:
            self.show_error(self.window(), "Reference mask does not fit",
                            f"{path}: shape {ref.shape} differs from the study's {volume.shape if volume else None}")
            return False
        self.reference = ref
        self.status.setText(f"Reference mask {path}: the disagreement is coloured by who is right.")
        if self.result is not None and self.result.task == "segment":
            self.run()
        return True

    # -- showing -----------------------------------------------------------------------------
    def show_result(self) -> None:
        """Fill the table, the "Show" choices and the views (or bars) from the last result."""
        c = self.result
        self.table.set_rows(study_rows(c), ("", "teacher", "student"))
        self.show_combo.blockSignals(True)
        self.show_combo.clear()
        if c.task == "segment":
            self.show_combo.addItems(["Each model's mask", "Disagreement"])
            self.show_combo.setCurrentIndex(1)
        elif c.task == "classify":
            self.show_combo.addItems(["Input slice"])
        else:
            self.show_combo.addItems(["Each model's output", "Difference (student − teacher)"])
        self.show_combo.blockSignals(False)
        self.show_combo.setEnabled(self.show_combo.count() > 1)
        self.opacity.setEnabled(c.task == "segment")
        self._show_bars()
        self._show_views()
        self.sync()

    def _base(self) -> Volume:
        """The study's image on the result's grid (the whole volume, or the compared slice)."""
        c, source = self.result, self.source
        if c.slice_index is None:
            return source
        if c.teacher_output is not None and c.task == "segment":
            return c.teacher_output.with_array(source.array[c.slice_index:c.slice_index + 1], info=source.info)
        z = c.slice_index
        origin = tuple(float(v) for v in source.index_to_lps((0.0, 0.0, float(z))))
        return source.with_array(source.array[z:z + 1], origin=origin)

    def _show_views(self) -> None:
        c = self.result
        if c is None:
            return
        mode = self.show_combo.currentIndex()
        t, s = c.teacher.id, c.student.id
        self.legend.setText("")
        if c.task == "segment":
            base = self._base()
            if mode == 1:
                self.views.set_titles(f"Teacher {t}: disagreement", f"Student {s}: disagreement")
                self.views.show_pair(base, base, disagreement_overlay(c.teacher_output, c.overlay),
                                     disagreement_overlay(c.student_output, c.overlay))
                self.legend.setText(legend_html(self.reference is not None and "both_right" in
                                                c.metrics["disagreement_pixels"]))
            else:
                self.views.set_titles(f"Teacher {t}: mask", f"Student {s}: mask")
                self.views.show_pair(base, base, c.teacher_output, c.student_output)
        elif c.task == "classify":
            base = self._base()
            self.views.set_titles(f"Teacher {t}: {c.metrics['teacher_label']}",
                                  f"Student {s}: {c.metrics['student_label']}")
            self.views.show_pair(base, base)
        else:
            if mode == 1:
                diff = c.overlay
                span = float(np.abs(diff.array).max()) or 1.0
                self.views.set_titles(f"Teacher {t}: output", f"Student − teacher (±{span:.3g})")
                self.views.show_pair(c.teacher_output, diff, sync_window=False)
                self.views.states[1].set_window(0.5, 2 * span + 1)  # DICOM windowing: 0 shows mid-grey
            else:
                self.views.set_titles(f"Teacher {t}: output", f"Student {s}: output")
                self.views.show_pair(c.teacher_output, c.student_output)
        for st in self.views.states:
            st.set_overlay_visible(self.opacity.isChecked())

    def _show_bars(self) -> None:
        if self.plot is not None:
            self.bars_layout.removeWidget(self.plot)
            self.plot.deleteLater()
            self.plot = None
        c = self.result
        if c.task == "classify" and c.probabilities is not None:
            self.plot = probability_plot(c.labels, c.probabilities, "probabilities: teacher vs student")
            self.bars_layout.addWidget(self.plot)
            self.bars_box.show()
        else:
            self.bars_box.hide()

    def plot_pngs(self) -> dict[str, bytes]:
        """PNGs for the report: the two views as shown, and the probability bars."""
        from PySide6.QtCore import QBuffer, QByteArray, QIODevice

        out = {}
        if self.result is not None:
            data = QByteArray()
            buf = QBuffer(data)
            buf.open(QIODevice.OpenModeFlag.WriteOnly)
            self.views.grab().save(buf, "PNG")
            buf.close()
            out["views"] = bytes(data.data())
        if self.plot is not None:
            out["probabilities"] = plot_png(self.plot)
        return out

