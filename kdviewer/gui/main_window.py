"""The main window: views in the centre, series and tags in docks on the left, the AI panel on the right,
loading in a background thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QPushButton,
)

from kdviewer.errors import KdviewerError
from kdviewer.gui import actions
from kdviewer.gui.ai_dock import AiDock
from kdviewer.gui.dialogs import HelpDialog, SkippedFilesDialog, show_error
from kdviewer.gui.geometry import preview_volume
from kdviewer.gui.loader import LoadThread
from kdviewer.gui.research_panel import ResearchDock
from kdviewer.gui.series_browser import SeriesBrowser
from kdviewer.gui.settings import ViewerSettings
from kdviewer.gui.tags_panel import TagsPanel
from kdviewer.gui.view_grid import ViewGrid
from kdviewer.gui.viewer_state import FILE_PRESET, ViewerState
from kdviewer.study.dicom_tags import TagRow, read_file_rows, volume_info_rows
from kdviewer.study.volume import Volume

if TYPE_CHECKING:
    from kdviewer.gui.ai_panel import AiPanel

ErrorFunction = Callable[[QMainWindow, str, str], object]
DOCK_WIDTHS_PX = {"tags": 290, "ai": 260}  # first start; later the saved window state wins


class MainWindow(QMainWindow):
    """kdviewer's window. `settings`: a QSettings (tests: an INI file); `show_error(parent, title,
    message)`: how errors are shown (default: a non-blocking QMessageBox)."""

    volume_loaded = Signal(object)  # the Volume now shown
    load_failed = Signal(str)  # the error message shown

    def __init__(self, settings: QSettings | None = None, show_error: ErrorFunction | None = None) -> None:
        super().__init__()
        self.setWindowTitle("kdviewer (research use only, not for diagnosis)")
        self.settings = ViewerSettings(settings)
        self.show_error = show_error or _default_show_error
        self.state = ViewerState()
        self.state.layout = self.settings.layout
        self.grid = ViewGrid(self.state, self)
        self.setCentralWidget(self.grid)
        self.actions_by_name: dict = {}
        self.loader: LoadThread | None = None
        self._loading = False
        self.scan = None  # the last ScanResult
        self.series_number = -1
        self.pending_overlay: Path | None = None
        self._previous: Volume | None = None  # shown again if a load fails
        self.session_series: list[Volume] = []  # series made in this session (AI enhancement), after the scan's
        self._loaded: tuple[int, Volume] | None = None  # the scan's series last decoded, kept to switch back
        self._files: tuple[Path, ...] = ()  # the files of the series shown (for the tags panel)
        self._tags_file: Path | None = None
        self._build_docks()
        actions.build_menus(self)
        actions.build_toolbar(self)
        self._build_status()
        self.setAcceptDrops(True)
        for view in self.grid.views.values():
            view.hovered.connect(self.readout.setText)
            view.measured.connect(lambda text: self.statusBar().showMessage(f"Distance {text}", 10000))
        self.state.listen(self._on_state)
        self._update_recent_menu()
        self._sync_layout_controls()
        self.resize(1400, 800)
        docks = {d.objectName(): d for d in self.findChildren(QDockWidget)}
        self.resizeDocks([docks["tags"], docks["ai"]], [DOCK_WIDTHS_PX["tags"], DOCK_WIDTHS_PX["ai"]],
                         Qt.Orientation.Horizontal)
        if (geometry := self.settings.geometry()) is not None:
            self.restoreGeometry(geometry)
        if (window_state := self.settings.window_state()) is not None:
            self.restoreState(window_state)

    # -- building ----------------------------------------------------------------------------
    def _build_docks(self) -> None:
        self.browser = SeriesBrowser(self)
        self.browser.chosen.connect(self.load_series)
        self.tags = TagsPanel(self)
        # Reading and showing a header costs tens of ms: while the user scrolls, refresh once they pause.
        self._tags_timer = QTimer(self, singleShot=True, interval=150)
        self._tags_timer.timeout.connect(self.update_tags)
        for title, name, widget in (("Series", "series", self.browser), ("DICOM tags", "tags", self.tags)):
            dock = QDockWidget(title, self)
            dock.setObjectName(name)
            dock.setWidget(widget)
            self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.ai_dock = AiDock(self.state, self.grid, self.add_series, self.show_volume,
                              lambda parent, title, message: self.show_error(parent, title, message), parent=self)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.ai_dock)
        self.research_dock = ResearchDock(self.state, self.open_path, self.show_case,
                                          lambda parent, title, message: self.show_error(parent, title, message),
                                          parent=self)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.research_dock)
        self.research_dock.hide()  # View → Research panel; built when first shown

    @property
    def ai(self) -> AiPanel:
        """The AI panel (built on first use: see ai_dock)."""
        return self.ai_dock.panel()

    @property
    def research(self):
        """The research panel (built on first use: see research_panel)."""
        return self.research_dock.panel()

    def _build_status(self) -> None:
        self.readout = QLabel("", self)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(200)
        self.progress.hide()
        self.skipped_button = QPushButton("", self)
        self.skipped_button.setFlat(True)
        self.skipped_button.hide()
        self.skipped_button.clicked.connect(self.show_skipped)
        self.statusBar().addWidget(self.readout, 1)
        self.statusBar().addPermanentWidget(self.skipped_button)
        self.statusBar().addPermanentWidget(self.progress)
        for dock in self.findChildren(QDockWidget):
            self.docks_menu.addAction(dock.toggleViewAction())

    # -- opening -----------------------------------------------------------------------------
    def open_path(self, path: str | Path, series: int = 0) -> None:
        """Scan a file or folder and load series number `series`, in the background."""
        self.settings.add_recent(path)
        self.settings.last_dir = str(Path(path).parent)
        self._update_recent_menu()
        self._start(LoadThread(path=path, series=series, parent=self), series)

    def load_series(self, number: int) -> None:
        """Load series `number` of the last scan, or a series of this session after them (the browser's double-click)."""
        scanned = len(self.scan.series) if self.scan is not None else 0
        if scanned <= number < scanned + len(self.session_series):
            self.show_volume(self.session_series[number - scanned])
        elif self._loaded is not None and self._loaded[0] == number and not self.is_loading():
            self.show_volume(self._loaded[1])  # already decoded: switch back at once
        elif 0 <= number < scanned:
            self._start(LoadThread(refs=self.scan.series, series=number, thumbnails=False, parent=self), number)

    def add_series(self, volume: Volume) -> int:
        """Keep `volume` (e.g. an enhanced series) as a new series of the session; its browser number."""
        self.session_series.append(volume)
        number = (len(self.scan.series) if self.scan is not None else 0) + len(self.session_series) - 1
        item = QListWidgetItem(session_series_summary(volume))
        item.setToolTip("Made in this session (not saved until exported)")
        self.browser.addItem(item)
        return number

    def show_case(self, volume: Volume, mask: Volume | None = None) -> int:
        """Show an image that is no file of its own (a case of a labelled .npz) as a new series of the session,
        with its truth mask as overlay; its browser number."""
        number = self.add_series(volume)
        self.show_volume(volume)
        if mask is not None and self.state.volume is volume:
            self.state.set_overlay(mask)
        return number

    def show_volume(self, volume: Volume) -> None:
        """Show a volume already in memory: a series of this session, or the scan's series last decoded."""
        if self.is_loading():
            return
        scanned = len(self.scan.series) if self.scan is not None else 0
        if self._loaded is not None and volume is self._loaded[1]:
            number = self._loaded[0]
            self._files = self.scan.series[number].files if self.scan is not None else ()
        else:
            number = scanned + next((n for n, v in enumerate(self.session_series) if v is volume), 0)
            self._files = ()
        self.series_number = number
        self.state.set_volume(volume)
        self.browser.mark_current(number)
        self.update_tags()
        self.volume_loaded.emit(volume)

    def update_tags(self) -> None:
        """Show the header of the file of the current axial slice (DICOM), else the file's or volume's metadata."""
        volume = self.state.volume
        if volume is None or self.state.preview:
            return
        path = current_file(self._files, volume, self.state)
        if path is None:
            self._tags_file = None
            self.tags.set_rows(volume_info_rows(volume), volume.info.description or "(made in this session)")
            return
        if path == self._tags_file:
            return
        self._tags_file = path
        try:
            rows = read_file_rows(path)
        except (KdviewerError, OSError) as exc:
            rows = [TagRow("", "Error", "", str(exc))]
        self.tags.set_rows(rows, str(path))

    def _start(self, thread: LoadThread, series: int) -> None:
        old = self.loader
        if old is not None:
            old.cancel()
            if old.isFinished():
                old.deleteLater()
        self.loader = thread
        self._loading = True
        self.series_number = series
        thread.scanned.connect(self._on_scanned)
        thread.first_slice.connect(self._on_first_slice)
        thread.progress.connect(self._on_progress)
        thread.loaded.connect(self._on_loaded)
        thread.thumbnail.connect(self.browser.set_thumbnail)
        thread.failed.connect(self._on_failed)
        thread.finished.connect(self._on_thread_finished)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.statusBar().showMessage("Reading…")
        thread.start()

    def _on_thread_finished(self) -> None:
        thread = self.sender()
        if thread is not None and thread is not self.loader:  # a superseded load: free it
            thread.deleteLater()

    def is_loading(self) -> bool:
        """True from opening until the volume is shown (or failed); thumbnails may still follow."""
        return self._loading

    def _current(self, thread) -> bool:
        return thread is self.loader

    def _on_scanned(self, result) -> None:
        if not self._current(self.sender()):
            return
        self.scan = result
        self.session_series.clear()
        self._loaded = None
        self.browser.set_series(result.series)
        n = len(result.skipped)
        self.skipped_button.setText(f"{n} file{'s' if n != 1 else ''} skipped…")
        self.skipped_button.setVisible(n > 0)

    def _on_first_slice(self, ref, array) -> None:
        if not self._current(self.sender()):
            return
        self._previous = self.state.volume
        self.state.set_volume(preview_volume(ref, array), preview=ref.shape[0] > 1)

    def _on_progress(self, done: int, total: int) -> None:
        if self._current(self.sender()):
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)

    def _on_loaded(self, volume: Volume) -> None:
        if not self._current(self.sender()):
            return
        self._loading = False
        self.progress.hide()
        self.state.set_volume(volume)
        self._previous = None
        self._loaded = (self.series_number, volume)
        self._files = self.scan.series[self.series_number].files if self.scan is not None else ()
        self._tags_file = None
        self.update_tags()
        self.browser.mark_current(self.series_number)
        self.grid.views[self.grid.active].setFocus()  # keys scroll at once
        z, y, x = volume.shape
        self.statusBar().showMessage(f"Loaded {volume.info.description or volume.info.source} ({x}×{y}×{z})", 5000)
        if self.pending_overlay is not None:
            path, self.pending_overlay = self.pending_overlay, None
            self.load_overlay(path)
        self.volume_loaded.emit(volume)

    def _on_failed(self, message: str) -> None:
        if not self._current(self.sender()):
            return
        self._loading = False
        self.progress.hide()
        if self._previous is not None:  # the preview replaced a good volume: bring it back
            self.state.set_volume(self._previous)
            self._previous = None
        self.statusBar().showMessage("Could not open: " + message, 10000)
        self.show_error(self, "Could not open", message)
        self.load_failed.emit(message)

    def load_overlay(self, path: str | Path) -> bool:
        """Show a label volume on the current image's grid; False (and a dialog) when it does not fit."""
        from kdviewer.errors import KdviewerError
        from kdviewer.study.open import load_volume

        if self.state.volume is None or self.is_loading():
            self.pending_overlay = Path(path)
            return True
        try:
            labels = load_volume(path)
            self.state.set_overlay(labels)
        except (KdviewerError, OSError, ValueError) as exc:
            self.show_error(self, "Could not show the overlay", str(exc))
            return False
        self.statusBar().showMessage(f"Overlay {Path(path).name}", 5000)
        return True

    # -- user actions --------------------------------------------------------------------------
    def choose_file(self) -> None:
        """File → Open file…"""
        path, _ = QFileDialog.getOpenFileName(self, "Open file", self.settings.last_dir)
        if path:
            self.open_path(path)

    def choose_folder(self) -> None:
        """File → Open folder…"""
        path = QFileDialog.getExistingDirectory(self, "Open folder", self.settings.last_dir)
        if path:
            self.open_path(path)

    def choose_overlay(self) -> None:
        """File → Open overlay…"""
        path, _ = QFileDialog.getOpenFileName(self, "Open overlay (label volume)", self.settings.last_dir,
                                              "Label volumes (*.nii *.nii.gz *.nrrd *.mha *.mhd);;All files (*)")
        if path:
            self.load_overlay(path)

    def choose_screenshot(self, what: str) -> None:
        """File → Export screenshot…: ask for a PNG path."""
        path, _ = QFileDialog.getSaveFileName(self, "Export screenshot", self.settings.last_dir, "PNG (*.png)")
        if path:
            self.export_screenshot(path, what)

    def export_screenshot(self, path: str | Path, what: str = "view") -> bool:
        """Save a PNG of the active view ("view") or the whole window ("window")."""
        widget = self.grid.views.get(self.grid.active) if what == "view" else self
        ok = widget.grab().save(str(path), "PNG")
        if not ok:
            self.show_error(self, "Could not save the screenshot", f"{path}: could not write a PNG there")
        return ok

    def set_layout(self, layout: str) -> None:
        """Switch the layout (1x3, 2x2, single) and remember it."""
        self.state.set_layout(layout)
        self.settings.layout = layout

    def set_mode(self, mode: str) -> None:
        """What the left mouse button does in every view (see view_box.MODES)."""
        for view in self.grid.views.values():
            view.mode = mode
        self.actions_by_name[f"mode_{mode}"].setChecked(True)

    def apply_preset(self, name: str) -> None:
        """Switch to a window preset of the current volume (toolbar combo, number keys)."""
        if self.state.volume is not None and name in self.state.presets:
            self.state.apply_preset(name)

    def reset_views(self) -> None:
        """Fit every view (R)."""
        for view in self.grid.views.values():
            view.reset_view()

    def toggle_overlay(self) -> None:
        """Show or hide the overlay (O)."""
        self.state.set_overlay_visible(not self.state.overlay_visible)

    def show_help(self) -> HelpDialog:
        """The shortcuts dialog (F1), non-blocking."""
        dialog = HelpDialog(self)
        dialog.open()
        return dialog

    def show_skipped(self) -> SkippedFilesDialog | None:
        """The skipped-files dialog of the last scan, if any file was skipped."""
        if self.scan is None or not self.scan.skipped:
            return None
        dialog = SkippedFilesDialog(self.scan.skipped, self)
        dialog.open()
        return dialog

    # -- keeping controls in step with the state ---------------------------------------------
    def _on_state(self, event: str) -> None:
        if event == "volume":
            self.preset_combo.clear()
            for name, (c, w) in self.state.presets.items():
                title = "File" if name == FILE_PRESET else name.capitalize()
                self.preset_combo.addItem(f"{title} ({c:g}, {w:g})", name)
        if event in ("volume", "window"):
            names = [n for n, win in self.state.presets.items() if win == self.state.window]
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(names[0]) if names else -1)
        if event in ("volume", "overlay"):
            has = self.state.overlay is not None
            self.overlay_check.setEnabled(has)
            self.opacity_slider.setEnabled(has)
            self.overlay_check.setChecked(has and self.state.overlay_visible)
            self.actions_by_name["toggle_overlay"].setChecked(has and self.state.overlay_visible)
        if event == "layout":
            self._sync_layout_controls()
        if event == "cursor" and self._files:
            self._tags_timer.start()

    def _sync_layout_controls(self) -> None:
        layout = self.state.layout
        self.layout_combo.setCurrentIndex(self.layout_combo.findData(layout))
        self.actions_by_name[f"layout_{layout}"].setChecked(True)

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_files():
            self.recent_menu.addAction(path, lambda p=path: self.open_path(p))
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    # -- drag and drop, closing --------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt name
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_path(paths[0])
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self.ai_dock.wait()
        self.research_dock.wait()
        threads = self.findChildren(LoadThread)
        if self.ai_dock.built_panel() is not None:  # only then can a model be running
            from kdviewer.gui.ai_worker import TaskThread

            threads += self.findChildren(TaskThread)
        for thread in threads:  # never destroy a running QThread
            thread.cancel()
            thread.wait(10000)
        self.settings.set_geometry(self.saveGeometry(), self.saveState())
        self.settings.sync()
        super().closeEvent(event)


def session_series_summary(volume: Volume) -> str:
    """The series browser's two lines for a series made in this session."""
    z, y, x = volume.shape
    sx, sy, sz = volume.spacing
    return (f"{volume.info.description or '(new series)'}\n{volume.info.modality}   {z} slice{'s' if z != 1 else ''}"
            f"   {x}×{y}   {sx:.2f}×{sy:.2f}×{sz:.2f} mm   (this session)")


def current_file(files: tuple[Path, ...], volume: Volume, state: ViewerState) -> Path | None:
    """The file holding the current axial slice: one file per slice (classic DICOM), else the only file."""
    if not files:
        return None
    if len(files) == volume.shape[0] and len(files) > 1 and state.geometry is not None:
        return Path(files[state.geometry.original_index_xyz(state.cursor)[2]])
    return Path(files[0])


def _default_show_error(parent: QMainWindow, title: str, message: str) -> object:
    return show_error(parent, title, message)
