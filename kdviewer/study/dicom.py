"""Scan DICOM files into series: read headers only, group, split, sort along the normal, describe.

A series is built from *units*: a classic single-frame file is one unit, each frame of a multi-frame
file is one. Units are grouped by SeriesInstanceUID, and a group is split when the orientation, the
matrix size or the pixel format differs. Files without a position (X-ray, secondary captures, cine)
each make their own series, since stacking projections would invent a volume.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdviewer.study.dicom_geometry import (
    axes_from_orientation,
    irregularity_warnings,
    slice_spacing,
    sort_along_normal,
)
from kdviewer.study.dicom_header import DicomHeader, FrameGeometry, NotUsable, read_header
from kdviewer.study.series import PixelFormat, SeriesRef, SliceRef
from kdviewer.study.volume import IDENTITY_DIRECTION, SeriesInfo, WindowPreset

_COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "PALETTE COLOR")


@dataclass(frozen=True)
class _Unit:
    header: DicomHeader
    frame: int | None  # None for a classic single-frame file
    geometry: FrameGeometry


def scan_dicom(paths: Iterable[Path]) -> tuple[list[SeriesRef], list[tuple[Path, str]]]:
    """Headers of `paths` → series found, and (file, reason) for every file not used."""
    headers: list[DicomHeader] = []
    skipped: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            header = read_header(path)
        except NotUsable as exc:
            skipped.append((path, str(exc)))
            continue
        except OSError as exc:
            skipped.append((path, f"cannot read ({exc.strerror or exc})"))
            continue
        if header.sop_instance_uid and header.sop_instance_uid in seen:
            skipped.append((path, f"duplicate of {seen[header.sop_instance_uid].name} (same SOPInstanceUID)"))
            continue
        seen[header.sop_instance_uid] = path
        headers.append(header)
    return _series_from_headers(headers), skipped


def _series_from_headers(headers: list[DicomHeader]) -> list[SeriesRef]:
    groups: dict[tuple, list[_Unit]] = defaultdict(list)
    for h in headers:
        for k, g in enumerate(h.frames):
            unit = _Unit(h, k if h.multiframe else None, g)
            groups[_group_key(unit)].append(unit)
    parts_per_uid: dict[str, int] = defaultdict(int)
    for key in groups:
        if key[-1] == "":  # positioned groups only: unpositioned files are separate images anyway
            parts_per_uid[key[0]] += 1
    refs = []
    part_seen: dict[str, int] = defaultdict(int)
    for key, units in groups.items():
        notes = []
        if key[-1] == "" and parts_per_uid[key[0]] > 1:
            part_seen[key[0]] += 1
            notes.append(f"series split in {parts_per_uid[key[0]]} parts (orientation or matrix size differ): "
                         f"part {part_seen[key[0]]}")
        refs.append(_build_series(units, notes))
    refs.sort(key=lambda r: str(r.files[0]))
    return refs


def _group_key(unit: _Unit) -> tuple:
    h, g = unit.header, unit.geometry
    iop = tuple(round(v, 3) for v in g.iop) if g.iop is not None else None
    positioned = g.ipp is not None and g.iop is not None
    return (h.series_uid or str(h.path), h.rows, h.columns, h.samples, h.photometric, h.bits_allocated, iop,
            "" if positioned else str(h.path))


def _build_series(units: list[_Unit], notes: list[str]) -> SeriesRef:
    first = units[0].header
    warnings = list(notes)
    positioned = all(u.geometry.ipp is not None and u.geometry.iop is not None for u in units)
    if positioned:
        axes = axes_from_orientation(units[0].geometry.iop)
        positions = np.array([u.geometry.ipp for u in units], dtype=float)
        order, distances = sort_along_normal(positions, axes[:, 2])
        units = [units[i] for i in order]
        z_spacing, spacing_warnings = slice_spacing(distances)
        warnings += spacing_warnings
        warnings += irregularity_warnings(positions[order], axes[:, 2], first.gantry_tilt_deg)
        origin = tuple(float(v) for v in units[0].geometry.ipp)
        direction = tuple(float(v) for v in axes.ravel())
    else:
        units.sort(key=lambda u: (u.header.instance_number, str(u.header.path), u.frame or 0))
        z_spacing = None
        origin, direction = (0.0, 0.0, 0.0), IDENTITY_DIRECTION
        if len(units) > 1:
            warnings.append("no slice positions: frames kept in file order, slice spacing assumed")
    if z_spacing is None:
        z_spacing = first.spacing_between_slices or first.slice_thickness or 1.0
    ps = units[0].geometry.pixel_spacing
    if ps is None:
        ps = (1.0, 1.0)
        warnings.append("no pixel spacing in the file: 1 mm assumed")
    pixel = _pixel_format(first)
    rescales = [(u.geometry.slope, u.geometry.intercept) for u in units]
    dtype = _output_dtype(pixel, rescales)
    frame_bytes = first.rows * first.columns * first.samples * first.bits_allocated // 8
    slices = tuple(
        SliceRef(
            path=u.header.path,
            frame=u.frame,
            offset=(u.header.pixel_offset + (u.frame or 0) * frame_bytes) if pixel.raw else -1,
            slope=u.geometry.slope,
            intercept=u.geometry.intercept,
            sop_instance_uid=u.header.sop_instance_uid,
        )
        for u in units
    )
    files = tuple(dict.fromkeys(u.header.path for u in units))
    channels = 3 if pixel.photometric in _COLOR or pixel.samples == 3 else 1
    windows = first.windows
    if pixel.invert and dtype != "float32":
        lo, hi = _mapped_range(pixel, rescales)
        windows = tuple(WindowPreset(w.name, lo + hi - w.center, w.width) for w in windows)
    info = SeriesInfo(
        uid=first.series_uid,
        modality=first.modality,
        description=first.description,
        source=str(files[0].parent if len(files) > 1 else files[0]),
        units="HU" if first.modality == "CT" and channels == 1 else "",
        window_presets=windows if channels == 1 else (),
        warnings=tuple(warnings),
        tags=dict(first.tags),
        photometric=pixel.photometric,
        study_uid=first.study_uid,
        frame_of_reference_uid=first.frame_of_reference_uid,
        sop_instance_uids=tuple(s.sop_instance_uid for s in slices),
        sop_class_uid=first.sop_class_uid,
    )
    return SeriesRef(
        uid=first.series_uid,
        modality=first.modality,
        description=first.description,
        kind="dicom-multiframe" if any(u.frame is not None for u in units) else "dicom",
        files=files,
        shape=(len(units), first.rows, first.columns),
        spacing=(float(ps[1]), float(ps[0]), float(z_spacing)),
        dtype=dtype,
        warnings=tuple(warnings),
        origin=origin,  # type: ignore[arg-type]
        direction=direction,
        channels=channels,
        info=info,
        slices=slices,
        pixel=pixel,
    )


def _pixel_format(h: DicomHeader) -> PixelFormat:
    bits = h.bits_allocated
    kind = "i" if h.signed else "u"
    stored = f"<{kind}{bits // 8}" if bits in (8, 16, 32) else "u1"
    raw = (
        h.pixel_offset >= 0
        and h.samples == 1
        and bits in (8, 16)
        and h.photometric in ("MONOCHROME1", "MONOCHROME2")
    )
    return PixelFormat(
        rows=h.rows,
        columns=h.columns,
        samples=h.samples,
        photometric=h.photometric,
        bits_allocated=bits,
        bits_stored=min(h.bits_stored, bits) if bits > 1 else 1,
        signed=h.signed,
        stored_dtype=stored,
        raw=raw,
        invert=h.photometric == "MONOCHROME1",
        transfer_syntax=h.transfer_syntax,
    )


def _stored_range(pixel: PixelFormat) -> tuple[int, int]:
    bits = pixel.bits_stored
    if pixel.signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _mapped_range(pixel: PixelFormat, rescales: list[tuple[float, float]]) -> tuple[float, float]:
    """(lowest, highest) output value the stored range can map to over all slices."""
    lo, hi = _stored_range(pixel)
    values = [v * s + i for s, i in rescales for v in (lo, hi)]
    return min(values), max(values)


def _output_dtype(pixel: PixelFormat, rescales: list[tuple[float, float]]) -> str:
    """dtype of the loaded array: uint8 colour; the stored type without rescale; int16 HU; else float32.

    With an integer rescale whose worst case exceeds int16 (e.g. 16-bit storage and intercept -1024)
    int16 is still chosen, since real values almost always fit; the loader checks every slice and
    promotes the volume to float32 when one does not.
    """
    if pixel.samples == 3 or pixel.photometric == "PALETTE COLOR" or pixel.bits_allocated == 1:
        return "uint8"
    if not all(float(s).is_integer() and float(i).is_integer() for s, i in rescales):
        return "float32"
    if pixel.bits_allocated > 16:
        return "float32"
    if all(s == 1 and i == 0 for s, i in rescales):
        return np.dtype(pixel.stored_dtype).newbyteorder("=").name
    return "int16"
