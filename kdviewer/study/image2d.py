"""PNG, JPEG, BMP, GIF (Pillow) and TIFF (tifffile, Pillow for codecs tifffile lacks) as one-slice volumes: (1, y, x) grey or (1, y, x, 3) RGB.

Pixel spacing is not known for such pictures: 1 mm is assumed (and said in the warnings). An RGB image
whose three channels are identical is loaded as grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdviewer.study.errors import CorruptFileError, UnsupportedFormatError
from kdviewer.study.series import SeriesRef
from kdviewer.study.volume import SeriesInfo, Volume

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
_NO_SPACING = "picture file: no pixel spacing, 1 mm assumed"


def spacing_assumed(volume: Volume) -> bool:
    """True for a picture loaded here, whose 1 mm pixel spacing is an assumption, not a measurement."""
    return _NO_SPACING in volume.info.warnings


def is_image_file(path: Path) -> bool:
    """True for a picture file name (PNG, JPEG, BMP, TIFF)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def scan_image(path: Path) -> SeriesRef:
    """Describe a picture from its header; raises `CorruptFileError` when it cannot be opened."""
    if _is_tiff(path):
        shape, dtype, channels = _tiff_header(path)
    else:
        shape, dtype, channels = _pillow_header(path)
    info = SeriesInfo(uid=path.name, modality="OT", description=path.name, source=str(path),
                      warnings=(_NO_SPACING,))
    return SeriesRef(uid=path.name, modality="OT", description=path.name, kind="image", files=(path,),
                     shape=shape, spacing=(1.0, 1.0, 1.0), dtype=dtype, warnings=(_NO_SPACING,),
                     channels=channels, info=info)


def load_image(ref: SeriesRef) -> Volume:
    """Decode the picture of `ref` into a Volume (1, y, x) or (1, y, x, 3) (a TIFF stack: (z, y, x))."""
    path = ref.files[0]
    array = _read_tiff(path) if _is_tiff(path) else _read_pillow(path)
    array = _grey_if_identical(array)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3 and ref.channels == 3):
        array = array[None]
    info = ref.info
    return Volume(np.ascontiguousarray(array), ref.spacing, ref.origin, ref.direction, info)


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def _pillow_header(path: Path) -> tuple[tuple[int, int, int], str, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            mode, (w, h) = img.mode, img.size
            grey_rgb = mode in ("RGB", "RGBA", "P") and _pillow_channels_identical(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CorruptFileError(path, f"not a readable picture ({exc})") from None
    if mode in ("1", "L", "LA", "P") and (mode != "P" or grey_rgb):
        return (1, h, w), "uint8", 1
    if mode.startswith("I;16"):
        return (1, h, w), "uint16", 1
    if mode == "I":
        return (1, h, w), "int32", 1
    if mode == "F":
        return (1, h, w), "float32", 1
    if mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
        return (1, h, w), "uint8", 1 if grey_rgb else 3
    raise UnsupportedFormatError(path, f"picture mode {mode} is not supported")


def _pillow_channels_identical(img) -> bool:
    """Decodes the picture once to compare channels (pictures are small next to a CT series)."""
    rgb = np.asarray(img.convert("RGB"))
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("1", "LA"):
                img = img.convert("L")
            elif img.mode in ("RGBA", "P", "CMYK", "YCbCr"):
                img = img.convert("RGB")
            return np.asarray(img)
    except OSError as exc:
        raise CorruptFileError(path, f"cannot decode the picture ({exc})") from None


def _tiff_header(path: Path) -> tuple[tuple[int, int, int], str, int]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
    except (tifffile.TiffFileError, OSError, IndexError, ValueError) as exc:
        raise CorruptFileError(path, f"not a readable TIFF ({exc})") from None
    channels = 3 if len(shape) >= 3 and shape[-1] in (3, 4) else 1
    if channels == 3:
        shape = shape[:-1]
        channels = 1 if _grey_if_identical(_read_tiff(path)).ndim == 2 else 3
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise UnsupportedFormatError(path, f"TIFF of shape {shape} is not supported")
    return shape, ("uint8" if channels == 3 else np.dtype(dtype).name), channels  # type: ignore[return-value]


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        array = tifffile.imread(path)
    except ValueError:  # a compression tifffile cannot decode without imagecodecs (e.g. LZW): Pillow can
        array = _read_pillow(path)
    except (tifffile.TiffFileError, OSError) as exc:
        raise CorruptFileError(path, f"cannot decode the TIFF ({exc})") from None
    if array.ndim >= 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim >= 3 and array.shape[-1] == 3 and array.dtype != np.uint8:
        array = (array / max(float(array.max()), 1.0) * 255).astype(np.uint8)
    return array


def _grey_if_identical(array: np.ndarray) -> np.ndarray:
    """An RGB array (..., 3) whose channels are equal → the grey array (...)."""
    if array.ndim >= 3 and array.shape[-1] == 3:
        if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]):
            return np.ascontiguousarray(array[..., 0])
    return array
