"""The viewer's logic without a window: planes, cursor, window, overlay, readout, headless rendering."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import IRCAD_DICOM, IRCAD_MASK, PACSMAN_BIDS, PACSMAN_DICOM

from kdviewer.gui.measure import Measurement
from kdviewer.gui.overlay import LABEL_LUT, OverlayGridError
from kdviewer.gui.render import render_view
from kdviewer.gui.tags_panel import filter_tags
from kdviewer.gui.viewer_state import ViewerState
from kdviewer.imaging.window import PRESETS, window_to_uint8
from kdviewer.study.open import load_volume
from kdviewer.study.volume import SeriesInfo, Volume


@pytest.fixture(scope="module")
def ct() -> Volume:
    return load_volume(IRCAD_DICOM)


@pytest.fixture(scope="module")
def liver() -> Volume:
    return load_volume(IRCAD_MASK)


@pytest.fixture(scope="module")
def state(ct) -> ViewerState:
    s = ViewerState()
    s.set_volume(ct)
    return s


def test_ct_opens_at_its_centre_with_a_ct_window(state, ct):
    assert state.cursor == (59, 256, 256)
    assert [state.slice_count(v) for v in ("axial", "coronal", "sagittal")] == [119, 512, 512]
    assert state.window == PRESETS["abdomen"]  # IRCAD's files carry no window of their own
    assert np.shares_memory(state.array_lps, ct.array)
    assert state.pixel_size_mm("coronal") == pytest.approx((1.6, 0.743), abs=1e-3)


def test_scrolling_is_clamped_and_clicking_moves_the_other_views():
    s = ViewerState()
    s.set_volume(Volume(np.zeros((10, 20, 30), np.int16)))
    s.scroll("axial", 100)
    assert s.slice_index("axial") == 9
    s.scroll("axial", -3)
    assert s.slice_index("axial") == 6
    s.click("axial", row=4.2, col=17.9)
    assert (s.slice_index("coronal"), s.slice_index("sagittal"), s.slice_index("axial")) == (4, 17, 6)
    s.click("coronal", row=0, col=3)  # top row of the coronal view is the most superior slice
    assert (s.slice_index("axial"), s.slice_index("sagittal")) == (9, 3)
    assert s.crosshair("sagittal") == (0, 4)


def test_window_drag_and_presets_change_the_window():
    s = ViewerState()
    s.set_volume(Volume(np.arange(1000, dtype=np.int16).reshape(10, 10, 10), info=SeriesInfo(units="HU")))
    events = []
    s.listen(events.append)
    before = s.window
    s.drag_window(50, 0)
    assert s.window.width > before.width and s.window.center == before.center
    s.drag_window(0, -40)
    assert s.window.center < before.center
    s.apply_preset("lung")
    assert s.window == PRESETS["lung"]
    assert events.count("window") == 3
    s.set_volume(Volume(np.arange(1000, dtype=np.int16).reshape(10, 10, 10)))  # not HU: no CT presets
    assert list(s.presets) == ["file"]


def test_readout_gives_value_units_and_lps_position(state, ct):
    r = state.readout("axial", row=100, col=300)
    assert r.value == float(ct.array[59, 100, 300])
    assert r.units == "HU" and r.index_xyz == (300, 100, 59)
    assert r.lps_mm == pytest.approx(tuple(ct.index_to_lps((300, 100, 59))))
    assert "HU" in r.text() and "mm LPS" in r.text()
    assert state.readout("axial", row=-1, col=3) is None


def test_overlay_on_another_grid_is_refused(ct):
    s = ViewerState()
    s.set_volume(ct)
    with pytest.raises(OverlayGridError, match="another grid"):
        s.set_overlay(load_volume(PACSMAN_BIDS))
    assert s.overlay is None


def test_rendered_slice_equals_the_window_applied_to_that_slice(ct):
    """Image regression: axial slice 60 of IRCAD through (40, 400) is exactly window_to_uint8 of it."""
    rgba = render_view(ct, "axial", 60, (40.0, 400.0))
    expected = window_to_uint8(ct.array[60], 40.0, 400.0)  # identity direction: axial = stored slice
    assert rgba.shape == (512, 512, 4)
    for channel in range(3):
        np.testing.assert_array_equal(rgba[..., channel], expected)
    assert (rgba[..., 3] == 255).all()
    assert rgba[256, 256, 0] == expected[256, 256]


def test_rendered_overlay_colours_the_liver(ct, liver):
    k = 60
    rows, cols = np.nonzero(liver.array[k])
    r, c = int(np.median(rows)), int(np.median(cols))
    r, c = next((rr, cc) for rr, cc in zip(rows, cols, strict=True) if abs(rr - r) + abs(cc - c) < 40)
    plain = render_view(ct, "axial", k, (40, 400))
    shown = render_view(ct, "axial", k, (40, 400), overlay=liver, overlay_opacity=0.5)
    red = LABEL_LUT[1, :3].astype(float)
    expected = np.rint(plain[r, c, :3] * 0.5 + red * 0.5)
    np.testing.assert_allclose(shown[r, c, :3], expected, atol=1)
    outside = np.argwhere(liver.array[k] == 0)[0]
    np.testing.assert_array_equal(shown[tuple(outside)], plain[tuple(outside)])


def test_rendering_keeps_the_aspect_in_mm(ct):
    coronal = render_view(ct, "coronal", 256, (40, 400))
    assert coronal.shape[:2] == (round(119 * 1.6 / 0.743), 512)
    canvas = render_view(ct, "axial", 60, (40, 400), size=(300, 200))
    assert canvas.shape == (200, 300, 4)
    assert (canvas[:, :40, :3] == 0).all()  # letterboxed: a square image in a wide canvas


def _axial_at_z(volume: Volume, z_mm: float) -> np.ndarray:
    s = ViewerState()
    s.set_volume(volume)
    origin, spacing, _ = s.geometry.transform.geometry_lps(volume.origin, volume.spacing, volume.direction)
    k = round((z_mm - origin[2]) / spacing[2])
    return render_view(volume, "axial", k, (1, 3))


def test_pacsman_dicom_and_nifti_look_the_same_and_the_eyes_are_anterior():
    dicom, nifti = load_volume(PACSMAN_DICOM), load_volume(PACSMAN_BIDS)
    s = ViewerState()
    s.set_volume(dicom)
    eyes_k = int(np.argwhere(s.array_lps == 1)[:, 0].mean())
    eye_rows = np.nonzero((s.plane("axial", eyes_k) == 1).any(axis=1))[0]
    assert eye_rows.size and eye_rows.max() < s.plane("axial", eyes_k).shape[0] / 2  # upper half = anterior
    z_mm = 100.0
    np.testing.assert_array_equal(_axial_at_z(dicom, z_mm), _axial_at_z(nifti, z_mm))


def test_measurement_and_tag_filter():
    assert Measurement("axial", 0, (0.0, 0.0), (30.0, 40.0)).label() == "50.0 mm"
    tags = {"PatientName": "liver_17", "Modality": "CT", "StudyDate": "20090527"}
    assert filter_tags(tags, "pat") == [("PatientName", "liver_17")]
    assert filter_tags(tags, "ct") == [("Modality", "CT")]
    assert len(filter_tags(tags, "")) == 3
