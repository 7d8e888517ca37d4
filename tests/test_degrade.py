"""Degradations: simulated low-dose CT on a real TCIA slice, Gaussian noise, downsampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdviewer.imaging.degrade import (
    downsample,
    fbp_roundtrip,
    gaussian_noise,
    low_dose_pair,
    simulate_low_dose,
    upsample_bicubic,
)
from kdviewer.imaging.resample import resize_2d
from kdviewer.study.datasets import open_dataset


def _psnr_hu(x: np.ndarray, ref: np.ndarray, lo: float = -1000, hi: float = 1000) -> float:
    mse = np.mean((np.clip(x, lo, hi) - np.clip(ref, lo, hi)) ** 2)
    return float(10 * np.log10((hi - lo) ** 2 / mse))


@pytest.fixture(scope="module")
def ct_slice(datasets_dir: Path) -> tuple[np.ndarray, float]:
    """A 256² chest CT slice in HU and its pixel size (mm)."""
    sample = open_dataset(datasets_dir / "tcia-lung-ct").items("all")[50].load()
    return resize_2d(sample.image, (256, 256), order=1), sample.spacing_mm[0] * 2


def test_low_dose_noise_is_in_a_plausible_range_and_the_clean_fbp_is_faithful(ct_slice):
    img, pixel_mm = ct_slice
    noisy, clean_fbp = low_dose_pair(img, photons=1e4, angles=360, rng=0, pixel_mm=pixel_mm)
    assert noisy.shape == clean_fbp.shape == img.shape and noisy.dtype == np.float32
    assert 22 < _psnr_hu(noisy, clean_fbp) < 36  # ANCHORS.md reports 23.9 dB for its simulation
    assert _psnr_hu(clean_fbp, img) > 33
    np.testing.assert_allclose(clean_fbp, fbp_roundtrip(img, pixel_mm=pixel_mm), atol=1e-3)


def test_more_photons_give_less_noise(ct_slice):
    img, pixel_mm = ct_slice
    clean = fbp_roundtrip(img, pixel_mm=pixel_mm)
    low = _psnr_hu(simulate_low_dose(img, 1e4, rng=1, pixel_mm=pixel_mm), clean)
    high = _psnr_hu(simulate_low_dose(img, 1e5, rng=1, pixel_mm=pixel_mm), clean)
    assert high - low > 5  # ten times the dose: ~10 dB less noise power in theory


def test_low_dose_is_reproducible_with_a_seed(ct_slice):
    img, _ = ct_slice
    small = img[::4, ::4]  # 64², fast
    a = simulate_low_dose(small, rng=np.random.default_rng(5))
    b = simulate_low_dose(small, rng=np.random.default_rng(5))
    c = simulate_low_dose(small, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_low_dose_keeps_a_non_square_image_shape():
    img = np.full((40, 64), 40.0, dtype=np.float32)
    assert simulate_low_dose(img, rng=0, angles=90).shape == (40, 64)


def test_gaussian_noise_has_the_asked_sigma_and_is_seeded():
    img = np.zeros((128, 128), dtype=np.float32)
    noisy = gaussian_noise(img, 0.1, rng=3)
    assert abs(float(noisy.std()) - 0.1) < 0.005
    np.testing.assert_array_equal(noisy, gaussian_noise(img, 0.1, rng=3))


def test_downsample_sizes_and_area_means():
    img = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    assert downsample(img, 2).shape == (32, 24)
    area = downsample(img, 4, method="area")
    assert area.shape == (16, 12)
    assert area[0, 0] == pytest.approx(img[:4, :4].mean())
    assert upsample_bicubic(downsample(img, 2), 2).shape == img.shape
    flat = np.full((32, 32), 7.0, dtype=np.float32)
    np.testing.assert_allclose(upsample_bicubic(downsample(flat, 2), 2), flat, atol=1e-4)
    with pytest.raises(ValueError):
        downsample(img, 2, method="nearest")
