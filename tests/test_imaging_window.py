"""Windowing: DICOM linear VOI LUT semantics, presets, automatic windows and parsing."""

from __future__ import annotations

import numpy as np
import pytest

from kdviewer.imaging.window import (
    PRESETS,
    Window,
    auto_window,
    parse_window,
    window_bounds,
    window_to_uint8,
)


def test_presets_hold_the_usual_ct_windows():
    assert PRESETS["lung"] == (-600, 1500)
    assert PRESETS["mediastinum"] == (50, 350)
    assert PRESETS["brain"].center == 40 and PRESETS["brain"].width == 80
    assert set(PRESETS) >= {"lung", "mediastinum", "abdomen", "liver", "bone", "brain"}


def test_window_follows_dicom_linear_bounds():
    # c=40, w=400: black at <= -160, white at >= 239 (PS3.3 C.11.2.1.2.1)
    low, high = window_bounds(40, 400)
    assert (low, high) == (-160.0, 239.0)
    hu = np.array([-3000, -161, -160, 39.5, 239, 240, 3000], dtype=np.float32)
    out = window_to_uint8(hu, 40, 400)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 0, 128, 255, 255, 255]


def test_window_is_monotonic_and_uses_the_full_range():
    hu = np.arange(-1024, 3072, dtype=np.int16).reshape(64, 64)
    out = window_to_uint8(hu, *PRESETS["abdomen"])
    assert out.shape == hu.shape
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) == 256


def test_window_width_one_is_a_threshold():
    # c=1, w=1: x <= 0.5 is black, anything above is white
    out = window_to_uint8(np.array([-1, 0, 0.5, 0.51, 1]), center=1, width=1)
    assert out.tolist() == [0, 0, 0, 255, 255]


def test_window_rejects_width_below_one():
    with pytest.raises(ValueError):
        window_to_uint8(np.zeros(3), 0, 0.5)


def test_auto_window_spans_the_bulk_of_the_values():
    rng = np.random.default_rng(0)
    img = rng.uniform(100, 900, size=(256, 256)).astype(np.float32)
    img[0, :10] = 1e6  # a few hot pixels must not stretch the window
    center, width = auto_window(img)
    assert 480 < center < 520
    assert 760 < width < 800
    assert isinstance(auto_window(img), Window)


def test_auto_window_of_a_constant_or_nan_image():
    assert auto_window(np.full((8, 8), 5, dtype=np.uint16)) == (5.0, 1.0)
    img = np.full((8, 8), np.nan)
    img[0, 0] = 3
    assert auto_window(img).center == 3.0
    with pytest.raises(ValueError):
        auto_window(np.full((4, 4), np.nan))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("lung", (-600, 1500)), (" Bone ", (400, 1800)), ("40,400", (40, 400)), ("-600, 1500", (-600, 1500)),
     ("50/350", (50, 350)), ("-1e3 2.5e3", (-1000, 2500))],
)
def test_parse_window_accepts_names_and_numbers(text, expected):
    assert parse_window(text) == expected


def test_parse_window_uses_given_presets_and_explains_errors():
    class Preset:  # shaped like study's WindowPreset
        center, width = 300.0, 1500.0

    assert parse_window("file", {"File": Preset()}) == (300, 1500)
    with pytest.raises(ValueError, match="lung"):
        parse_window("lungs")
    with pytest.raises(ValueError, match="width"):
        parse_window("40,0")
