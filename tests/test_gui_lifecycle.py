"""Starting and closing the viewer: a lean start (the AI panel comes later), closing views and windows safely."""

from __future__ import annotations

import json
import subprocess
import sys

from gui_helpers import IRCAD_DICOM, PACSMAN_BIDS, open_and_wait
from PySide6.QtWidgets import QLabel

from kdviewer.gui.main_window import MainWindow
from kdviewer.gui.settings import file_settings
from kdviewer.gui.slice_view import SliceView
from kdviewer.gui.viewer_state import ViewerState
from kdviewer.study import load_volume

# Modules the viewer must not import before its first slice: the AI runtime and the libraries of classic image
# maths and of the other formats are imported when a model, a filter or a NIfTI file first needs them.
HEAVY_MODULES = ("kdviewer.runtime", "onnxruntime", "scipy", "scipy.ndimage", "skimage", "SimpleITK", "torch")


def _heavy_modules_imported(code: str) -> list[str]:
    """Run `code` in a fresh interpreter; the HEAVY_MODULES it imported."""
    probe = f"import json, sys\n{code}\nprint(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_window_imports_nothing_heavy():
    assert _heavy_modules_imported("import kdviewer.gui.main_window, kdviewer.gui.app") == []


def test_kdviewer_path_imports_nothing_heavy_before_the_window(tmp_path):
    # `kdviewer PATH` up to the moment run_viewer would make the window, with the real command line.
    code = f"""
import kdviewer.gui.app
from kdviewer.cli import main
kdviewer.gui.app.run_viewer = lambda paths, overlay=None: 0
assert main([{str(IRCAD_DICOM)!r}]) == 0
"""
    assert _heavy_modules_imported(code) == []


def test_closing_a_slice_view_with_a_volume(qtbot):
    state = ViewerState()
    view = SliceView(state, "axial")
    qtbot.addWidget(view)
    view.resize(300, 300)
    view.show()
    qtbot.waitExposed(view)
    state.set_volume(load_volume(PACSMAN_BIDS))
    view.grab()
    view.close()  # pyqtgraph deletes the scene's items and resizes the view: it used to crash here
    assert view.closed and not view.isVisible()
    before = state.slice_index("axial")
    state.scroll("axial", 1)  # the closed view no longer follows the state
    state.set_window(100, 500)
    assert state.slice_index("axial") == before + 1


def test_closing_the_window_with_a_volume_and_its_views(qtbot, tmp_path):
    settings = tmp_path / "settings.ini"
    win = MainWindow(settings=file_settings(settings), show_error=lambda *args: None)
    qtbot.addWidget(win)
    win.show()
    open_and_wait(qtbot, win, IRCAD_DICOM)
    assert win.close() and not win.isVisible()
    for view in win.grid.views.values():
        view.close()
        assert view.closed
    win.state.scroll("axial", 3)  # the other listeners (grid, window, AI dock) still work
    assert settings.exists()  # the geometry was saved on closing


def test_closing_the_window_while_it_loads(qtbot, tmp_path):
    win = MainWindow(settings=file_settings(tmp_path / "settings.ini"), show_error=lambda *args: None)
    qtbot.addWidget(win)
    win.show()
    win.open_path(IRCAD_DICOM)
    assert win.close()  # cancels the loader and waits for it
    assert win.loader.isFinished()


def test_the_ai_panel_is_built_once_a_series_is_shown(qtbot, tmp_path):
    win = MainWindow(settings=file_settings(tmp_path / "settings.ini"), show_error=lambda *args: None)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.ai_dock.built_panel() is None and isinstance(win.ai_dock.widget(), QLabel)
    open_and_wait(qtbot, win, IRCAD_DICOM)
    qtbot.waitUntil(lambda: win.ai_dock.built_panel() is not None, timeout=30000)  # imported in the background
    assert win.ai_dock.widget() is win.ai
    assert "fit" in win.ai.status.text()  # it lists the models for the series shown
