"""Readers of volumes as 2-D slices: volume + label volume per case, and plain images / series.

A volume is read once per case and kept in a small cache (the last few cases), never per slice.
Slices are float32 in the volume's units (HU for CT), masks uint8 on the same grid.
"""

from __future__ import annotations

import re
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from kdviewer.study.datasets_base import DatasetLayoutError, Item, LabelledDataset, Sample, file_hash
from kdviewer.study.datasets_io import is_dicom_file
from kdviewer.study.errors import StudyError
from kdviewer.study.open import load_series, load_volume, open_path
from kdviewer.study.series import SeriesRef

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
_LABEL_NAME = re.compile(r"mask|label|seg", re.IGNORECASE)
CASE_CACHE_SIZE = 4  # cases kept decoded at once


def is_volume_file(path: Path) -> bool:
    """True for a NIfTI/NRRD/MHA file by suffix."""
    name = path.name.lower()
    return path.is_file() and name.endswith(VOLUME_SUFFIXES)


def is_label_file(path: Path) -> bool:
    """A label volume: NIfTI/NRRD/MHA or .npz whose name contains mask, label or seg."""
    return (is_volume_file(path) or (path.is_file() and path.suffix == ".npz")) and bool(_LABEL_NAME.search(path.name))


def _has_dicom(folder: Path, probe: int = 3) -> bool:
    files = [f for f in sorted(folder.iterdir())[:50] if f.is_file()][:probe] if folder.is_dir() else []
    return any(is_dicom_file(f) for f in files)


# -- reading: through kdviewer.study.open, the one way in ------------------------------------------
def _series_of(source: Path) -> list[SeriesRef]:
    """The series `open_path` finds in a file or folder (headers only)."""
    try:
        return list(open_path(source).series)
    except StudyError as e:
        raise DatasetLayoutError(source, f"cannot read the volume ({e.reason})") from e


def _read_label(path: Path) -> np.ndarray:
    """A label volume as (z, y, x): NIfTI-like through `load_volume`, or the mask/label/seg array of an .npz."""
    if path.suffix == ".npz":
        with np.load(path) as z:
            key = next((k for k in z.files if _LABEL_NAME.search(k)), z.files[0])
            return np.asarray(z[key])
    return load_volume(path).array


@lru_cache(maxsize=CASE_CACHE_SIZE)
def _case_volumes(image: SeriesRef, label: Path | None):
    """(image float32 (z, y, x), label uint8 (z, y, x) or None, spacing (x, y, z) mm), cached per case."""
    try:
        volume = load_series(image)
    except StudyError as e:
        raise DatasetLayoutError(image.files[0], f"cannot read the volume ({e.reason})") from e
    arr = volume.array.astype(np.float32)
    if arr.ndim == 4:  # colour: grey by luminance so slices stay (y, x)
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    arr.flags.writeable = False
    lab = None
    if label is not None:
        lab = _read_label(label)
        if lab.shape != arr.shape:
            raise DatasetLayoutError(label, f"label volume is {lab.shape}, the image volume is {arr.shape}")
        lab = lab.astype(np.uint8)
        lab.flags.writeable = False
    return arr, lab, volume.spacing


def _slice_sample(image: SeriesRef, label: Path | None, z: int) -> Sample:
    arr, lab, spacing = _case_volumes(image, label)
    return Sample(image=arr[z].copy(), mask=None if lab is None else lab[z].copy(), spacing_mm=spacing[:2])


