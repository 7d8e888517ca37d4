"""Degradations for training restoration models: simulated low-dose CT, Gaussian noise, downsampling.

Low-dose CT model (the one in ANCHORS.md: "Poisson on the sinogram, I0 = 1e4, 360 angles, 256², FBP"):

1. HU → linear attenuation per pixel: mu = MU_WATER_PER_MM · (1 + HU / 1000) · pixel_mm, clipped at 0
   (air and the scanner's padding, e.g. −2048 HU, attenuate nothing); outside the inscribed circle 0.
2. Parallel-beam forward projection over `angles` angles in [0°, 180°) (`skimage.transform.radon`):
   line integrals p (dimensionless).
3. Transmitted counts I = Poisson(I0 · exp(−p)), clipped to ≥ 1 (a zero count has no logarithm);
   noisy line integrals p' = −ln(I / I0). I0 = `photons` per detector bin and angle.
4. Filtered back-projection with the ramp filter (`skimage.transform.iradon`), back to HU.

`fbp_roundtrip` is steps 1, 2 and 4 without noise: the clean target that differs from the noisy image
only by the noise (same FBP blur, same circle). All randomness comes from the `rng` argument.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import iradon, radon, resize

MU_WATER_PER_MM = 0.0192  # linear attenuation of water, 1/mm, at an effective energy near 70 keV


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _to_square_mu(img_hu: np.ndarray, pixel_mm: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """mu per pixel on a square grid (padded with air), zero outside the inscribed circle."""
    img = np.asarray(img_hu, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected an (H, W) image in HU, got shape {img.shape}")
    h, w = img.shape
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    mu = np.zeros((n, n))
    mu[top:top + h, left:left + w] = np.clip(MU_WATER_PER_MM * (1.0 + img / 1000.0), 0.0, None) * pixel_mm
    yy, xx = np.mgrid[:n, :n]
    c = n // 2  # skimage's reconstruction circle: centre n // 2, radius n // 2
    mu[(yy - c) ** 2 + (xx - c) ** 2 > c**2] = 0.0
    return mu, (top, left, h, w)


def _fbp_to_hu(sinogram: np.ndarray, theta: np.ndarray, n: int, box: tuple[int, int, int, int],
               pixel_mm: float) -> np.ndarray:
    mu = iradon(sinogram, theta=theta, filter_name="ramp", circle=True, output_size=n)
    top, left, h, w = box
    hu = (mu[top:top + h, left:left + w] / pixel_mm / MU_WATER_PER_MM - 1.0) * 1000.0
    return hu.astype(np.float32)


def low_dose_pair(img_hu: np.ndarray, photons: float = 1e4, angles: int = 360,
                  rng: np.random.Generator | int | None = None,
                  pixel_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(noisy FBP, noise-free FBP) of an (H, W) HU image, both float32 HU (H, W); one projection shared.

    photons: I0, incident counts per detector bin and angle; angles: projections over 180°;
    pixel_mm: pixel size, which sets the attenuation per pixel (and so the noise level).
    """
    clean, (noisy,) = low_dose_realizations(img_hu, photons, angles, [_rng(rng)], pixel_mm)
    return noisy, clean


def low_dose_realizations(img_hu: np.ndarray, photons: float, angles: int, rngs: list[np.random.Generator],
                          pixel_mm: float = 1.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """(noise-free FBP, one noisy FBP per generator) of an (H, W) HU image, float32 HU: one projection shared,
    so K realisations cost one radon transform and K + 1 back-projections (`low_dose_pair` is K = 1)."""
    mu, box = _to_square_mu(img_hu, pixel_mm)
    theta = np.linspace(0.0, 180.0, int(angles), endpoint=False)
    sino = radon(mu, theta=theta, circle=True)
    n = mu.shape[0]
    noisy = []
    for rng in rngs:
        counts = rng.poisson(float(photons) * np.exp(-sino))
        noisy.append(_fbp_to_hu(-np.log(np.maximum(counts, 1) / float(photons)), theta, n, box, pixel_mm))
    return _fbp_to_hu(sino, theta, n, box, pixel_mm), noisy


def simulate_low_dose(img_hu: np.ndarray, photons: float = 1e4, angles: int = 360,
                      rng: np.random.Generator | int | None = None, pixel_mm: float = 1.0) -> np.ndarray:
    """A simulated low-dose reconstruction (float32 HU, (H, W)) of an (H, W) HU image (module docstring)."""
    return low_dose_pair(img_hu, photons, angles, rng, pixel_mm)[0]


def fbp_roundtrip(img_hu: np.ndarray, angles: int = 360, pixel_mm: float = 1.0) -> np.ndarray:
    """Project and reconstruct without noise (float32 HU, (H, W)): the consistent clean target."""
    mu, box = _to_square_mu(img_hu, pixel_mm)
    theta = np.linspace(0.0, 180.0, int(angles), endpoint=False)
    return _fbp_to_hu(radon(mu, theta=theta, circle=True), theta, mu.shape[0], box, pixel_mm)


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """img + N(0, sigma²) per pixel, float32, same shape; sigma in the image's units."""
    x = np.asarray(img, dtype=np.float32)
    return (x + _rng(rng).normal(0.0, sigma, size=x.shape)).astype(np.float32)


def downsample(img: np.ndarray, factor: int, method: str = "bicubic") -> np.ndarray:
    """Shrink an (H, W) or (H, W, C) image by an integer factor to (H // f, W // f), float32.

    "bicubic": anti-aliased (Gaussian pre-filter) cubic interpolation, the usual SR degradation;
    "area": the mean of each f×f block (H and W cropped to multiples of f).
    """
    f = int(factor)
    if f < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    x = np.asarray(img, dtype=np.float32)
    h, w = x.shape[0] // f, x.shape[1] // f
    if method == "area":
        x = x[:h * f, :w * f]
        return x.reshape(h, f, w, f, *x.shape[2:]).mean(axis=(1, 3)).astype(np.float32)
    if method == "bicubic":
        return resize(x, (h, w) + x.shape[2:], order=3, mode="reflect", anti_aliasing=True,
                      preserve_range=True).astype(np.float32)
    raise ValueError(f"unknown downsampling method {method!r}; expected 'bicubic' or 'area'")


def upsample_bicubic(img: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge an (H, W) or (H, W, C) image by an integer factor with cubic interpolation (the SR baseline)."""
    x = np.asarray(img, dtype=np.float32)
    shape = (x.shape[0] * int(factor), x.shape[1] * int(factor)) + x.shape[2:]
    return resize(x, shape, order=3, mode="reflect", anti_aliasing=False, preserve_range=True).astype(np.float32)
