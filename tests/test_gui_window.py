"""The main window offscreen: open, scroll, window drag, presets, crosshair, overlay, screenshots, errors."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import IRCAD_DICOM, IRCAD_MASK, PACSMAN_BIDS, click, drag, open_and_wait, pixel_point, wheel
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage

from kdviewer.gui.image_export import qimage_to_rgba
from kdviewer.gui.main_window import MainWindow
from kdviewer.gui.overlay import LABEL_LUT
from kdviewer.gui.settings import file_settings
from kdviewer.imaging.window import PRESETS, window_bounds, window_to_uint8


class ErrorRecorder:
    """Stands in for the error dialog: records (title, message)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def __call__(self, parent, title: str, message: str) -> None:
        self.errors.append((title, message))


@pytest.fixture
def errors() -> ErrorRecorder:
    return ErrorRecorder()


@pytest.fixture
def window(qtbot, tmp_path, errors) -> MainWindow:
    win = MainWindow(settings=file_settings(tmp_path / "settings.ini"), show_error=errors)
    qtbot.addWidget(win)
    win.resize(1600, 1000)  # views large enough for more than one screen pixel per voxel
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def ircad(qtbot, window) -> MainWindow:
    open_and_wait(qtbot, window, IRCAD_DICOM)
    return window


def test_opening_shows_three_views_the_series_and_its_tags(qtbot, ircad):
    win = ircad
    assert win.state.volume.shape == (119, 512, 512)
    assert [v.view for v in win.grid.visible_views()] == ["axial", "coronal", "sagittal"]
    assert win.browser.count() == 1 and "119 slices" in win.browser.item(0).text()
    assert ("PatientName", "liver_17^patient") in win.tags.visible_tags()
    win.tags.filter.setText("institution")
    assert win.tags.visible_tags() == [("InstitutionName", "IRCAD")]
    qtbot.waitUntil(lambda: not win.browser.item(0).icon().isNull(), timeout=10000)  # thumbnail
    assert str(IRCAD_DICOM.resolve()) in win.settings.recent_files()


def test_wheel_and_keys_scroll_the_view(qtbot, ircad):
    axial = ircad.grid.views["axial"]
    start = ircad.state.slice_index("axial")
    wheel(axial, 3)
    assert ircad.state.slice_index("axial") == start + 3
    assert axial.image.image is not None
    np.testing.assert_array_equal(axial.image.image, ircad.state.array_lps[start + 3])
    qtbot.keyClick(axial, Qt.Key.Key_PageDown)
    qtbot.keyClick(axial, Qt.Key.Key_Down)
    assert ircad.state.slice_index("axial") == start + 1
    zoom_before = axial.box.viewRange()
    wheel(axial, 2, Qt.KeyboardModifier.ControlModifier)  # Ctrl+wheel zooms, does not scroll
    assert ircad.state.slice_index("axial") == start + 1
    assert np.ptp(axial.box.viewRange()[0]) < np.ptp(zoom_before[0])


