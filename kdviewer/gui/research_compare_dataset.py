"""Teacher vs student on a labelled folder: preview, evaluate both in the background, table, plots, cases.

A thin widget over `CompareLogic` (`preview_dataset`, `run_dataset` = the runtime's `compare_on_dataset`,
`export` = `write_report`). A folder that fits no layout shows its error in the panel and nothing else
changes; the cases where the models disagree most open in the viewer when clicked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from kdviewer.gui.background_run import BackgroundRun
from kdviewer.gui.report_export import ReportExport
from kdviewer.gui.research_compare_logic import (
    CompareLogic,
    DataPreview,
    PairEntry,
    case_text,
    case_volume,
    dataset_rows,
    find_item,
    item_file,
    preview_dataset,
)
from kdviewer.gui.research_compare_table import NumbersTable
from kdviewer.gui.research_plots import comparison_plots, plot_png
from kdviewer.runtime.compare import DatasetComparison
from kdviewer.study.volume import Volume

ShowMessage = Callable[[QWidget, str, str], object]
TOP_CASES = 20
ERROR_STYLE = "color: #b00020;"


class DatasetCompare(BackgroundRun, ReportExport, QWidget):
    """Folder chooser and preview, Evaluate / Cancel / progress, the table, the plots and the cases."""

    progress_format = "%v / %m items"

    run_done = Signal(str)  # "succeeded", "failed" or "cancelled", once the run's thread has ended

    def __init__(self, logic: CompareLogic, pair: Callable[[], PairEntry | None], open_path: Callable[[Path], None],
                 show_case: Callable[[Volume, Volume | None], None], show_error: ShowMessage,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.logic, self.pair = logic, pair
        self.open_path, self.show_case, self.show_error = open_path, show_case, show_error
        self._init_background_run()
        self.preview: DataPreview | None = None
        self.result: DatasetComparison | None = None
        self.plots: list[tuple[str, object]] = []
        self._build()

    def _build(self) -> None:
        self.folder = QLineEdit(self)
        self.folder.setPlaceholderText("a labelled folder or MedMNIST .npz")
        self.folder.setReadOnly(True)
        self.choose_button = QPushButton("Choose folder…", self)
        self.choose_file_button = QPushButton(".npz…", self)
        self.choose_file_button.setToolTip("Choose a MedMNIST .npz file")
        self.preview_label = QLabel("Choose a labelled folder: class folders, image + mask pairs, DRIVE, volume + "
                                    "labels, a MedMNIST .npz; plain images for restoration.", self)
        self.preview_label.setWordWrap(True)
        self.preview_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.split = QComboBox(self)
        self.limit = QSpinBox(self)
        self.limit.setRange(0, 1_000_000)
        self.limit.setSpecialValueText("all")
        self.limit.setToolTip("Score only the first N items of the split (0: all)")
        self.run_button = QPushButton("Evaluate both", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.export_button = QPushButton("Export report…", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.table = NumbersTable(self)
        self.cases = QListWidget(self)
        self.cases.setToolTip("Click a case to open its image in the viewer")
        plots = QWidget(self)
        self.plots_layout = QHBoxLayout(plots)
        self.plots_layout.setContentsMargins(0, 0, 0, 0)
        self.plots_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(plots)
        scroll.setMinimumHeight(240)
        self.plots_area = scroll
        row1 = QHBoxLayout()
        row1.addWidget(QLabel("Data", self))
        row1.addWidget(self.folder, 1)
        row1.addWidget(self.choose_button)
        row1.addWidget(self.choose_file_button)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Split", self))
        row2.addWidget(self.split)
        row2.addWidget(QLabel("Items", self))
        row2.addWidget(self.limit)
        row2.addWidget(self.run_button)
        row2.addWidget(self.cancel_button)
        row2.addWidget(self.progress, 1)
        row2.addWidget(self.export_button)
        cases_box = QWidget(self)
        cases_layout = QVBoxLayout(cases_box)
        cases_layout.setContentsMargins(0, 0, 0, 0)
        cases_layout.addWidget(QLabel("Where they disagree most (click to open)", self))
        cases_layout.addWidget(self.cases)
        numbers = QSplitter(Qt.Orientation.Vertical, self)  # left: the table over the cases; right: the plots
        numbers.addWidget(self.table)
        numbers.addWidget(cases_box)
        numbers.setStretchFactor(0, 3)
        numbers.setStretchFactor(1, 2)
        body = QSplitter(Qt.Orientation.Horizontal, self)
        body.addWidget(numbers)
        body.addWidget(scroll)
        body.setStretchFactor(0, 2)
        body.setStretchFactor(1, 5)
        body.setSizes([460, 1140])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(row1)
        layout.addWidget(self.preview_label)
        layout.addLayout(row2)
        layout.addWidget(self.status)
        layout.addWidget(body, 1)
        self.choose_button.clicked.connect(self.choose_folder)
        self.choose_file_button.clicked.connect(self.choose_file)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self.choose_export)
        self.cases.itemClicked.connect(self._on_case_clicked)
        self.sync()

    # -- the folder --------------------------------------------------------------------------
    def choose_folder(self) -> None:
        """Ask for a data folder, then preview it."""
        path = QFileDialog.getExistingDirectory(self, "Labelled data folder", self.folder.text())
        if path:
            self.set_folder(path)

    def choose_file(self) -> None:
        """Ask for a MedMNIST .npz, then preview it."""
        path, _ = QFileDialog.getOpenFileName(self, "MedMNIST data set", self.folder.text(), "NumPy (*.npz)")
        if path:
            self.set_folder(path)

    def set_folder(self, path: str | Path) -> bool:
        """Preview `path`: its summary, or the reason it fits no layout (shown here; nothing else changes)."""
        from kdviewer.errors import KdviewerError

        self.folder.setText(str(path))
        pair = self.pair()
        try:
            preview = preview_dataset(path, pair.task if pair is not None and pair.available else None)
        except (KdviewerError, OSError, ValueError) as exc:
            self.preview = None
            self.split.clear()
            self.preview_label.setStyleSheet(ERROR_STYLE)
            self.preview_label.setText(f"Cannot use this data: {exc}")
            self.sync()
            return False
        self.preview = preview
        self.preview_label.setStyleSheet("")
        self.preview_label.setText(f"Found: {preview.summary}")
        self.split.clear()
        self.split.addItems(list(preview.splits))
        self.split.setCurrentText(preview.default_split)
        self.sync()
        return True

    def sync(self) -> None:
        """Enable the buttons that make sense now."""
        pair = self.pair()
        running = self.thread is not None
        self.run_button.setEnabled(bool(pair and pair.available and self.preview is not None and not running))
        self.cancel_button.setEnabled(running)
        self.export_button.setEnabled(self.result is not None and not running)
        for w in (self.choose_button, self.choose_file_button, self.split, self.limit):
            w.setEnabled(not running)

    # -- running -----------------------------------------------------------------------------
    def run(self) -> None:
        """Evaluate both models of the pair on the chosen split, in the background."""
        pair, preview = self.pair(), self.preview
        if pair is None or not pair.available or preview is None or self.is_running():
            return
        split, limit = self.split.currentText() or None, self.limit.value() or None
        self.status.setStyleSheet("")
        self.start_thread(lambda progress, cancel: self.logic.run_dataset(pair, preview.path, split, limit,
                                                                          progress, cancel),
                          f"Evaluating {pair.teacher_id} and {pair.student_id} on {preview.path.name} "
                          f"({split or 'all'})…")

    def _sync_buttons(self) -> None:
        self.sync()

    def _on_succeeded(self, result: DatasetComparison) -> None:
        self.result = result
        self.logic.dataset_result = result
        self.show_result()
        self.status.setText(f"{len(result.cases)} cases of {Path(result.data).name} ({result.layout}, split "
                            f"{result.split})." + "".join(f"  ⚠ {w}" for w in result.warnings))
        self._outcome = "succeeded"

    def _on_failed(self, title: str, message: str) -> None:
        if self._current_thread():
            self.status.setStyleSheet(ERROR_STYLE)
        super()._on_failed(title, message)

    # -- showing -----------------------------------------------------------------------------
    def show_result(self) -> None:
        """The table, the plots and the disagreement list of the last result."""
        c = self.result
        self.table.set_rows(dataset_rows(c))
        for _, w in self.plots:
            self.plots_layout.removeWidget(w)
            w.deleteLater()
        self.plots = comparison_plots(c)
        for k, (_, w) in enumerate(self.plots):
            w.setMaximumWidth(440)
            self.plots_layout.insertWidget(k, w)
            spots = getattr(w, "spots", None)
            if spots is not None:
                spots.sigClicked.connect(self._on_point_clicked)
        self.cases.clear()
        for case in c.disagreements(TOP_CASES):
            if case.disagreement <= 0:
                break
            item = QListWidgetItem(case_text(case))
            item.setData(Qt.ItemDataRole.UserRole, case.key)
            item.setToolTip(f"disagreement {case.disagreement:.3g}; click to open")
            self.cases.addItem(item)
        if self.cases.count() == 0:
            self.cases.addItem("(they agree on every case)")

    def _on_case_clicked(self, item: QListWidgetItem) -> None:
        key = item.data(Qt.ItemDataRole.UserRole)
        if key:
            self.open_case(key)

    def _on_point_clicked(self, _item, points, *_args) -> None:
        if len(points) and points[0].data():
            self.open_case(str(points[0].data()))

    def open_case(self, key: str) -> None:
        """Open case `key` of the result in the viewer: its file, or its image as a new series of the session."""
        from kdviewer.errors import KdviewerError

        c = self.result
        if c is None:
            return
        try:
            ds, item = find_item(c.data, c.split, key)
            path = item_file(item)
            if path is not None:
                self.open_path(path)
            else:
                volume, mask = case_volume(item, ds.name)
                self.show_case(volume, mask)
        except (KdviewerError, OSError, ValueError) as exc:
            self.show_error(self.window(), "Could not open the case", str(exc))
            return
        self.status.setText(f"Opened {key} in the viewer.")

    # -- export ------------------------------------------------------------------------------
    def plot_pngs(self) -> dict[str, bytes]:
        """PNG of each plot shown, for the report."""
        return {name: plot_png(w) for name, w in self.plots}

