"""Read one DICOM file's header (never its pixels) into a small `DicomHeader` record.

The record keeps only what grouping, sorting and decoding need, so a scan of a thousand files holds no
pydicom datasets. The byte offset of native pixel data is noted here, so loading can read the samples
straight into the output array without parsing the header again.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from kdviewer.study.dicom_header_fast import _FIRST_READ, _fast_header
from kdviewer.study.dicom_header_types import (
    _PIXEL_TAG_LE,
    _TAGS_KEPT,
    _UNDEFINED_LENGTH,
    DicomHeader,
    FrameGeometry,
    NotUsable,
    _native_value_position,
    window_presets,
)
from kdviewer.study.volume import WindowPreset

_PIXEL_TAG_BE = b"\x7f\xe0\x00\x10"
_FLOAT_PIXEL_TAGS = (b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")


def read_header(path: Path) -> DicomHeader:
    """Parse the header of `path`; raises `NotUsable` with a reason for anything that is not an image."""
    size = path.stat().st_size
    if size == 0:
        raise NotUsable("empty file (0 bytes)")
    try:
        with open(path, "rb") as fp:
            start = fp.read(_FIRST_READ)
            _check_looks_like_dicom(start[:132])
            header = _fast_header(path, fp, start, size)
            if header is not None:
                return header
            fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
            pixel_pos = fp.tell()
            element_head = fp.read(12)
    except NotUsable:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged headers
        raise NotUsable(f"unreadable DICOM header ({type(exc).__name__}: {_first_line(exc)})") from None
    if element_head[:4] in _FLOAT_PIXEL_TAGS:
        raise NotUsable("float pixel data is not supported")
    deflated = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") == DeflatedExplicitVRLittleEndian
    # A deflated file's stream position says nothing about the element that follows the header.
    if "Rows" not in ds or (element_head[:4] not in (_PIXEL_TAG_LE, _PIXEL_TAG_BE) and not deflated):
        kind = str(ds.get("Modality", "")) or "object"
        raise NotUsable(f"no pixel data ({kind})")
    try:
        return _header_from_dataset(path, ds, size, pixel_pos, element_head)
    except NotUsable:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed values (Rows = "abc", broken sequences, ...)
        raise NotUsable(f"malformed DICOM header ({type(exc).__name__}: {_first_line(exc)})") from None


def _check_looks_like_dicom(start: bytes) -> None:
    if start[128:132] == b"DICM":
        return
    # Without the preamble accept only a raw data set that starts with a group 0002 or 0008 tag.
    if len(start) >= 8 and (struct.unpack("<H", start[:2])[0] in (0x0002, 0x0008)
                            or struct.unpack(">H", start[:2])[0] in (0x0002, 0x0008)):
        return
    raise NotUsable("not a DICOM file (no DICM preamble, no DICOM tags at the start)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else ""


def _header_from_dataset(path: Path, ds: Dataset, size: int, pixel_pos: int, head: bytes) -> DicomHeader:
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits_allocated = int(ds.get("BitsAllocated", 16) or 16)
    bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
    n_frames = _int(ds.get("NumberOfFrames"), 1) or 1
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if not ts:
        implicit, little = ds.original_encoding
        ts = str(ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian) if little else str(
            ExplicitVRBigEndian)
    offset = -1
    if ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) and head[:4] == _PIXEL_TAG_LE:
        offset, length = _native_value_position(pixel_pos, head, ts == ImplicitVRLittleEndian)
        if length != _UNDEFINED_LENGTH:
            per_pixel = 2 if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422" else samples
            needed = (rows * columns * per_pixel * n_frames * bits_allocated + 7) // 8
            if offset + needed > size:
                raise NotUsable(f"truncated: pixel data needs {needed} bytes, the file holds "
                                f"{max(size - offset, 0)}")
        else:
            offset = -1
    frames = _frame_geometries(ds, n_frames)
    return DicomHeader(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        modality=str(ds.get("Modality", "") or "OT"),
        description=str(ds.get("SeriesDescription", "") or ""),
        instance_number=_int(ds.get("InstanceNumber"), 0),
        rows=rows,
        columns=columns,
        samples=samples,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip(),
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=bool(_int(ds.get("PixelRepresentation"), 0)),
        transfer_syntax=ts,
        pixel_offset=offset,
        frames=frames,
        multiframe=n_frames > 1 or "PerFrameFunctionalGroupsSequence" in ds,
        windows=_windows(_voi_source(ds)),
        gantry_tilt_deg=_float(ds.get("GantryDetectorTilt"), 0.0),
        spacing_between_slices=_positive(ds.get("SpacingBetweenSlices")),
        slice_thickness=_positive(ds.get("SliceThickness")),
        tags=tuple((k, str(ds.get(k))) for k in _TAGS_KEPT if ds.get(k) not in (None, "")),
    )


def _frame_geometries(ds: Dataset, n_frames: int) -> tuple[FrameGeometry, ...]:
    """Per-frame geometry: from the functional groups of enhanced objects, else the classic tags."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    classic = _geometry(ds, ds, ds, ds)
    if not per_frame:
        return _grid_frames(ds, classic, n_frames) or (classic,) * n_frames
    out = []
    for item in list(per_frame)[:n_frames]:
        def group(name: str, item: Dataset = item) -> Dataset | None:
            return _first_item(item, name) or (_first_item(shared, name) if shared is not None else None)

        out.append(_geometry(group("PlanePositionSequence"), group("PlaneOrientationSequence"),
                             group("PixelMeasuresSequence"), group("PixelValueTransformationSequence"),
                             fallback=classic))
    out += [out[-1] if out else classic] * (n_frames - len(out))
    return tuple(out)


