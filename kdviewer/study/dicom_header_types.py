"""The record types both DICOM header readers return, and the few byte-layout facts they share.

`dicom_header` (the pydicom path and the one entry point, `read_header`) and `dicom_header_fast` (the
struct-based reader of plain files) both build `DicomHeader` records from these; keeping them here lets
the two modules import them without importing each other in a cycle.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from kdviewer.study.volume import WindowPreset

_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
_UNDEFINED_LENGTH = 0xFFFFFFFF
# Tags copied as text into `DicomHeader.tags` (both readers keep the same ones, in this order).
_TAGS_KEPT = ("PatientID", "PatientName", "PatientSex", "StudyDate", "StudyDescription", "SeriesNumber",
              "SeriesDate", "Manufacturer", "ManufacturerModelName", "InstitutionName", "BodyPartExamined",
              "ProtocolName", "SliceThickness", "KVP", "ConvolutionKernel", "ViewPosition")


class NotUsable(Exception):
    """This file is not an image this reader can use; `str(exc)` is the reason shown to the user."""


@dataclass(frozen=True)
class FrameGeometry:
    """Geometry and rescale of one frame (the only frame of a classic file).

    ipp: ImagePositionPatient (LPS mm) or None; iop: ImageOrientationPatient (row, column cosines) or
    None; pixel_spacing: (row spacing, column spacing) mm or None.
    """

    ipp: tuple[float, float, float] | None
    iop: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    slope: float = 1.0
    intercept: float = 0.0


@dataclass(frozen=True)
class DicomHeader:
    """What one DICOM file says about its image(s)."""

    path: Path
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    modality: str
    description: str
    instance_number: int
    rows: int
    columns: int
    samples: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    signed: bool
    transfer_syntax: str
    pixel_offset: int  # byte offset of native little-endian samples, -1 when a decoder is needed
    frames: tuple[FrameGeometry, ...]  # one per frame
    multiframe: bool
    windows: tuple[WindowPreset, ...]
    gantry_tilt_deg: float
    spacing_between_slices: float | None
    slice_thickness: float | None
    tags: tuple[tuple[str, str], ...]


def _native_value_position(pos: int, head: bytes, implicit: bool) -> tuple[int, int]:
    """(value offset, value length) of a little-endian Pixel Data element whose tag starts at `pos`."""
    if implicit:
        return pos + 8, struct.unpack("<I", head[4:8])[0]
    return pos + 12, struct.unpack("<I", head[8:12])[0]


def window_presets(centers: list[float], widths: list[float], names: list[str]) -> tuple[WindowPreset, ...]:
    """The file's WindowCenter/Width pairs as presets, named by their explanation or 'File', 'File 2', ..."""
    out = []
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        if w <= 0:
            continue
        name = names[i] if i < len(names) and names[i].strip() else ("File" if i == 0 else f"File {i + 1}")
        out.append(WindowPreset(name, c, w))
    return tuple(out)
