"""Loading in the background: first slice before the volume, skipped files, 2-D images, drops, orientation."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import IRCAD_DICOM, PACSMAN_BIDS, PACSMAN_DICOM, PACSMAN_PNG, open_and_wait
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from kdviewer.gui.loader import LoadThread
from kdviewer.gui.main_window import MainWindow
from kdviewer.gui.settings import file_settings
from kdviewer.imaging.window import PRESETS


@pytest.fixture
def window(qtbot, tmp_path):
    errors = []
    win = MainWindow(settings=file_settings(tmp_path / "settings.ini"),
                     show_error=lambda parent, title, message: errors.append(message))
    win.errors = errors
    qtbot.addWidget(win)
    win.resize(1400, 800)
    win.show()
    return win


def test_the_first_slice_arrives_before_the_volume(qtbot):
    events = []
    thread = LoadThread(path=IRCAD_DICOM, thumbnails=False)
    thread.scanned.connect(lambda result: events.append("scanned"))
    thread.first_slice.connect(lambda ref, array: events.append(("first_slice", array.shape)))
    thread.progress.connect(lambda done, total: events.append("progress"))
    thread.loaded.connect(lambda volume: events.append(("loaded", volume.shape)))
    with qtbot.waitSignal(thread.finished, timeout=20000):
        thread.start()
    qtbot.waitUntil(lambda: events and events[-1][0] == "loaded", timeout=5000)
    assert events[0] == "scanned" and events[1] == ("first_slice", (512, 512))
    assert "progress" in events and events[-1] == ("loaded", (119, 512, 512))


def test_the_window_shows_the_middle_slice_while_loading(qtbot, window):
    shapes = []
    window.state.listen(lambda event: shapes.append(window.state.volume.shape) if event == "volume" else None)
    open_and_wait(qtbot, window, IRCAD_DICOM)
    assert shapes == [(1, 512, 512), (119, 512, 512)]
    assert [v.view for v in window.grid.visible_views()] == ["axial", "coronal", "sagittal"]


def test_skipped_files_are_listed(qtbot, window, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in (10, 11, 12):
        (folder / f"image_{i}").symlink_to(IRCAD_DICOM / f"image_{i}")
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.dcm").write_bytes(b"")
    volume = open_and_wait(qtbot, window, folder)
    assert volume.shape == (3, 512, 512)
    assert window.skipped_button.isVisibleTo(window) and window.skipped_button.text().startswith("2 files")
    dialog = window.show_skipped()
    text = _dialog_text(dialog)
    assert "notes.txt" in text and "empty.dcm" in text and "0 bytes" in text
    dialog.close()


def _dialog_text(dialog) -> str:
    from PySide6.QtWidgets import QPlainTextEdit

    return dialog.findChild(QPlainTextEdit).toPlainText()


def test_a_2d_image_shows_in_a_single_view(qtbot, window):
    volume = open_and_wait(qtbot, window, PACSMAN_PNG)
    assert volume.is_2d
    assert [v.view for v in window.grid.visible_views()] == ["axial"]
    np.testing.assert_array_equal(window.grid.views["axial"].image.image, volume.array[0])


def test_dropping_a_folder_opens_it(qtbot, window):
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(PACSMAN_DICOM))])
    event = QDropEvent(QPointF(100, 100), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.volume_loaded, timeout=20000):
        window.dropEvent(event)
    assert window.state.volume.shape == (128, 128, 128)


@pytest.mark.parametrize("path", [PACSMAN_DICOM, PACSMAN_BIDS])
def test_pacsman_eyes_are_at_the_top_of_the_axial_view(qtbot, window, path):
    open_and_wait(qtbot, window, path)
    state = window.state
    eyes = np.argwhere(state.array_lps == 1)
    state.set_slice("axial", int(eyes[:, 0].mean()))
    shown = window.grid.views["axial"].image.image
    rows = np.nonzero((shown == 1).any(axis=1))[0]
    assert rows.size and rows.max() < shown.shape[0] / 2
    assert window.grid.views["axial"].edge["top"].text() == "A"
    assert window.grid.views["axial"].edge["left"].text() == "R"


def test_readout_in_the_status_bar(qtbot, window):
    open_and_wait(qtbot, window, IRCAD_DICOM)
    axial = window.grid.views["axial"]
    axial._mouse_moved(axial.mapToScene(QPoint(axial.width() // 2, axial.height() // 2)))
    assert "HU" in window.readout.text() and "mm LPS" in window.readout.text()


def test_double_click_in_the_series_browser_loads_that_series(qtbot, window, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for i in (10, 11, 12):
        (folder / f"ct_{i}").symlink_to(IRCAD_DICOM / f"image_{i}")
    for i in range(4):
        (folder / f"mr_{i}.dcm").symlink_to(PACSMAN_DICOM / f"slice{i}.dcm")
    first = open_and_wait(qtbot, window, folder)
    assert window.browser.count() == 2
    other = 1 - [ref.shape for ref in window.scan.series].index(first.shape)
    where = window.browser.visualItemRect(window.browser.item(other)).center()
    with qtbot.waitSignal(window.volume_loaded, timeout=20000) as blocker:
        qtbot.mouseClick(window.browser.viewport(), Qt.MouseButton.LeftButton, pos=where)
        qtbot.mouseDClick(window.browser.viewport(), Qt.MouseButton.LeftButton, pos=where)
    assert blocker.args[0].shape == window.scan.series[other].shape != first.shape
    assert window.browser.item(other).font().bold()


def test_number_keys_switch_presets(qtbot, window):
    open_and_wait(qtbot, window, IRCAD_DICOM)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    axial = window.grid.views["axial"]
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_1)
    assert window.state.window == PRESETS["lung"]
    qtbot.keyClick(axial, Qt.Key.Key_0)
    assert window.state.window == window.state.presets["file"]


def test_view_command_refuses_a_missing_path(capsys, tmp_path):
    from kdviewer.cli import main

    assert main([str(tmp_path / "missing")]) == 2  # `kdviewer PATH` is `kdviewer view PATH`
    assert "no such file or folder" in capsys.readouterr().err


def test_a_2d_image_has_no_patient_orientation_letters(qtbot, window):
    open_and_wait(qtbot, window, PACSMAN_PNG)
    assert all(label.text() == "" for label in window.grid.views["axial"].edge.values())
    assert not window.grid.views["axial"].vline.isVisible()


def test_a_newer_open_wins_over_one_still_loading(qtbot, window):
    window.open_path(IRCAD_DICOM)
    with qtbot.waitSignal(window.volume_loaded, timeout=20000) as blocker:
        window.open_path(PACSMAN_DICOM)
    assert blocker.args[0].shape == (128, 128, 128)
    qtbot.wait(300)  # the superseded load must not come back
    assert window.state.volume.shape == (128, 128, 128)
