"""Resizing images and resampling volumes keep shapes, values and the physical extent."""

from __future__ import annotations

import numpy as np
import pytest

from kdviewer.imaging.resample import (
    resample_labels,
    resample_to_spacing,
    resampled_origin,
    resize_2d,
    resize_channels_linear,
    resize_labels,
    resize_nd,
    shape_for_spacing,
    zoom_factors_zyx,
)


@pytest.mark.parametrize("out_hw", [(64, 64), (17, 33), (600, 601), (1, 1)])
def test_resize_2d_gives_exact_shape(out_hw):
    img = np.random.default_rng(0).normal(size=(100, 120)).astype(np.float32)
    out = resize_2d(img, out_hw)
    assert out.shape == out_hw
    assert out.dtype == np.float32


def test_resize_2d_keeps_channels_and_constant_images():
    img = np.full((50, 40, 3), 7, dtype=np.uint8)
    out = resize_2d(img, (28, 28))
    assert out.shape == (28, 28, 3)
    np.testing.assert_allclose(out, 7.0, atol=1e-5)


def test_resize_2d_keeps_int16_hu_values_in_float32():
    img = np.full((32, 32), -1000, dtype=np.int16)
    out = resize_2d(img, (64, 64))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, -1000.0)


def test_downsizing_is_anti_aliased():
    # a one-pixel checkerboard must average to grey, not alias into stripes
    yy, xx = np.mgrid[:128, :128]
    board = ((yy + xx) % 2).astype(np.float32)
    out = resize_2d(board, (32, 32))
    assert abs(out.mean() - 0.5) < 0.01
    assert out.std() < 0.05


def test_nearest_resize_keeps_label_values_and_dtype():
    labels = np.zeros((40, 40), dtype=np.uint8)
    labels[10:30, 10:20] = 3
    out = resize_2d(labels, (80, 80), order=0)
    assert out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 3}
    assert (out == 3).sum() == 4 * (labels == 3).sum()


def test_resize_2d_rejects_volumes():
    with pytest.raises(ValueError):
        resize_2d(np.zeros((2, 3, 4, 5)), (2, 2))


def test_zoom_factors_and_shape_are_in_zyx_order():
    assert zoom_factors_zyx((0.5, 0.5, 2.0), (1.0, 1.0, 1.0)) == (2.0, 0.5, 0.5)
    assert shape_for_spacing((119, 512, 512), (0.57, 0.57, 1.6), (1.0, 1.0, 1.0)) == (190, 292, 292)
    with pytest.raises(ValueError):
        zoom_factors_zyx((1, 1, 0), (1, 1, 1))


def test_resample_to_spacing_reports_actual_spacing_and_keeps_extent():
    vol = np.random.default_rng(1).normal(size=(10, 33, 30)).astype(np.float32)
    spacing = (0.7, 0.7, 2.5)
    out, actual = resample_to_spacing(vol, spacing, (1.0, 1.0, 1.0))
    assert out.shape == (25, 23, 21)
    assert out.dtype == np.float32
    extent_in = np.array(vol.shape[::-1]) * spacing
    extent_out = np.array(out.shape[::-1]) * actual
    np.testing.assert_allclose(extent_out, extent_in)
    np.testing.assert_allclose(actual, (0.7 * 30 / 21, 0.7 * 33 / 23, 1.0))


def test_resample_a_linear_ramp_stays_a_ramp_in_mm():
    # value = z position in mm at voxel centres; upsampling along z must keep that relation
    z_mm = (np.arange(8) + 0.5) * 4.0
    vol = np.broadcast_to(z_mm[:, None, None], (8, 4, 4)).astype(np.float32)
    out, actual = resample_to_spacing(vol, (1.0, 1.0, 4.0), (1.0, 1.0, 1.0))
    centres_mm = (np.arange(out.shape[0]) + 0.5) * actual[2]
    inner = slice(2, -2)  # the edges repeat, so only interior voxels follow the ramp
    np.testing.assert_allclose(out[inner, 0, 0], centres_mm[inner], atol=1e-4)


def test_resample_labels_are_nearest_and_resize_back_to_the_grid():
    labels = np.zeros((6, 20, 20), dtype=np.uint16)
    labels[2:4, 5:15, 5:15] = 2
    out, actual = resample_labels(labels, (1.0, 1.0, 3.0), (1.0, 1.0, 1.0))
    assert out.dtype == np.uint16 and out.shape == (18, 20, 20)
    assert set(np.unique(out)) == {0, 2}
    back = resize_labels(out, labels.shape)
    np.testing.assert_array_equal(back, labels)


def test_resampled_origin_moves_half_the_spacing_change_along_the_axes():
    direction = (0, 1, 0, -1, 0, 0, 0, 0, 1)  # columns are the x, y, z axes in LPS
    origin = resampled_origin((10.0, 20.0, 30.0), direction, (0.5, 0.5, 2.0), (1.0, 1.0, 1.0))
    # x shift +0.25 along column 0 = (0, -1, 0); y shift +0.25 along column 1 = (1, 0, 0); z -0.5
    np.testing.assert_allclose(origin, (10.25, 19.75, 29.5))


@pytest.mark.parametrize(("shape", "out"), [((2, 256, 256), (512, 512)), ((3, 31, 40), (90, 91)),
                                            ((2, 50, 60), (50, 97)), ((2, 100, 100), (60, 120))])
def test_channel_stack_resized_linearly_as_resize_nd(shape, out) -> None:
    """The separable path (enlarging) and the anti-aliased fallback (an axis shrinks) give resize_nd's values."""
    a = np.random.default_rng(0).random(shape, dtype=np.float32)
    got = resize_channels_linear(a, out)
    want = np.moveaxis(resize_nd(np.moveaxis(a, 0, -1), out, order=1), -1, 0)
    assert got.shape == (shape[0], *out) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError):
        resize_channels_linear(a[0], out)
