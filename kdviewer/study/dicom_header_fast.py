"""Fast reader of a DICOM file's header: struct over the first bytes of the file, no pydicom dataset.

Most files are plain: preamble, explicit or implicit VR little endian, single frame, ASCII values. For
those the header is walked here with struct over a few kB read once (`_FIRST_READ`, more only when the
header is longer), and only the values `DicomHeader` needs are decoded, with the same rules pydicom
applies. Any file that strays from that (big endian, deflated, no preamble, enhanced multi-frame,
non-ASCII text, multi-valued text, values pydicom would reject or convert differently, VR switches,
truncation, ...) makes `_fast_header` return None, and `dicom_header.read_header` hands the file over to
pydicom as before. tests/test_study_dicom.py checks that both paths give identical records (and
identical `NotUsable` reasons) on a set of plain and odd files.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, STANDARD_VR

from kdviewer.study.dicom_header_types import (
    _PIXEL_TAG_LE,
    _TAGS_KEPT,
    _UNDEFINED_LENGTH,
    DicomHeader,
    FrameGeometry,
    _native_value_position,
    window_presets,
)
from kdviewer.study.volume import WindowPreset

_FIRST_READ = 8192
_STOP_TAGS = frozenset((0x7FE00010, 0x7FE00008, 0x7FE00009))  # pydicom's stop_before_pixels tags
_ENHANCED_TAGS = frozenset((tag_for_keyword("PerFrameFunctionalGroupsSequence"),
                            tag_for_keyword("SharedFunctionalGroupsSequence")))
_VALUE_KEYWORDS = ("SpecificCharacterSet", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                   "PixelRepresentation", "NumberOfFrames", "PhotometricInterpretation", "SeriesInstanceUID",
                   "StudyInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "SOPInstanceUID", "Modality",
                   "SeriesDescription", "InstanceNumber", "WindowCenter", "WindowWidth",
                   "WindowCenterWidthExplanation", "GantryDetectorTilt", "SpacingBetweenSlices",
                   "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "ImagerPixelSpacing",
                   "RescaleSlope", "RescaleIntercept") + _TAGS_KEPT
# tag → (keyword, VR) of every element the fast path decodes; any other element is skipped unread.
_VALUE_TAGS = {tag_for_keyword(k): (k, dictionary_VR(k)) for k in _VALUE_KEYWORDS}
_VALUE_VRS = {tag: vr.encode() for tag, (_, vr) in _VALUE_TAGS.items()}
_WANTED = frozenset(_VALUE_TAGS) | _ENHANCED_TAGS
_VRS = frozenset(vr.encode() for vr in STANDARD_VR)
_VRS_LONG = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
# Character sets under which ASCII bytes decode to the same text.
_ASCII_CHARSETS = ("", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 6", "ISO 2022 IR 100")
_IS_RE = re.compile(r" *[+-]?[0-9]{1,12} *")
_DS_RE = re.compile(r" *[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})? *")
_HEAD_EXPLICIT = struct.Struct("<HH2sH")
_HEAD_IMPLICIT = struct.Struct("<HHL")
_UINT32 = struct.Struct("<L")
_UINT16 = struct.Struct("<H")
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


class _Fallback(Exception):
    """The fast path met something it does not handle: the pydicom path decides."""


class _Window:
    """Bytes of the file around the parse position: `start` is the file offset of `buf[0]`."""

    def __init__(self, fp, buf: bytes) -> None:
        self.fp, self.buf, self.start = fp, buf, 0

    def at(self, pos: int, n: int) -> int:
        """Index in `buf` of file offset `pos`, with `n` bytes available there (else `_Fallback`)."""
        i = pos - self.start
        if i < 0 or i + n > len(self.buf):
            self.fp.seek(pos)
            self.buf, self.start, i = self.fp.read(max(n, _FIRST_READ)), pos, 0
            if len(self.buf) < n:
                raise _Fallback
        return i


def _fast_header(path: Path, fp, start: bytes, size: int) -> DicomHeader | None:
    try:
        return _fast_parse(path, _Window(fp, start), size)
    except Exception:  # noqa: BLE001 - _Fallback, or anything unforeseen: the pydicom path decides
        return None


def _fast_parse(path: Path, win: _Window, size: int) -> DicomHeader:
    if win.buf[128:132] != b"DICM":
        raise _Fallback
    pos, ts = 132, None
    while True:  # file meta information: explicit VR little endian, group 0002
        i = win.at(pos, 8)
        group, elem, vr, length = _HEAD_EXPLICIT.unpack_from(win.buf, i)
        if group != 2:
            break
        if vr not in _VRS:
            raise _Fallback
        head = 8
        if vr in _VRS_LONG:
            length = _UINT32.unpack_from(win.buf, win.at(pos, 12) + 8)[0]
            head = 12
        if length == _UNDEFINED_LENGTH:
            raise _Fallback
        if elem == 0x0010:
            i = win.at(pos + head, length)
            ts = _ui(win.buf[i:i + length]).rstrip(" \x00")
        pos += head + length
    if not ts or "\\" in ts or ts in (ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian) or ts in PrivateTransferSyntaxes:
        raise _Fallback
    implicit = ts == ImplicitVRLittleEndian
    i = win.at(pos, 8)
    if group <= 2 or (not (0x40 < win.buf[i + 4] < 0x5B and 0x40 < win.buf[i + 5] < 0x5B)) != implicit:
        raise _Fallback  # a command set, or pydicom would switch between implicit and explicit VR
    raw: dict[int, bytes] = {}
    while True:
        buf = win.buf
        i = pos - win.start
        if i < 0 or i + 12 > len(buf):
            i = win.at(pos, 8)
            buf = win.buf
        if implicit:
            group, elem, length = _HEAD_IMPLICIT.unpack_from(buf, i)
            head = 8
        else:
            group, elem, vr, length = _HEAD_EXPLICIT.unpack_from(buf, i)
            head = 8
            if vr not in _VRS:
                raise _Fallback
            if vr in _VRS_LONG:
                if i + 12 > len(buf):
                    i = win.at(pos, 12)
                    buf = win.buf
                length = _UINT32.unpack_from(buf, i + 8)[0]
                head = 12
        tag = group << 16 | elem
        if tag in _STOP_TAGS:
            break
        if group <= 2 or group == 0xFFFE or tag in _ENHANCED_TAGS:
            raise _Fallback
        if length == _UNDEFINED_LENGTH:
            if tag in _WANTED or not (_implicit_sequence(win, tag, pos + 8) if implicit else vr == b"SQ"):
                raise _Fallback
            pos = _skip_sequence(win, pos + head, implicit, 0)
            continue
        if tag in _WANTED:
            if not implicit and vr != _VALUE_VRS[tag]:
                raise _Fallback  # e.g. UN or a wrong VR: pydicom converts those its own way
            i += head
            if i + length > len(buf):
                i = win.at(pos + head, length)
                buf = win.buf
            raw[tag] = buf[i:i + length]
        pos += head + length
    i = win.at(pos, 12)
    head_bytes = win.buf[i:i + 12]
    if head_bytes[:4] != _PIXEL_TAG_LE:
        raise _Fallback
    return _record(path, raw, ts, implicit, pos, head_bytes, size)


def _implicit_sequence(win: _Window, tag: int, value_pos: int) -> bool:
    """Whether pydicom reads this undefined-length implicit VR element as a sequence."""
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return tag >> 16 & 1 == 1 and _tag_at(win, value_pos) == _ITEM


def _tag_at(win: _Window, pos: int) -> int:
    group, elem = struct.unpack_from("<HH", win.buf, win.at(pos, 4))
    return group << 16 | elem


def _skip_sequence(win: _Window, pos: int, implicit: bool, depth: int) -> int:
    """File offset after the undefined-length sequence whose value starts at `pos`."""
    if depth > 8:
        raise _Fallback
    while True:
        i = win.at(pos, 8)
        tag = _tag_at(win, pos)
        length = _UINT32.unpack_from(win.buf, i + 4)[0]
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _Fallback
        if length != _UNDEFINED_LENGTH:
            pos += length
            continue
        while True:  # an undefined-length item: its elements up to the item delimiter
            i = win.at(pos, 8)
            tag = _tag_at(win, pos)
            if tag == _ITEM_END:
                pos += 8
                break
            if implicit:
                length, head = _UINT32.unpack_from(win.buf, i + 4)[0], 8
            else:
                vr = win.buf[i + 4:i + 6]
                if vr not in _VRS:
                    raise _Fallback
                head = 12 if vr in _VRS_LONG else 8
                length = (_UINT32.unpack_from(win.buf, win.at(pos, 12) + 8)[0] if head == 12
                          else _UINT16.unpack_from(win.buf, i + 6)[0])
            if length == _UNDEFINED_LENGTH:
                if not (_implicit_sequence(win, tag, pos + 8) if implicit else vr == b"SQ"):
                    raise _Fallback
                pos = _skip_sequence(win, pos + head, implicit, depth + 1)
                continue
            pos += head + length


def _record(path: Path, raw: dict[int, bytes], ts: str, implicit: bool, pixel_pos: int, head: bytes,
            size: int) -> DicomHeader:
    """The same record `_header_from_dataset` makes, from the raw values of a plain file."""
    values = {}
    for tag, value in raw.items():
        keyword, vr = _VALUE_TAGS[tag]
        values[keyword] = _decode(value, vr)
    charset = _one_str(values.get("SpecificCharacterSet"))
    if charset is not None and charset not in _ASCII_CHARSETS:
        raise _Fallback
    rows, columns = values.get("Rows"), values.get("Columns")
    if not isinstance(rows, int) or not isinstance(columns, int):
        raise _Fallback
    samples = values.get("SamplesPerPixel") or 1
    bits_allocated = values.get("BitsAllocated") or 16
    bits_stored = values.get("BitsStored") or bits_allocated
    if (_one_int(values.get("NumberOfFrames"), 1) or 1) != 1:
        raise _Fallback
    photometric = _one_str(values.get("PhotometricInterpretation"))
    offset = -1
    if ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        offset, length = _native_value_position(pixel_pos, head, implicit)
        if length != _UNDEFINED_LENGTH:
            per_pixel = 2 if (photometric or "") == "YBR_FULL_422" else samples
            if offset + (rows * columns * per_pixel * bits_allocated + 7) // 8 > size:
                raise _Fallback  # truncated: the pydicom path words the reason
        else:
            offset = -1
    ps = _n_floats(values.get("PixelSpacing"), 2) or _n_floats(values.get("ImagerPixelSpacing"), 2)
    if ps is not None and min(ps) <= 0:
        ps = None
    slope = _one_float(values.get("RescaleSlope"), None)
    intercept = _one_float(values.get("RescaleIntercept"), None)
    frame = FrameGeometry(
        ipp=_n_floats(values.get("ImagePositionPatient"), 3),
        iop=_n_floats(values.get("ImageOrientationPatient"), 6),
        pixel_spacing=ps,  # type: ignore[arg-type]
        slope=1.0 if slope is None or slope == 0 else slope,
        intercept=0.0 if intercept is None else intercept,
    )
    spacing = _one_float(values.get("SpacingBetweenSlices"), None)
    thickness = _one_float(values.get("SliceThickness"), None)
    tags = []
    for k in _TAGS_KEPT:
        text = _one_str(values.get(k))
        if text:
            tags.append((k, text))
    return DicomHeader(
        path=path,
        series_uid=_one_str(values.get("SeriesInstanceUID")) or "",
        study_uid=_one_str(values.get("StudyInstanceUID")) or "",
        frame_of_reference_uid=_one_str(values.get("FrameOfReferenceUID")) or "",
        sop_class_uid=_one_str(values.get("SOPClassUID")) or "",
        sop_instance_uid=_one_str(values.get("SOPInstanceUID")) or "",
        modality=_one_str(values.get("Modality")) or "OT",
        description=_one_str(values.get("SeriesDescription")) or "",
        instance_number=_one_int(values.get("InstanceNumber"), 0),
        rows=rows,
        columns=columns,
        samples=samples,
        photometric=(photometric or "MONOCHROME2").strip(),
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=bool(_one_int(values.get("PixelRepresentation"), 0)),
        transfer_syntax=ts,
        pixel_offset=offset,
        frames=(frame,),
        multiframe=False,
        windows=_fast_windows(values),
        gantry_tilt_deg=_one_float(values.get("GantryDetectorTilt"), 0.0),
        spacing_between_slices=spacing if spacing is not None and spacing > 0 else None,
        slice_thickness=thickness if thickness is not None and thickness > 0 else None,
        tags=tuple(tags),
    )


def _fast_windows(values: dict) -> tuple[WindowPreset, ...]:
    centers = _all_floats(values.get("WindowCenter"))
    widths = _all_floats(values.get("WindowWidth"))
    names = values.get("WindowCenterWidthExplanation")
    names = [] if names is None else [n for n, _ in names]
    return window_presets(centers, widths, names)


def _ascii(value: bytes) -> str:
    if not value.isascii() or b"\x1b" in value:
        raise _Fallback
    return value.decode("ascii")


def _ui(value: bytes) -> str:
    return _ascii(value).rstrip("\0 ")


def _decode(value: bytes, vr: str):
    """A raw value decoded as pydicom would: a list of (value, text) items, or an int for US.

    Text keeps pydicom's stripping; numbers are (float or int, the text pydicom's str() gives). Items that
    pydicom would leave as empty strings are ("", "").
    """
    if vr == "US":
        if len(value) == 0:
            return None
        if len(value) != 2:
            raise _Fallback
        return _UINT16.unpack(value)[0]
    if vr == "PN":
        text = _ascii(value.rstrip(b"\x00 "))
        if "=" in text:
            raise _Fallback
        items = text.split("\\")
    elif vr in ("LO", "SH"):
        items = [v.rstrip("\0 ") for v in _ascii(value).split("\\")]
    elif vr == "DS":
        items = _ascii(value).strip().rstrip(" \x00").split("\\")
    elif vr == "UI":
        items = _ui(value).rstrip(" \x00").split("\\")
    else:  # CS, DA (dates stay text), IS
        items = _ascii(value).rstrip(" \x00").split("\\")
    if vr == "DS" or vr == "IS":
        out = []
        for item in items:
            if item.strip() == "":
                out.append(("", ""))
            elif (_DS_RE if vr == "DS" else _IS_RE).fullmatch(item):
                out.append((float(item) if vr == "DS" else int(item), item.strip()))
            else:
                raise _Fallback  # pydicom raises, or converts to something else
        return out
    return [(item, item) for item in items]


def _one_str(items) -> str | None:
    """The text of a single-valued element (None when absent); multi-valued ones go to pydicom."""
    if items is None:
        return None
    if isinstance(items, int) or len(items) != 1:
        raise _Fallback
    return items[0][1]


def _one_int(items, default: int) -> int:
    if items is None:
        return default
    if isinstance(items, int):
        return items
    if len(items) != 1:
        return default  # int(MultiValue) fails: `_int` gives the default
    value = items[0][0]
    return default if value == "" else value


def _one_float(items, default):
    if items is None or len(items) != 1:
        return default  # absent, or float(MultiValue) fails: `_float` gives the default
    value = items[0][0]
    return default if value == "" else float(value)


def _all_floats(items) -> list[float]:
    return [] if items is None else [float(v) for v, _ in items if v != ""]


def _n_floats(items, n: int) -> tuple[float, ...] | None:
    values = _all_floats(items)
    return tuple(values) if len(values) == n else None