def _grid_frames(ds: Dataset, classic: FrameGeometry, n_frames: int) -> tuple[FrameGeometry, ...] | None:
    """RT Dose frames: GridFrameOffsetVector gives each frame's offset (mm) along the normal."""
    offsets = _float_list(ds.get("GridFrameOffsetVector"))
    if n_frames < 2 or len(offsets) != n_frames or classic.ipp is None or classic.iop is None:
        return None
    row, col = classic.iop[:3], classic.iop[3:]
    normal = (row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2],
              row[0] * col[1] - row[1] * col[0])
    return tuple(
        replace(classic, ipp=tuple(p + o * n for p, n in zip(classic.ipp, normal, strict=True)))
        for o in offsets
    )


def _geometry(pos: Dataset | None, orient: Dataset | None, measures: Dataset | None,
              rescale: Dataset | None, fallback: FrameGeometry | None = None) -> FrameGeometry:
    ipp = _floats(pos.get("ImagePositionPatient") if pos is not None else None, 3)
    iop = _floats(orient.get("ImageOrientationPatient") if orient is not None else None, 6)
    ps = None
    if measures is not None:
        ps = _floats(measures.get("PixelSpacing"), 2) or _floats(measures.get("ImagerPixelSpacing"), 2)
    if ps is not None and min(ps) <= 0:
        ps = None
    slope = _float(rescale.get("RescaleSlope") if rescale is not None else None, None)
    intercept = _float(rescale.get("RescaleIntercept") if rescale is not None else None, None)
    fb = fallback or FrameGeometry(None, None, None)
    return FrameGeometry(
        ipp=ipp or fb.ipp,
        iop=iop or fb.iop,
        pixel_spacing=ps or fb.pixel_spacing,  # type: ignore[arg-type]
        slope=fb.slope if slope is None or slope == 0 else slope,
        intercept=fb.intercept if intercept is None else intercept,
    )


def _windows(ds: Dataset) -> tuple[WindowPreset, ...]:
    """The file's WindowCenter/Width pairs (multi-valued too), named by their explanation or 'File'."""
    centers = _float_list(ds.get("WindowCenter"))
    widths = _float_list(ds.get("WindowWidth"))
    names = ds.get("WindowCenterWidthExplanation")
    names = [] if names is None else [str(names)] if isinstance(names, str) else [str(n) for n in names]
    return window_presets(centers, widths, names)


def _voi_source(ds: Dataset) -> Dataset:
    """Where the window lives: the classic tags, or the (shared, else first) Frame VOI LUT of enhanced objects."""
    if "WindowCenter" in ds:
        return ds
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        voi = _first_item(_first_item(ds, group), "FrameVOILUTSequence")
        if voi is not None:
            return voi
    return ds


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _float_list(value) -> list[float]:
    if value is None or value == "":
        return []
    values = [value] if isinstance(value, (str, bytes, int, float)) or not hasattr(value, "__iter__") else value
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            continue
    return out


def _floats(value, n: int) -> tuple[float, ...] | None:
    values = _float_list(value)
    return tuple(values) if len(values) == n else None


def _float(value, default):
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _positive(value) -> float | None:
    v = _float(value, None)
    return v if v is not None and v > 0 else None


def _int(value, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default
