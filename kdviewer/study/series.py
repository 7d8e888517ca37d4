"""What a scan finds before any pixel is decoded: `SeriesRef` (one series) and `ScanResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdviewer.study.volume import IDENTITY_DIRECTION, SeriesInfo

KINDS = ("dicom", "dicom-multiframe", "sitk", "image")


@dataclass(frozen=True)
class PixelFormat:
    """How a DICOM series stores its pixels, and how they become the loaded array.

    stored_dtype: numpy dtype of the stored samples ('<u2', '<i2', 'u1', ...); `raw` is True when a
    frame can be read straight from the file (native little-endian grey data, no decoder needed).
    invert: MONOCHROME1, so values are mirrored to make higher = brighter.
    """

    rows: int
    columns: int
    samples: int = 1
    photometric: str = "MONOCHROME2"
    bits_allocated: int = 16
    bits_stored: int = 16
    signed: bool = False
    stored_dtype: str = "<u2"
    raw: bool = False
    invert: bool = False
    transfer_syntax: str = ""  # as found, also for files whose meta header lacks it


@dataclass(frozen=True)
class SliceRef:
    """Where one slice of a series lives: a file, a frame in it, and its rescale.

    offset: byte offset of the frame's stored samples in the file when they can be read raw, else -1.
    slope, intercept: modality rescale (stored value * slope + intercept = output unit, e.g. HU).
    """

    path: Path
    frame: int | None = None
    offset: int = -1
    slope: float = 1.0
    intercept: float = 0.0
    sop_instance_uid: str = ""


@dataclass(frozen=True)
class SeriesRef:
    """A series found by a scan, not yet decoded.

    files: DICOM: one per slice, sorted along the slice normal (a multi-frame file once); else one file.
    shape: (z, y, x) as it will load; spacing (x, y, z) mm; origin LPS mm; direction 3x3 row-major (ITK).
    dtype: numpy dtype name of the loaded array (int16 HU for most CT; float32 when the rescale needs it).
    """

    uid: str
    modality: str
    description: str
    kind: str
    files: tuple[Path, ...]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    dtype: str
    warnings: tuple[str, ...] = ()
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION
    channels: int = 1  # 3 for colour: the array is (z, y, x, 3)
    info: SeriesInfo = field(default_factory=SeriesInfo)  # the loaded Volume's info (before load warnings)
    slices: tuple[SliceRef, ...] = ()  # DICOM only: one per z index, in array order
    pixel: PixelFormat | None = None  # DICOM only
    frame_index: int | None = None  # sitk: the 4th-dimension index loaded (4-D NIfTI), else None

    @property
    def nbytes(self) -> int:
        """Bytes of the array `load_series` will allocate."""
        z, y, x = self.shape
        return z * y * x * self.channels * np.dtype(self.dtype).itemsize

    @property
    def is_color(self) -> bool:
        return self.channels > 1


@dataclass(frozen=True)
class ScanResult:
    """Everything `open_path` found: the series, and each file not used with the reason why."""

    series: tuple[SeriesRef, ...]
    skipped: tuple[tuple[Path, str], ...] = ()
