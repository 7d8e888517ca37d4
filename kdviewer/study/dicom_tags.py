"""The full header of one image file as rows for a tags table (no Qt): DICOM elements, or image metadata.

DICOM: every element of the file meta and the dataset, read with ``dcmread(stop_before_pixels=True)``;
sequence items are listed below their sequence with a deeper `depth`, long values are shortened, and
pixel data is never read. Other formats (NIfTI, NRRD, MHA, PNG…): SimpleITK's image information and
metadata keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kdviewer.study.errors import CorruptFileError, PathNotFoundError, UnsupportedFormatError

MAX_VALUE_CHARS = 200  # longer values are cut with "…" (a table cell, not an archive)
MAX_SEQUENCE_ITEMS = 20  # items listed per sequence; the rest are summarised in one row
_BINARY_VRS = ("OB", "OW", "OF", "OD", "OL", "OV", "UN")


@dataclass(frozen=True)
class TagRow:
    """One line of the tags table.

    tag: "(gggg,eeee)" ("" for non-DICOM rows); name: keyword (or the dictionary name, or "Private");
    vr: DICOM value representation ("" for non-DICOM); value: display text; depth: nesting level in
    sequences (0 = top level).
    """

    tag: str
    name: str
    vr: str
    value: str
    depth: int = 0

    def matches(self, needle: str) -> bool:
        """True when `needle` (lower case) is in the tag, name, VR or value."""
        return any(needle in s.lower() for s in (self.tag, self.name, self.vr, self.value))


def filter_rows(rows: Sequence[TagRow], text: str) -> list[TagRow]:
    """The rows whose tag, name, VR or value contain `text` (case-insensitive); all rows for ""."""
    needle = text.strip().lower()
    return list(rows) if not needle else [r for r in rows if r.matches(needle)]


def _shorten(text: str) -> str:
    text = " ".join(text.split())  # no line breaks inside a table cell
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


def _value_text(elem) -> str:
    """Display text of a non-sequence element's value."""
    if elem.VR in _BINARY_VRS:
        length = len(elem.value) if elem.value is not None else 0
        return f"<{length} bytes of binary data>"
    value = elem.value
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return _shorten("\\".join(str(v) for v in value))
    return _shorten(str(value))


def _element_rows(dataset: Iterable, depth: int) -> list[TagRow]:
    rows: list[TagRow] = []
    for elem in dataset:
        if elem.tag == 0x7FE00010 or elem.keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            continue  # pixel data is omitted (and not read)
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        name = elem.keyword or ("Private" if elem.tag.is_private else elem.name)
        if elem.VR == "SQ":
            items = list(elem.value or ())
            rows.append(TagRow(tag, name, "SQ", f"{len(items)} item{'s' if len(items) != 1 else ''}", depth))
            for number, item in enumerate(items[:MAX_SEQUENCE_ITEMS], start=1):
                rows.append(TagRow("", f"Item {number}", "", "", depth + 1))
                rows.extend(_element_rows(item, depth + 2))
            if len(items) > MAX_SEQUENCE_ITEMS:
                rows.append(TagRow("", f"… {len(items) - MAX_SEQUENCE_ITEMS} more items", "", "", depth + 1))
            continue
        rows.append(TagRow(tag, name, str(elem.VR), _value_text(elem), depth))
    return rows


def read_header_rows(path: str | Path) -> list[TagRow]:
    """Every element of a DICOM file's header (file meta first) as `TagRow`s; pixel data omitted.

    Raises `PathNotFoundError` for a missing file and `CorruptFileError` when pydicom cannot parse it.
    """
    import pydicom

    path = Path(path)
    if not path.is_file():
        raise PathNotFoundError(path, "file not found")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises several types for broken files
        raise CorruptFileError(path, f"cannot read the DICOM header: {exc}") from exc
    meta = getattr(ds, "file_meta", None)
    return _element_rows(meta or (), 0) + _element_rows(ds, 0)


def read_metadata_rows(path: str | Path) -> list[TagRow]:
    """Image information and metadata keys of a non-DICOM image file (SimpleITK), as `TagRow`s.

    Raises `PathNotFoundError` for a missing file and `UnsupportedFormatError` when SimpleITK cannot read it.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise PathNotFoundError(path, "file not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise UnsupportedFormatError(path, f"SimpleITK cannot read the header: {reason}") from exc

    def numbers(values: Sequence[float]) -> str:
        return " × ".join(f"{v:g}" for v in values)

    rows = [
        TagRow("", "File", "", path.name),
        TagRow("", "Format", "", reader.GetImageIO() or "".join(path.suffixes).lstrip(".").upper()),
        TagRow("", "Size (voxels)", "", numbers(reader.GetSize())),
        TagRow("", "Spacing (mm)", "", numbers(reader.GetSpacing())),
        TagRow("", "Origin (mm)", "", numbers(reader.GetOrigin())),
        TagRow("", "Direction", "", " ".join(f"{v:.4g}" for v in reader.GetDirection())),
        TagRow("", "Pixel type", "", sitk.GetPixelIDValueAsString(reader.GetPixelID())),
        TagRow("", "Components", "", str(reader.GetNumberOfComponents())),
    ]
    rows += [TagRow("", key, "", _shorten(reader.GetMetaData(key))) for key in sorted(reader.GetMetaDataKeys())]
    return rows


def read_file_rows(path: str | Path) -> list[TagRow]:
    """The header of any image file: DICOM elements when pydicom recognises it, else SimpleITK's metadata."""
    path = Path(path)
    if _is_dicom(path):
        return read_header_rows(path)
    return read_metadata_rows(path)


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if head[128:132] == b"DICM":
        return True
    return path.suffix.lower() in (".dcm", ".dicom", "") and len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00")


def volume_info_rows(volume) -> list[TagRow]:
    """What a `Volume` itself knows (for a series made in this session, with no file behind it)."""
    info = volume.info
    z, y, x = volume.shape
    rows = [
        TagRow("", "Description", "", info.description),
        TagRow("", "Modality", "", info.modality),
        TagRow("", "Size (voxels)", "", f"{x} × {y} × {z}"),
        TagRow("", "Spacing (mm)", "", " × ".join(f"{s:g}" for s in volume.spacing)),
        TagRow("", "Origin (mm)", "", " × ".join(f"{o:g}" for o in volume.origin)),
        TagRow("", "Data type", "", str(volume.array.dtype)),
        TagRow("", "Units", "", info.units),
        TagRow("", "Source", "", info.source),
    ]
    rows += [TagRow("", str(k), "", _shorten(str(v))) for k, v in sorted(info.tags.items())]
    return [r for r in rows if r.value]
