"""Decode the pixels of a scanned DICOM series, slice by slice, into one preallocated array.

Native little-endian grey data is read straight from the byte offset noted by the scan (no second
header parse, no pydicom dataset kept); everything else (compressed, big endian, colour, palette) goes
through `pydicom.pixels.pixel_array` one frame at a time. Rescale gives output units (HU for CT);
MONOCHROME1 is mirrored so that higher values are brighter.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut, pixel_array

from kdviewer.study.errors import CorruptFileError
from kdviewer.study.series import PixelFormat, SeriesRef, SliceRef

Progress = Callable[[int, int], None]


class _Overflow(Exception):
    """A rescaled slice does not fit the integer output type."""


def load_dicom_series(ref: SeriesRef, progress: Progress | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode every slice of `ref` into a new array (z, y, x[, 3]) of `ref.dtype`; also load warnings.

    A slice that cannot be decoded is filled with the volume's minimum and named in the warnings;
    raises `CorruptFileError` when no slice at all can be decoded.
    """
    pixel = _require_pixel(ref)
    out = np.empty(ref.shape + ((3,) if ref.is_color else ()), dtype=ref.dtype)
    warnings: list[str] = []
    failed: list[int] = []
    cache = _DatasetCache()
    total = len(ref.slices)
    for i, sl in enumerate(ref.slices):
        try:
            _decode_into(out[i], sl, pixel, cache)
        except _Overflow:
            warnings.append("rescaled values exceed int16: loaded as float32")
            out = out.astype(np.float32)
            _decode_into(out[i], sl, pixel, cache)
        except Exception as exc:  # noqa: BLE001 - one bad slice must not lose the series
            failed.append(i)
            warnings.append(f"slice {i} ({sl.path.name}) could not be decoded: {_reason(exc)}")
        if progress is not None:
            progress(i + 1, total)
    cache.clear()
    if len(failed) == total:
        raise CorruptFileError(ref.files[0], f"no slice of the series could be decoded ({warnings[0]})")
    if failed:
        good = np.setdiff1d(np.arange(total), failed)
        out[failed] = min(out[g].min() for g in good)
    return out, warnings


def read_dicom_slice(ref: SeriesRef, index: int) -> np.ndarray:
    """One decoded slice (y, x) or (y, x, 3) of `ref`, in the same units and dtype as the series."""
    pixel = _require_pixel(ref)
    if not 0 <= index < len(ref.slices):
        raise IndexError(f"slice {index} out of range 0..{len(ref.slices) - 1}")
    out = np.empty(ref.shape[1:] + ((3,) if ref.is_color else ()), dtype=ref.dtype)
    sl = ref.slices[index]
    try:
        _decode_into(out, sl, pixel, _DatasetCache())
    except _Overflow:
        out = out.astype(np.float32)
        _decode_into(out, sl, pixel, _DatasetCache())
    except Exception as exc:  # noqa: BLE001 - turned into a typed error naming the file
        raise CorruptFileError(sl.path, f"slice {index} could not be decoded: {_reason(exc)}") from None
    return out


def _require_pixel(ref: SeriesRef) -> PixelFormat:
    if ref.pixel is None:
        raise ValueError(f"series {ref.uid} is not a DICOM series")
    return ref.pixel


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