def test_window_drag_and_presets_set_the_levels(qtbot, ircad):
    axial = ircad.grid.views["axial"]
    before = ircad.state.window
    centre = QPoint(axial.viewport().width() // 2, axial.viewport().height() // 2)
    drag(axial, centre, centre + QPoint(80, 40), modifiers=Qt.KeyboardModifier.ShiftModifier)
    after = ircad.state.window
    assert after.width > before.width and after.center > before.center
    low, high = axial.image.levels
    assert (high - low) == pytest.approx(after.width - 1)
    ircad.apply_preset("lung")
    assert ircad.state.window == PRESETS["lung"]
    assert tuple(axial.image.levels) == pytest.approx(window_bounds(*PRESETS["lung"]))
    assert ircad.preset_combo.currentData() == "lung"
    ircad.preset_combo.activated.emit(ircad.preset_combo.findData("bone"))
    assert ircad.state.window == PRESETS["bone"]


def test_window_mode_drag_with_the_left_button(qtbot, ircad):
    ircad.set_mode("window")
    axial = ircad.grid.views["axial"]
    before = ircad.state.window
    centre = QPoint(axial.viewport().width() // 2, axial.viewport().height() // 2)
    drag(axial, centre, centre - QPoint(60, 0))
    assert ircad.state.window.width < before.width


def single_axial(qtbot, win):
    """The axial view alone, large: about two screen pixels per voxel, so pixel positions are exact."""
    win.set_layout("single")
    axial = win.grid.views["axial"]
    qtbot.waitUntil(lambda: axial.width() > 1000)
    qtbot.wait(20)
    return axial


def test_clicking_in_axial_moves_coronal_and_sagittal(qtbot, ircad):
    axial = single_axial(qtbot, ircad)
    click(axial, pixel_point(axial, 200, 150))
    assert ircad.state.slice_index("coronal") == 200
    assert ircad.state.slice_index("sagittal") == 150
    ircad.set_layout("1x3")
    coronal = ircad.grid.views["coronal"]
    np.testing.assert_array_equal(coronal.image.image, ircad.state.array_lps[::-1, 200, :])
    assert coronal.vline.value() == pytest.approx(150.5 * ircad.state.pixel_size_mm("coronal")[1])


def test_the_view_shows_the_windowed_pixels(qtbot, ircad):
    """Image regression on screen: a known window on a known slice gives the expected grey levels."""
    ircad.state.set_slice("axial", 60)
    ircad.state.set_window(40, 400)
    axial = single_axial(qtbot, ircad)
    qtbot.wait(50)
    shot = qimage_to_rgba(axial.grab().toImage())
    expected = window_to_uint8(ircad.state.array_lps[60], 40, 400)
    for row, col in ((100, 100), (300, 200), (400, 380), (180, 330)):
        p = pixel_point(axial, row, col)
        assert abs(int(shot[p.y(), p.x(), 0]) - int(expected[row, col])) <= 1, (row, col)


def test_overlay_colours_the_liver_and_follows_the_slider(qtbot, ircad):
    assert ircad.load_overlay(IRCAD_MASK)
    axial = single_axial(qtbot, ircad)
    mask = ircad.state.overlay_lps[ircad.state.slice_index("axial")]
    rows, cols = np.nonzero(mask)
    cross_row, cross_col = ircad.state.crosshair("axial")
    row, col = next((r, c) for r, c in zip(rows, cols, strict=True)
                    if abs(r - cross_row) > 5 and abs(c - cross_col) > 5 and mask[r - 3:r + 4, c - 3:c + 4].all())
    assert axial.labels.isVisible() and axial.labels.opacity() == pytest.approx(0.5)
    qtbot.wait(50)
    p = pixel_point(axial, row, col)
    pixel = qimage_to_rgba(axial.grab().toImage())[p.y(), p.x(), :3].astype(int)
    grey = int(window_to_uint8(ircad.state.plane("axial"), *ircad.state.window)[row, col])
    expected = 0.5 * grey + 0.5 * LABEL_LUT[1, :3]
    np.testing.assert_allclose(pixel, expected, atol=3)
    ircad.opacity_slider.setValue(20)
    assert axial.labels.opacity() == pytest.approx(0.2)
    ircad.overlay_check.setChecked(False)
    assert not axial.labels.isVisible()


def test_overlay_on_another_grid_shows_a_dialog(qtbot, ircad, errors):
    assert not ircad.load_overlay(PACSMAN_BIDS)
    assert errors.errors and "another grid" in errors.errors[-1][1]
    assert ircad.state.overlay is None and ircad.state.volume.shape == (119, 512, 512)


def test_bad_file_shows_a_dialog_and_the_window_keeps_working(qtbot, window, errors, tmp_path):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"DICM" + b"\0" * 10)
    with qtbot.waitSignal(window.load_failed, timeout=10000):
        window.open_path(bad)
    assert errors.errors and errors.errors[-1][0] == "Could not open"
    assert window.state.volume is None
    open_and_wait(qtbot, window, IRCAD_DICOM)
    with qtbot.waitSignal(window.load_failed, timeout=10000):
        window.open_path(tmp_path / "missing")
    assert window.state.volume.shape == (119, 512, 512)  # the good volume stays
    wheel(window.grid.views["axial"], 1)
    assert window.state.slice_index("axial") == 60


def test_screenshots_of_view_and_window(qtbot, ircad, tmp_path):
    view_png, window_png = tmp_path / "view.png", tmp_path / "window.png"
    assert ircad.export_screenshot(view_png, "view")
    assert ircad.export_screenshot(window_png, "window")
    view_image, window_image = QImage(str(view_png)), QImage(str(window_png))
    assert view_image.size() == ircad.grid.views["axial"].size()
    assert window_image.width() == ircad.width()
    assert qimage_to_rgba(view_image)[..., :3].max() > 200  # not a black picture


def test_layouts_and_settings_are_remembered(qtbot, tmp_path, errors):
    settings = tmp_path / "remember.ini"
    first = MainWindow(settings=file_settings(settings), show_error=errors)
    qtbot.addWidget(first)
    first.show()
    open_and_wait(qtbot, first, IRCAD_DICOM)
    first.set_layout("2x2")
    assert first.grid.info.isVisible() and "CT" in first.grid.info.text()
    first.set_layout("single")
    assert len(first.grid.visible_views()) == 1
    first.close()
    second = MainWindow(settings=file_settings(settings), show_error=errors)
    qtbot.addWidget(second)
    assert second.state.layout == "single"
    assert [a.text() for a in second.recent_menu.actions()] == [str(IRCAD_DICOM.resolve())]


def test_measure_gives_millimetres(qtbot, ircad):
    ircad.set_mode("measure")
    axial = ircad.grid.views["axial"]
    drag(axial, pixel_point(axial, 100, 100), pixel_point(axial, 100, 200))
    (m,) = axial.measurements
    assert m.length_mm == pytest.approx(100 * 0.743, rel=0.03)
    assert axial.ruler_text.toPlainText().endswith("mm")


def test_help_lists_the_shortcuts(qtbot, window):
    dialog = window.show_help()
    text = dialog.text.toPlainText()
    assert "PageUp" in text and "lung" in text and "Ctrl+O" in text
    dialog.close()


def test_the_default_error_dialog_does_not_block(qtbot, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    win = MainWindow(settings=file_settings(tmp_path / "s.ini"))  # the real dialog
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.load_failed, timeout=10000):
        win.open_path(tmp_path / "missing")
    boxes = [b for b in win.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1 and "missing" in boxes[0].text()
    boxes[0].accept()


def test_overlay_asked_for_during_loading_is_shown_after_it(qtbot, window):
    with qtbot.waitSignal(window.volume_loaded, timeout=20000):
        window.open_path(IRCAD_DICOM)
        assert window.load_overlay(IRCAD_MASK)  # like `kdviewer view CT --overlay MASK`
    assert window.state.overlay is not None and window.overlay_check.isChecked()
    window.load_overlay(IRCAD_MASK)  # again, right after loading, while thumbnails are still made
    assert window.state.overlay is not None and window.pending_overlay is None
