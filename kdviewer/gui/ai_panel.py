"""The AI panel (a dock on the right): pick a model that fits the series, run it in the background, see
and export the result.

A thin widget over `AiPanelLogic` (the list, the run, the exports) and `TaskThread` (the background
run with progress and cancel). Results go to the views through the `ViewerState` (the label overlay)
and the `ViewGrid` (saliency map, result text, outline mode, before/after divider); an enhanced series
is handed to the window as a new series of the session.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from kdviewer.gui.ai_exports import ResultExports
from kdviewer.gui.ai_logic import (
    AiPanelLogic,
    AiRun,
    ModelEntry,
    is_dicom_source,
    largest_lesion_index,
    saliency_volume,
)
from kdviewer.gui.ai_results import ClassificationBox, EnhancementBox, SegmentationBox
from kdviewer.gui.background_run import BackgroundRun
from kdviewer.gui.view_grid import ViewGrid
from kdviewer.gui.viewer_state import ViewerState
from kdviewer.study.volume import Volume

ShowMessage = Callable[[QWidget, str, str], object]


class AiPanel(BackgroundRun, QWidget):
    """Models for the current series, their cards, Run/Cancel with progress, and the results.

    add_series(volume) -> series number: keep a new series in the session (the series browser);
    show_series(volume): show a volume of the session in the views; show_error / show_warning(parent,
    title, message): non-blocking dialogs (tests pass recorders).
    """

    run_done = Signal(str)  # "succeeded", "failed" or "cancelled", after the panel has shown it

    def __init__(self, state: ViewerState, grid: ViewGrid, add_series: Callable[[Volume], int],
                 show_series: Callable[[Volume], None], show_error: ShowMessage,
                 logic: AiPanelLogic | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state, self.grid = state, grid
        self.add_series, self.show_series = add_series, show_series
        self.show_error: ShowMessage = show_error
        self.show_warning: ShowMessage = show_error
        self.logic = logic or AiPanelLogic()
        self._init_background_run()
        self.entries: list[ModelEntry] = []
        self.enhanced_number: int | None = None
        self._build()
        self.exports = ResultExports(self.logic, self, lambda *a: self.show_error(*a), self.status.setText)
        self._connect_results()
        state.listen(self._on_state)
        if state.volume is not None:  # built after a series was shown (see ai_dock)
            self._on_state("volume")

    # -- building ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.show_all = QCheckBox("Show all models", self)
        self.show_all.setToolTip("Also list models made for other modalities or tasks (a warning before running)")
        self.rescan = QPushButton("Rescan", self)
        self.models = QListWidget(self)
        self.models.setMaximumHeight(110)
        self.card = QTextBrowser(self)
        self.card.setMinimumHeight(200)
        self.run_button = QPushButton("Run", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)  # no "0 %" while idle
        self.status = QLabel("Open a series to see the models that fit it.", self)
        self.status.setWordWrap(True)
        self.classification = ClassificationBox(self)
        self.segmentation = SegmentationBox(self)
        self.enhancement = EnhancementBox(self)
        results = QWidget(self)
        results_layout = QVBoxLayout(results)
        results_layout.setContentsMargins(0, 0, 0, 0)
        for box in (self.classification, self.segmentation, self.enhancement):
            box.hide()
            results_layout.addWidget(box)
        results_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(results)
        scroll.hide()  # shown with the first result: until then the card gets the room
        self.results_area = scroll
        top = QHBoxLayout()
        top.addWidget(self.show_all)
        top.addStretch(1)
        top.addWidget(self.rescan)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.models)
        layout.addWidget(self.card, 1)  # the results below get the room: a result carries its limits
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 3)
        self.show_all.toggled.connect(lambda _: self.refresh_models())
        self.rescan.clicked.connect(lambda: self.refresh_models(rescan=True))
        self.models.currentRowChanged.connect(self._on_selected)
        self.run_button.clicked.connect(self.run_selected)
        self.cancel_button.clicked.connect(self.cancel)
        self._sync_run_button()

    def _connect_results(self) -> None:
        c, s, e = self.classification, self.segmentation, self.enhancement
        c.saliency_check.toggled.connect(self.grid.set_heat_visible)
        c.export_json.clicked.connect(self.exports.classification_json)
        s.visible_check.toggled.connect(self.state.set_overlay_visible)
        s.outline_check.toggled.connect(self.grid.set_outline)
        s.opacity.valueChanged.connect(lambda v: self.state.set_overlay_opacity(v / 100))
        s.jump_button.clicked.connect(self.jump_to_largest_lesion)
        s.export_nifti.clicked.connect(self.exports.mask_nifti)
        s.export_seg.clicked.connect(self.exports.mask_dicom_seg)
        e.compare_check.toggled.connect(self.grid.set_compare_enabled)
        e.show_enhanced.clicked.connect(lambda: self._show_run_volume(enhanced=True))
        e.show_original.clicked.connect(lambda: self._show_run_volume(enhanced=False))
        e.export_nifti.clicked.connect(self.exports.enhanced_nifti)
        e.export_dicom.clicked.connect(self.exports.enhanced_dicom)

    # -- the model list ----------------------------------------------------------------------
    def refresh_models(self, rescan: bool = False, keep_selection: bool = True) -> None:
        """List the models for the current series (rescan: read the registry folders again), keeping the
        selected model where it is still listed (keep_selection False, for a new series: the likeliest one)."""
        if rescan:
            self.logic.refresh()
        current = self.selected_entry() if keep_selection else None
        self.entries = self.logic.entries(self.state.volume, self.show_all.isChecked())
        self.models.clear()
        for entry in self.entries:
            item = QListWidgetItem(entry.title())
            item.setToolTip(entry.problem or entry.task)
            if not entry.available:
                item.setForeground(Qt.GlobalColor.gray)
            self.models.addItem(item)
        ids = [e.id for e in self.entries]
        if self.entries:
            self.models.setCurrentRow(ids.index(current.id) if current is not None and current.id in ids else 0)
        else:
            self.card.setHtml("<p>No model fits this series. Tick <b>Show all models</b> to see the others; "
                              "models live in the repository's <tt>models/</tt> and in your "
                              "<tt>kdviewer/models</tt> data folder.</p>")
        self._sync_run_button()

    def selected_entry(self) -> ModelEntry | None:
        """The entry selected in the list."""
        row = self.models.currentRow()
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def select_model(self, model_id: str) -> None:
        """Select a model of the list by id (raises KeyError when it is not listed)."""
        ids = [e.id for e in self.entries]
        if model_id not in ids:
            raise KeyError(f"{model_id} is not listed (listed: {', '.join(ids) or 'none'})")
        self.models.setCurrentRow(ids.index(model_id))

    def _on_selected(self, row: int) -> None:
        from kdviewer.gui.ai_logic import card_html

        if 0 <= row < len(self.entries):
            self.card.setHtml(card_html(self.entries[row]))
        self._sync_run_button()

    def _sync_run_button(self) -> None:
        entry = self.selected_entry()
        running = self.thread is not None
        ready = self.state.volume is not None and not self.state.preview
        self.run_button.setEnabled(bool(entry and entry.available and ready and not running))
        self.cancel_button.setEnabled(running)

    # -- running -----------------------------------------------------------------------------
    def run_selected(self) -> None:
        """Run the selected model on the current series (a warning first when it is not made for it)."""
        entry = self.selected_entry()
        volume = self.state.volume
        if entry is None or entry.model is None or volume is None or self.is_running() or self.state.preview:
            return
        if not entry.fits:
            self.show_warning(self.window(), "Model not made for this series",
                              f"{entry.problem}.\nIt runs anyway; read its result with care.")
        model = entry.model
        slice_index = None
        if model.task == "classify" and volume.shape[0] > 1:
            slice_index = self.state.geometry.original_index_xyz(self.state.cursor)[2]  # the axial slice shown
        self.start_thread(lambda progress, cancel: self.logic.run(model, volume, slice_index, progress, cancel),
                          f"Running {model.id} on the CPU…")

    def _sync_buttons(self) -> None:
        self._sync_run_button()

    def _on_succeeded(self, run: AiRun) -> None:
        if run.source is not self.state.volume:  # the series changed while it ran
            self.status.setText("The series changed during the run; its result was dropped.")
            self._outcome = "cancelled"
            return
        self.logic.accept(run)
        self._show_result(run)
        self.status.setText(f"{run.model.id}: done in {run.latency_ms:.0f} ms (latency, CPU).")
        self._outcome = "succeeded"

    # -- showing results ---------------------------------------------------------------------
    def _show_result(self, run: AiRun) -> None:
        task = run.model.task
        self.results_area.show()
        if task == "classify":
            self._show_classification(run)
        elif task == "segment":
            self._show_segmentation(run)
        else:
            self._show_enhancement(run)

    def _show_classification(self, run: AiRun) -> None:
        result = run.result
        self.classification.show_run(run)
        self.classification.show()
        self.grid.set_ai_text(f"AI: {result.top_label} {result.top_probability:.0%} (research use only)")
        heat = None
        if result.saliency is not None and run.source is self.state.volume:
            heat = self.state.geometry.to_lps(saliency_volume(run.source, result.saliency, run.slice_index))
        self.grid.set_heatmap(heat)
        self.grid.set_heat_visible(self.classification.saliency_check.isChecked())

    def _show_segmentation(self, run: AiRun) -> None:
        self.segmentation.show_run(run, is_dicom_source(run.source))
        self.segmentation.show()
        if run.source is self.state.volume:
            self.state.set_overlay(run.result.labels)
            self.state.set_overlay_visible(True)
        self._sync_overlay_controls()

    def _show_enhancement(self, run: AiRun) -> None:
        self.enhancement.show_run(run, is_dicom_source(run.source) and run.result.volume.shape[0] ==
                                  run.source.shape[0])
        self.enhancement.show()
        self.enhanced_number = self.add_series(run.result.volume)
        self.grid.set_compare(run.source, run.result.volume)
        self.enhancement.compare_check.setChecked(True)
        self.grid.set_compare_enabled(True)

    def _show_run_volume(self, enhanced: bool) -> None:
        run = self.logic.enhancement
        if run is not None:
            self.show_series(run.result.volume if enhanced else run.source)

    def _sync_overlay_controls(self) -> None:
        s = self.segmentation
        for widget in (s.opacity, s.visible_check):
            widget.blockSignals(True)
        s.opacity.setValue(round(self.state.overlay_opacity * 100))
        s.visible_check.setChecked(self.state.overlay_visible)
        for widget in (s.opacity, s.visible_check):
            widget.blockSignals(False)

    def jump_to_largest_lesion(self) -> tuple[int, int, int] | None:
        """Move the crosshair to the centre of the largest region of the selected label; its (z, y, x) index."""
        run = self.logic.segmentation
        value = self.segmentation.selected_value()
        if run is None or value is None:
            return None
        if run.source is not self.state.volume:
            self.show_series(run.source)
        index = largest_lesion_index(run.result.labels, value)
        if index is None:
            self.status.setText("That label has no voxels.")
            return None
        k, j, i = (int(v) for v in self.state.geometry.transform.to_lps_index(np.asarray(index)))
        for view, slice_index in (("axial", k), ("coronal", j), ("sagittal", i)):
            self.state.set_slice(view, slice_index)
        return index

    def _on_state(self, event: str) -> None:
        if event == "overlay":
            self._sync_overlay_controls()
        if event != "volume":
            return
        volume = self.state.volume
        runs = [r for r in (self.logic.classification, self.logic.segmentation, self.logic.enhancement) if r]
        sources = {id(r.source) for r in runs}
        enhanced = self.logic.enhancement.result.volume if self.logic.enhancement is not None else None
        if volume is not None and (id(volume) in sources or volume is enhanced):
            self._restore_layers(volume)
            self.refresh_models()
            return
        self._clear_results()
        self.refresh_models(keep_selection=False)
        if not self.is_running():
            fitting = sum(1 for e in self.entries if e.available and e.fits)
            self.status.setText(f"{fitting} model{'s' if fitting != 1 else ''} fit{'' if fitting != 1 else 's'} "
                                "this series." + ("" if self.show_all.isChecked() else
                                                  " Tick “Show all models” for the others."))

    def _restore_layers(self, volume: Volume) -> None:
        """Showing a run's source again (or its enhanced series): put its layers back on the views."""
        seg, cls = self.logic.segmentation, self.logic.classification
        if seg is not None and seg.source is volume:
            self.state.set_overlay(seg.result.labels)
        if cls is not None and cls.source is volume:
            self._show_classification(cls)
        else:
            self.grid.set_heatmap(None)
            self.grid.set_ai_text("")

    def _clear_results(self) -> None:
        if self.thread is not None:
            self.thread.cancel()  # its result would belong to the series no longer shown
        self.logic.clear()
        for box in (self.classification, self.segmentation, self.enhancement):
            box.hide()
        self.results_area.hide()
        self.grid.set_heatmap(None)
        self.grid.set_ai_text("")
        self.grid.set_compare(None, None)
        self.enhanced_number = None
