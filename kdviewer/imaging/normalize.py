"""Intensity normalisation for model inputs: min-max, z-score and window to [0, 1].

All functions take an array of any shape and return float32 of the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_EPS = 1e-8


def minmax(img: np.ndarray, percentiles: Sequence[float] | None = None) -> np.ndarray:
    """Scale to [0, 1] from the min and max, or from the given (low, high) percentiles, clipping.

    A constant image gives all zeros. NaNs stay NaN.
    """
    x = np.asarray(img, dtype=np.float32)
    if percentiles is None:
        low, high = np.nanmin(x), np.nanmax(x)
    else:
        low, high = np.nanpercentile(x, list(percentiles))
    span = float(high - low)
    if span <= _EPS:
        return np.zeros_like(x)
    out = (x - np.float32(low)) / np.float32(span)
    if percentiles is not None:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def zscore(img: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Subtract the mean and divide by the standard deviation, measured inside `mask` if given.

    `mask` is a boolean array of `img`'s shape (e.g. the body, to leave out air). A constant
    region gives std 1 (values are only centred).
    """
    x = np.asarray(img, dtype=np.float32)
    values = x if mask is None else x[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise ValueError("zscore: the mask selects no voxels")
    mean = float(np.mean(values, dtype=np.float64))
    std = float(np.std(values, dtype=np.float64))
    return (x - np.float32(mean)) / np.float32(std if std > _EPS else 1.0)


def window_normalize(img: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map the window [center - width/2, center + width/2] to [0, 1], clipping outside (float32).

    The same window as the viewer's, but continuous; e.g. HU through the lung window for a model.
    """
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = np.float32(center - width / 2)
    out = np.subtract(img, low, dtype=np.float32)
    out *= np.float32(1.0 / width)
    return np.clip(out, 0.0, 1.0, out=out)
