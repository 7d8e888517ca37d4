"""Display windows (centre/width, "window/level"): presets, 8-bit rendering, automatic windows.

Rendering follows the DICOM linear VOI LUT (PS3.3 C.11.2.1.2.1): with centre c and width w,
values ``<= c - 0.5 - (w - 1) / 2`` show black (0), values ``>= c - 0.5 + (w - 1) / 2`` white (255),
and values in between map linearly (rounded to the nearest grey level).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np


class Window(NamedTuple):
    """A display window: centre and width in the image's units (HU for CT). Unpacks as (c, w)."""

    center: float
    width: float


# Common CT windows in HU (Radiopaedia "Windowing (CT)"; liver for contrast-enhanced portal venous
# phase, where parenchyma sits near 100 HU; Radiopaedia's unenhanced liver window is (30, 150)).
PRESETS: dict[str, Window] = {
    "lung": Window(-600.0, 1500.0),
    "mediastinum": Window(50.0, 350.0),
    "abdomen": Window(40.0, 400.0),
    "liver": Window(60.0, 160.0),
    "bone": Window(400.0, 1800.0),
    "brain": Window(40.0, 80.0),
}

_AUTO_MAX_SAMPLES = 1 << 18  # percentiles from at most ~262k voxels: enough for 0.5 % tails


def window_bounds(center: float, width: float) -> tuple[float, float]:
    """(low, high) values that map to black and white (DICOM linear); e.g. pyqtgraph levels."""
    if width < 1:
        raise ValueError(f"window width must be at least 1, got {width}")
    half = (width - 1) / 2
    return center - 0.5 - half, center - 0.5 + half


def window_to_uint8(array: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map an array of any shape and numeric dtype through the window to uint8 grey levels 0..255.

    Computed in float32 with a precomputed scale (about 0.1 ms for a 512x512 slice on one core;
    faster here than a lookup table indexed by int16 values).
    """
    low, high = window_bounds(center, width)
    if width == 1:  # a threshold: DICOM sends x <= c - 0.5 to black, everything above to white
        return np.where(array <= low, np.uint8(0), np.uint8(255))
    scale = np.float32(255.0 / (high - low))
    out = np.subtract(array, np.float32(low), dtype=np.float32)
    out *= scale
    np.clip(out, 0.0, 255.0, out=out)
    out += np.float32(0.5)
    return out.astype(np.uint8)


def _sample(array: np.ndarray) -> np.ndarray:
    """A flat, evenly strided subsample of at most `_AUTO_MAX_SAMPLES` values."""
    flat = np.ravel(array)
    step = max(1, flat.size // _AUTO_MAX_SAMPLES)
    return flat[::step]


def auto_window(array: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> Window:
    """A window spanning the `low_pct`..`high_pct` percentiles of the values (for MR and X-ray).

    NaNs are ignored; a subsample of the voxels is used for speed. The width is at least 1.
    """
    sample = _sample(array)
    if sample.size == 0:
        raise ValueError("cannot choose a window for an empty array")
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            raise ValueError("cannot choose a window: no finite values")
    low, high = np.percentile(sample, [low_pct, high_pct])
    width = max(float(high - low), 1.0)
    return Window(float(low + high) / 2, width)


def _as_window(preset: Any) -> Window:
    """A (center, width) tuple or an object with .center/.width (e.g. study's WindowPreset)."""
    if hasattr(preset, "center") and hasattr(preset, "width"):
        return Window(float(preset.center), float(preset.width))
    center, width = preset
    return Window(float(center), float(width))


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CW = re.compile(rf"^\s*({_NUMBER})\s*[,;/ ]\s*({_NUMBER})\s*$")


def parse_window(text: str, presets: Mapping[str, Any] | None = None) -> Window:
    """A window from a preset name (case-insensitive) or from "C,W" text such as "-600,1500".

    `presets` defaults to `PRESETS`; values may be (center, width) pairs or WindowPreset-like objects.
    Raises ValueError naming the accepted forms.
    """
    presets = PRESETS if presets is None else presets
    key = text.strip().lower()
    for name, preset in presets.items():
        if name.lower() == key:
            return _as_window(preset)
    match = _CW.match(text)
    if match is None:
        names = ", ".join(presets)
        raise ValueError(f"window {text!r} is neither a preset ({names}) nor 'center,width'")
    center, width = float(match.group(1)), float(match.group(2))
    if width < 1:
        raise ValueError(f"window {text!r}: width must be at least 1")
    return Window(center, width)
