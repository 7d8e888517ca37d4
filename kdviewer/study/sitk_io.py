"""NIfTI, NRRD and MetaImage through SimpleITK: header scan, load, one slice, save.

SimpleITK is imported inside the functions: it costs about 140 MiB and most sessions open DICOM only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdviewer.study.errors import CorruptFileError, UnsupportedFormatError
from kdviewer.study.series import SeriesRef
from kdviewer.study.volume import SeriesInfo, Volume

SITK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_sitk_file(path: Path) -> bool:
    """True for a file name SimpleITK reads as a volume here (NIfTI, NRRD, MetaImage)."""
    name = path.name.lower()
    return any(name.endswith(s) for s in SITK_SUFFIXES)


def scan_sitk(path: Path) -> SeriesRef:
    """Describe a NIfTI/NRRD/MHA file from its header only; raises `CorruptFileError` if unreadable."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CorruptFileError(path, f"SimpleITK cannot read the header ({_itk_reason(exc)})") from None
    size = list(reader.GetSize())
    dim = reader.GetDimension()
    warnings = []
    frame_index = None
    if dim == 4:
        frame_index = 0
        warnings.append(f"4-D image with {size[3]} volumes: showing the first")
    elif dim not in (2, 3):
        raise UnsupportedFormatError(path, f"{dim}-D images are not supported")
    spacing = list(reader.GetSpacing()) + [1.0] * (3 - min(dim, 3))
    origin = list(reader.GetOrigin()) + [0.0] * (3 - min(dim, 3))
    size3 = (size + [1])[:3]
    channels = reader.GetNumberOfComponents()
    if channels not in (1, 3, 4):
        raise UnsupportedFormatError(path, f"{channels} components per voxel are not supported")
    dtype = _numpy_dtype(reader.GetPixelIDValue(), sitk)
    info = SeriesInfo(uid=path.name, modality="OT", description=path.name, source=str(path),
                      warnings=tuple(warnings))
    return SeriesRef(
        uid=path.name,
        modality="OT",
        description=path.name,
        kind="sitk",
        files=(path,),
        shape=(size3[2], size3[1], size3[0]),
        spacing=tuple(float(s) for s in spacing[:3]),  # type: ignore[arg-type]
        dtype=dtype,
        warnings=tuple(warnings),
        origin=tuple(float(o) for o in origin[:3]),  # type: ignore[arg-type]
        direction=_direction3(reader.GetDirection(), dim),
        channels=channels,
        info=info,
        frame_index=frame_index,
    )


def load_sitk(ref: SeriesRef) -> Volume:
    """Read the whole file of `ref` as a Volume (the first volume of a 4-D image)."""
    import SimpleITK as sitk

    path = ref.files[0]
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CorruptFileError(path, f"SimpleITK cannot read the image ({_itk_reason(exc)})") from None
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, ref.frame_index or 0])
    return Volume.from_sitk(image, ref.info)


def read_sitk_slice(ref: SeriesRef, index: int) -> np.ndarray:
    """Slice `index` (y, x[, c]) of a NIfTI/NRRD/MHA file, streamed where the format allows."""
    import SimpleITK as sitk

    z, y, x = ref.shape
    if not 0 <= index < z:
        raise IndexError(f"slice {index} out of range 0..{z - 1}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(ref.files[0]))
    reader.ReadImageInformation()
    dim = reader.GetDimension()
    if dim == 2:
        return sitk.GetArrayFromImage(reader.Execute())
    reader.SetExtractIndex([0, 0, index] + ([ref.frame_index or 0] if dim == 4 else []))
    reader.SetExtractSize([x, y, 0] + ([0] if dim == 4 else []))
    try:
        return sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError as exc:
        raise CorruptFileError(ref.files[0], f"cannot read slice {index} ({_itk_reason(exc)})") from None


def save_volume(volume: Volume, path: str | Path) -> None:
    """Write `volume` with its geometry as NIfTI/NRRD/MHA, chosen by the file extension."""
    import SimpleITK as sitk

    path = Path(path)
    if not is_sitk_file(path):
        raise UnsupportedFormatError(path, f"cannot save as {''.join(path.suffixes) or 'no extension'} "
                                           f"(use one of {', '.join(SITK_SUFFIXES)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sitk.WriteImage(volume.to_sitk(), str(path), useCompression=path.name.lower().endswith(".gz"))
    except RuntimeError as exc:
        raise CorruptFileError(path, f"SimpleITK cannot write the image ({_itk_reason(exc)})") from None


def _direction3(direction: tuple[float, ...], dim: int) -> tuple[float, ...]:
    if dim == 2:
        d = direction
        return (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0)
    if dim == 4:
        m = np.asarray(direction, dtype=float).reshape(4, 4)[:3, :3]
        return tuple(float(v) for v in m.ravel())
    return tuple(float(v) for v in direction)


def _numpy_dtype(pixel_id: int, sitk) -> str:
    """numpy dtype name of a SimpleITK pixel id (vector ids give the component type)."""
    names = {
        "UInt8": "uint8", "Int8": "int8", "UInt16": "uint16", "Int16": "int16", "UInt32": "uint32",
        "Int32": "int32", "UInt64": "uint64", "Int64": "int64", "Float32": "float32", "Float64": "float64",
    }
    for suffix, name in names.items():
        if pixel_id in (getattr(sitk, f"sitk{suffix}"), getattr(sitk, f"sitkVector{suffix}")):
            return name
    return "float64"


def _itk_reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # ITK messages start with file/line noise; the last line is the reason.
    return lines[-1][:200] if lines else type(exc).__name__
