"""Reading studies (no Qt, no torch): DICOM series, NIfTI/NRRD/MHA, pictures, all as `Volume`.

`open_path` finds series (headers only), `load_series` decodes one, `read_slice` decodes a single slice.
"""

from kdviewer.study.errors import (
    CorruptFileError,
    NoSeriesFoundError,
    PathNotFoundError,
    StudyError,
    UnsupportedFormatError,
    VolumeTooLargeError,
)
from kdviewer.study.open import load_series, load_volume, open_path, read_slice, save_volume
from kdviewer.study.series import ScanResult, SeriesRef
from kdviewer.study.volume import SeriesInfo, Volume, WindowPreset

__all__ = [
    "open_path",
    "load_series",
    "read_slice",
    "load_volume",
    "save_volume",
    "Volume",
    "SeriesInfo",
    "WindowPreset",
    "ScanResult",
    "SeriesRef",
    "StudyError",
    "PathNotFoundError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "NoSeriesFoundError",
    "VolumeTooLargeError",
]