class _DatasetCache:
    """Keeps the one dataset being decoded, so the frames of a multi-frame file parse it once."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.ds = None

    def get(self, path: Path, transfer_syntax: str):
        if path != self.path:
            ds = pydicom.dcmread(path, force=True)
            if transfer_syntax and "TransferSyntaxUID" not in ds.file_meta:
                ds.file_meta.TransferSyntaxUID = transfer_syntax  # files without a meta header
            self.ds, self.path = ds, path
        return self.ds

    def clear(self) -> None:
        self.path, self.ds = None, None


def _decode_into(out: np.ndarray, sl: SliceRef, pixel: PixelFormat, cache: _DatasetCache) -> None:
    """Decode slice `sl` into `out` ((y, x) or (y, x, 3) of the series' dtype)."""
    if pixel.raw and sl.offset >= 0:
        stored = np.dtype(pixel.stored_dtype)
        if _is_plain(pixel, sl) and stored.newbyteorder("=") == out.dtype:
            _read_raw(sl.path, sl.offset, out)  # straight into the output: the common CT/MR case
            return
        values = np.empty(out.shape, dtype=stored)
        _read_raw(sl.path, sl.offset, values)
        _mask_bits(values, pixel)
    else:
        ds = cache.get(sl.path, pixel.transfer_syntax)
        values = pixel_array(ds, index=sl.frame) if sl.frame is not None else pixel_array(ds)
        if pixel.photometric == "PALETTE COLOR":
            values = apply_color_lut(values, ds)
    if out.ndim == 3:
        _colour_into(out, values, pixel)
        return
    _rescale_into(out, values, sl.slope, sl.intercept)
    if pixel.invert:
        _invert(out, pixel, sl)


def _is_plain(pixel: PixelFormat, sl: SliceRef) -> bool:
    return (sl.slope == 1 and sl.intercept == 0 and not pixel.invert
            and pixel.bits_stored == pixel.bits_allocated)


def _read_raw(path: Path, offset: int, out: np.ndarray) -> None:
    with open(path, "rb") as fp:
        fp.seek(offset)
        n = fp.readinto(memoryview(out).cast("B"))
    if n != out.nbytes:
        raise CorruptFileError(path, f"pixel data ends early ({n} of {out.nbytes} bytes)")


def _mask_bits(values: np.ndarray, pixel: PixelFormat) -> None:
    """Ignore bits above BitsStored (sign-extending signed data), as the standard asks."""
    unused = pixel.bits_allocated - pixel.bits_stored
    if unused <= 0:
        return
    if pixel.signed:
        np.left_shift(values, unused, out=values)
        np.right_shift(values, unused, out=values)
    else:
        np.bitwise_and(values, (1 << pixel.bits_stored) - 1, out=values)


def _rescale_into(out: np.ndarray, values: np.ndarray, slope: float, intercept: float) -> None:
    """out = values * slope + intercept, checking integer outputs for overflow (raises `_Overflow`)."""
    values = values.reshape(out.shape)
    if out.dtype.kind == "f":
        np.multiply(values, slope, out=out, casting="unsafe")
        if intercept:
            out += intercept
        return
    limits = np.iinfo(out.dtype)
    lo, hi = int(values.min()), int(values.max())
    lo, hi = sorted((lo * int(slope) + int(intercept), hi * int(slope) + int(intercept)))
    if lo < limits.min or hi > limits.max:
        raise _Overflow
    if slope == 1 and values.dtype == out.dtype and limits.min <= intercept <= limits.max:
        np.add(values, out.dtype.type(intercept), out=out)  # wraps only where the result fits anyway
        return
    wide = values.astype(np.int64)
    if slope != 1:
        wide *= int(slope)
    if intercept:
        wide += int(intercept)
    out[...] = wide


def _invert(out: np.ndarray, pixel: PixelFormat, sl: SliceRef) -> None:
    """MONOCHROME1 → MONOCHROME2: mirror values inside the range the stored bits can take."""
    bits = pixel.bits_stored
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if pixel.signed else (0, (1 << bits) - 1)
    lo, hi = sorted((lo * sl.slope + sl.intercept, hi * sl.slope + sl.intercept))
    if out.dtype.kind == "f":
        np.subtract(lo + hi, out, out=out)
    else:
        out[...] = (int(lo + hi) - out.astype(np.int64))


def _colour_into(out: np.ndarray, values: np.ndarray, pixel: PixelFormat) -> None:
    """RGB of any bit depth → uint8 (y, x, 3)."""
    if values.ndim == 2:  # grey data in a colour-labelled series
        values = np.repeat(values[..., None], 3, axis=-1)
    values = values.reshape(out.shape)
    if values.dtype.itemsize > 1:
        bits = pixel.bits_stored if pixel.photometric != "PALETTE COLOR" else 8 * values.dtype.itemsize
        values = values >> max(bits - 8, 0)
    out[...] = values
