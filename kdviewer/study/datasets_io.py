"""Reading single 2-D image and mask files of labelled data sets (PNG, JPEG, TIFF, GIF, DICOM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdviewer.study.datasets_base import DatasetLayoutError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
DICOM_SUFFIXES = (".dcm", ".dicom")


def is_dicom_file(path: Path) -> bool:
    """True when the file has the DICOM preamble ("DICM" at byte 128) or a .dcm suffix."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_image_file(path: Path) -> bool:
    """True for a 2-D image file by suffix (PNG, JPEG, TIFF, BMP, GIF, DICOM)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES


def read_image(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Decode one 2-D image: (H, W) or (H, W, 3) array and its pixel spacing (x, y) mm if known.

    PNG/JPEG/TIFF/GIF through Pillow (uint8 stays uint8, 16-bit stays 16-bit, RGBA drops alpha,
    palette → RGB, colour images whose channels are equal become (H, W)). DICOM through pydicom with
    RescaleSlope/Intercept applied (float32, HU for CT) and MONOCHROME1 inverted.
    """
    if is_dicom_file(path):
        return _read_dicom(path)
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode == "LA":
                im = im.convert("L")
            elif im.mode in ("P", "PA", "RGBA", "CMYK", "YCbCr"):
                im = im.convert("RGB")
            arr = np.array(im)
    except (OSError, ValueError) as e:
        raise DatasetLayoutError(path, f"cannot decode the image ({e})") from e
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3 and arr.shape[-1] == 3 and _channels_equal(arr):
        arr = arr[..., 0]
    return arr, None


def read_mask(path: Path) -> np.ndarray:
    """A mask file as (H, W) uint8 0/1: any non-zero pixel (in any channel) is foreground."""
    arr, _ = read_image(path)
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    return (arr > 0).astype(np.uint8)


def _channels_equal(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def _read_dicom(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except Exception as e:  # pydicom raises many types for damaged files
        raise DatasetLayoutError(path, f"cannot decode the DICOM pixels ({e})") from e
    if arr.ndim == 3 and arr.shape[-1] != 3:
        arr = arr[0]  # multi-frame: the first frame stands for the file
    if arr.ndim == 2:
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        arr = arr.astype(np.float32) * slope + intercept
        if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
            arr = arr.max() + arr.min() - arr
    spacing = getattr(ds, "PixelSpacing", None)
    sp = (float(spacing[1]), float(spacing[0])) if spacing is not None and len(spacing) == 2 else None
    return arr, sp