def _slice_stack(image: SeriesRef, label: Path | None, z: int, n: int) -> np.ndarray:
    arr = _case_volumes(image, label)[0]
    idx = np.clip(np.arange(z - n // 2, z + n // 2 + 1), 0, len(arr) - 1)
    return arr[idx].copy()


def _slice_items(case: str, image: SeriesRef, label: Path | None, n_slices: int) -> list[Item]:
    return [Item(key=f"{case}/{z:04d}", loader=partial(_slice_sample, image, label, z), group=case, slice_index=z,
                 stacker=partial(_slice_stack, image, label, z)) for z in range(n_slices)]


# -- volume + labels -------------------------------------------------------------------------
def _case_in(folder: Path) -> tuple[Path, Path] | None:
    """(image volume, label volume) of a case folder, or None when it has no label volume."""
    labels = sorted(f for f in folder.iterdir() if is_label_file(f))
    if not labels:
        return None
    if len(labels) > 1:
        raise DatasetLayoutError(folder, f"expected one label volume, found {[f.name for f in labels]}")
    images = sorted(f for f in folder.iterdir() if is_volume_file(f) and not is_label_file(f))
    images += sorted(d for d in folder.iterdir() if d.is_dir() and _has_dicom(d))
    images += sorted(f for f in folder.iterdir() if f.is_file() and is_dicom_file(f))[:1]  # DICOMs beside the label
    if not images:
        raise DatasetLayoutError(folder, f"{labels[0].name} has no image volume beside it "
                                         "(a NIfTI file or a DICOM series folder)")
    return images[0], labels[0]


def find_cases(path: Path) -> dict[str, tuple[Path, Path]]:
    """{case id: (image, label)}: the folder itself when it holds a label volume, else its sub-folders."""
    if not path.is_dir():
        return {}
    own = _case_in(path)
    if own is not None:
        return {path.name: own}
    cases = {}
    for d in sorted(p for p in path.iterdir() if p.is_dir()):
        if any(is_label_file(f) for f in d.iterdir()):
            cases[d.name] = _case_in(d)
    return cases


def read_volume_labels(path: Path) -> LabelledDataset:
    """Per case an image volume (DICOM series folder or NIfTI) and a label volume (NIfTI or .npz)."""
    cases = find_cases(path)
    if not cases:
        raise DatasetLayoutError(path, "expected a label volume (file name with mask/label/seg) and an image volume")
    items: list[Item] = []
    for case, (image, label) in cases.items():
        source = image.parent if image.is_file() and is_dicom_file(image) else image
        series = [s for s in _series_of(source) if s.kind != "image" and not is_label_file(s.files[0])]
        if not series:
            raise DatasetLayoutError(source, "no image volume (DICOM series or NIfTI) found")
        ref = max(series, key=lambda s: s.shape[0])  # a folder may also hold a scout: take the longest series
        items += _slice_items(case, ref, label, ref.shape[0])
    stem = re.sub(r"[_-]?(mask|label|seg)[_-]?", "", next(iter(cases.values()))[1].name.split(".")[0],
                  flags=re.IGNORECASE)
    names = ("background", stem or "foreground")
    return LabelledDataset(path, "volume_labels", "segment", (), {"all": items}, (), names)


# -- plain images ----------------------------------------------------------------------------
def _image_sample(ref: SeriesRef) -> Sample:
    try:
        arr = load_series(ref).array[0]
    except StudyError as e:
        raise DatasetLayoutError(ref.files[0], f"cannot read the image ({e.reason})") from e
    return Sample(image=arr)


def find_plain_sources(path: Path) -> list[SeriesRef]:
    """The series below `path` (`open_path`): 2-D pictures, DICOM series and NIfTI volumes; [] if none."""
    if not path.exists():
        return []
    try:
        return list(open_path(path).series)
    except StudyError:
        return []


def read_plain_images(path: Path) -> LabelledDataset:
    """Images without labels (restoration): 2-D pictures, and the slices of DICOM series and NIfTI volumes."""
    sources = find_plain_sources(path)
    if not sources:
        raise DatasetLayoutError(path, "expected image files, DICOM series or NIfTI volumes")
    items: list[Item] = []
    base = path if path.is_dir() else path.parent
    for ref in sources:
        first = ref.files[0]
        name = (first.parent if ref.kind.startswith("dicom") and len(ref.files) > 1 else first).relative_to(base)
        if ref.kind == "image" or ref.shape[0] == 1 and ref.kind == "dicom":
            items.append(Item(key=name.as_posix(), loader=partial(_image_sample, ref), hasher=partial(file_hash, first)))
        else:
            items += _slice_items(name.as_posix() or path.name, ref, None, ref.shape[0])
    return LabelledDataset(path, "plain_images", "restore", (), {"all": items})
