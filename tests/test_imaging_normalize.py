"""Intensity normalisation gives the ranges a model expects."""

from __future__ import annotations

import numpy as np
import pytest

from kdviewer.imaging.normalize import minmax, window_normalize, zscore


def test_minmax_maps_to_unit_range():
    img = np.array([[-1000, 0], [500, 1000]], dtype=np.int16)
    out = minmax(img)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0.5], [0.75, 1]])


def test_minmax_with_percentiles_clips_outliers():
    img = np.linspace(0, 100, 1001, dtype=np.float32)
    img[-1] = 1e6
    out = minmax(img, percentiles=(1, 99))
    assert out.min() == 0 and out.max() == 1
    assert 0.49 < out[500] < 0.51


def test_minmax_of_a_constant_image_is_zero():
    np.testing.assert_array_equal(minmax(np.full((3, 3), 7)), 0)


def test_zscore_has_zero_mean_unit_std():
    img = np.random.default_rng(0).normal(40, 10, size=(64, 64))
    out = zscore(img)
    assert out.dtype == np.float32
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-4


def test_zscore_inside_a_mask_ignores_the_background():
    img = np.full((10, 10), -1000.0)
    img[2:8, 2:8] = np.arange(36).reshape(6, 6)
    mask = img > -1000
    out = zscore(img, mask)
    assert abs(out[mask].mean()) < 1e-5 and abs(out[mask].std() - 1) < 1e-5
    with pytest.raises(ValueError):
        zscore(img, np.zeros_like(mask))
    np.testing.assert_array_equal(zscore(np.full(4, 3.0)), 0)


def test_window_normalize_matches_the_window():
    hu = np.array([-2000, -160, 40, 240, 2000], dtype=np.int16)
    out = window_normalize(hu, 40, 400)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1])
    with pytest.raises(ValueError):
        window_normalize(hu, 40, 0)
