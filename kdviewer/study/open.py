"""The one way in: `open_path` finds series in a file or folder, `load_series` decodes one into a Volume.

The gui, the CLI and the tests all go through these functions. A scan never stops at a bad file: every
file not used comes back as (path, reason) in `ScanResult.skipped`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from kdviewer.study.dicom import scan_dicom
from kdviewer.study.dicom_pixels import load_dicom_series, read_dicom_slice
from kdviewer.study.errors import NoSeriesFoundError, PathNotFoundError, StudyError, VolumeTooLargeError
from kdviewer.study.image2d import is_image_file, load_image, scan_image
from kdviewer.study.series import ScanResult, SeriesRef
from kdviewer.study.sitk_io import is_sitk_file, load_sitk, read_sitk_slice, save_volume, scan_sitk
from kdviewer.study.volume import Volume

__all__ = ["open_path", "load_series", "read_slice", "load_volume", "save_volume", "available_memory_bytes"]

# Files that are certainly not images: skipped without reading them.
_NOT_IMAGE_SUFFIXES = (".json", ".txt", ".md", ".xml", ".csv", ".tsv", ".html", ".pdf", ".py", ".toml",
                       ".yaml", ".yml", ".zip", ".gz", ".npz", ".npy", ".log", ".bval", ".bvec")
_DATA_OF_HEADER_SUFFIXES = (".raw", ".zraw")  # the voxels of an .mhd/.nhdr, read through that header
_MEMORY_FRACTION = 0.8


def open_path(path: str | Path) -> ScanResult:
    """Find the series in a file or a folder (recursively), reading headers only.

    Raises `PathNotFoundError` for a missing path and `NoSeriesFoundError` when no readable image was found
    (the message names the first skipped files and why).
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise PathNotFoundError(root, "no such file or folder")
    files = [root] if root.is_file() else _files_under(root)
    series: list[SeriesRef] = []
    skipped: list[tuple[Path, str]] = []
    dicom_candidates: list[Path] = []
    for f in files:
        name = f.name.lower()
        if is_sitk_file(f) or is_image_file(f):
            try:
                series.append(scan_sitk(f) if is_sitk_file(f) else scan_image(f))
            except StudyError as exc:
                skipped.append((f, exc.reason))
            except Exception as exc:  # noqa: BLE001 - a damaged picture must not stop the scan
                skipped.append((f, f"cannot read ({type(exc).__name__}: {exc})"))
        elif name == "dicomdir":
            skipped.append((f, "DICOMDIR index (the images are read from their own files)"))
        elif f.suffix.lower() in _DATA_OF_HEADER_SUFFIXES:
            skipped.append((f, "voxel data of an .mhd/.nhdr header (read through the header)"))
        elif f.suffix.lower() in _NOT_IMAGE_SUFFIXES or name in ("license", "readme", "notice"):
            skipped.append((f, f"not an image file ({f.suffix.lower() or f.name})"))
        else:
            dicom_candidates.append(f)
    dicom_series, dicom_skipped = scan_dicom(dicom_candidates)
    series += dicom_series
    skipped += dicom_skipped
    if not series:
        shown = "; ".join(f"{p.name}: {r}" for p, r in skipped[:3]) or "the folder is empty"
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        raise NoSeriesFoundError(root, f"no readable image series ({shown}{more})")
    series.sort(key=lambda s: str(s.files[0]))
    skipped.sort(key=lambda s: str(s[0]))
    return ScanResult(tuple(series), tuple(skipped))


def load_series(ref: SeriesRef, progress: Callable[[int, int], None] | None = None,
                max_bytes: int | None = None) -> Volume:
    """Decode a scanned series into a Volume ((z, y, x) or (z, y, x, 3); CT in HU, int16 where it fits).

    progress(done, total) is called after each slice. Raises `VolumeTooLargeError` before allocating when
    the array would take more than `max_bytes` (default: 80 % of the memory available now).
    """
    limit = available_memory_bytes() if max_bytes is None else int(max_bytes)
    if ref.nbytes > limit:
        raise VolumeTooLargeError(
            ref.files[0],
            f"the series needs {_mib(ref.nbytes)} ({'×'.join(map(str, ref.shape))} {ref.dtype}) but only "
            f"{_mib(limit)} may be used",
        )
    if ref.kind in ("dicom", "dicom-multiframe"):
        array, load_warnings = load_dicom_series(ref, progress)
        info = replace(ref.info, warnings=ref.warnings + tuple(load_warnings))
        return Volume(array, ref.spacing, ref.origin, ref.direction, info)
    volume = load_sitk(ref) if ref.kind == "sitk" else load_image(ref)
    if progress is not None:
        progress(ref.shape[0], ref.shape[0])
    return volume


def read_slice(ref: SeriesRef, index: int) -> np.ndarray:
    """One slice (y, x) or (y, x, 3) of `ref`, in the units `load_series` gives, decoding only that slice
    where the format allows (DICOM, uncompressed NIfTI/MHA)."""
    if ref.kind in ("dicom", "dicom-multiframe"):
        return read_dicom_slice(ref, index)
    if ref.kind == "sitk":
        return read_sitk_slice(ref, index)
    return load_image(ref).array[index]


def load_volume(path: str | Path, series: int = 0, max_bytes: int | None = None) -> Volume:
    """`open_path` + `load_series` of the series numbered `series` (0 = the first found)."""
    result = open_path(path)
    if not 0 <= series < len(result.series):
        raise NoSeriesFoundError(path, f"series {series} asked for, {len(result.series)} found")
    return load_series(result.series[series], max_bytes=max_bytes)


def available_memory_bytes() -> int:
    """Bytes a new volume may take: 80 % of the memory available now (psutil)."""
    import psutil

    return int(psutil.virtual_memory().available * _MEMORY_FRACTION)


def _files_under(folder: Path) -> list[Path]:
    """Every file below `folder`, hidden ones (".DS_Store", ".git") left out, in a stable order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / n for n in sorted(filenames) if not n.startswith(".")]
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"
