"""The `Volume`: one image (2-D, 3-D or colour) with its geometry, as SimpleITK holds it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class WindowPreset:
    """A display window: centre and width in the volume's units (HU for CT)."""

    name: str
    center: float
    width: float


@dataclass(frozen=True)
class SeriesInfo:
    """What a reader knows about a series beyond its voxels."""

    uid: str = ""
    modality: str = "OT"
    description: str = ""
    source: str = ""  # file or folder it came from
    units: str = ""  # "HU" for CT after rescale, "" for stored values
    window_presets: tuple[WindowPreset, ...] = ()
    warnings: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    photometric: str = ""  # MONOCHROME1/2, RGB ... as read (after inversion it is MONOCHROME2)
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    sop_instance_uids: tuple[str, ...] = ()  # per slice, in array order (DICOM only)
    sop_class_uid: str = ""


@dataclass(frozen=True, eq=False)
class Volume:
    """An image on a grid.

    array: (z, y, x) for volumes, (1, y, x) for a 2-D image, (z, y, x, 3) for colour.
    spacing: (x, y, z) mm; origin: LPS mm of voxel (0, 0, 0); direction: 3x3 row-major, ITK
    convention (columns are the x, y, z axes in LPS).
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION
    info: SeriesInfo = field(default_factory=SeriesInfo)

    def __post_init__(self) -> None:
        a = self.array
        if a.ndim == 2:
            object.__setattr__(self, "array", a[None])
        elif a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] not in (3, 4)):
            raise ValueError(f"Volume array must be (z, y, x) or (z, y, x, 3), got shape {a.shape}")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(float(d) for d in self.direction))
        if len(self.direction) != 9:
            raise ValueError("direction must hold 9 numbers (3x3 row-major)")

    # -- shape -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) voxel counts."""
        return tuple(self.array.shape[:3])  # type: ignore[return-value]

    @property
    def is_color(self) -> bool:
        return self.array.ndim == 4

    @property
    def is_2d(self) -> bool:
        return self.array.shape[0] == 1

    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 direction matrix; column k is voxel axis k (x, y, z) in LPS."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    # -- geometry --------------------------------------------------------------------------
    def index_to_lps(self, index_xyz) -> np.ndarray:
        """World (LPS mm) of continuous voxel indices given as (..., 3) in (x, y, z) order."""
        idx = np.asarray(index_xyz, dtype=float)
        return np.asarray(self.origin) + (idx * np.asarray(self.spacing)) @ self.direction_matrix.T

    def lps_to_index(self, lps) -> np.ndarray:
        """Continuous voxel indices (x, y, z) of LPS points (..., 3)."""
        p = np.asarray(lps, dtype=float) - np.asarray(self.origin)
        return (p @ np.linalg.inv(self.direction_matrix).T) / np.asarray(self.spacing)

    def with_array(self, array: np.ndarray, **changes: Any) -> Volume:
        """The same geometry and info around another array (e.g. a label volume or a result)."""
        return replace(self, array=array, **changes)

    def same_grid(self, other: Volume, tol: float = 1e-3) -> bool:
        """True when `other` lies on exactly this grid (shape, spacing, origin, direction)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    # -- SimpleITK ---------------------------------------------------------------------------
    def to_sitk(self):
        """A SimpleITK image with the same voxels and geometry."""
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(self.array, isVector=self.is_color)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    @classmethod
    def from_sitk(cls, image, info: SeriesInfo | None = None) -> Volume:
        """A Volume from a SimpleITK image (2-D images become (1, y, x))."""
        import SimpleITK as sitk

        arr = sitk.GetArrayFromImage(image)
        dim = image.GetDimension()
        if dim == 2:
            sx, sy = image.GetSpacing()
            ox, oy = image.GetOrigin()
            d = image.GetDirection()
            return cls(arr[None], (sx, sy, 1.0), (ox, oy, 0.0), (d[0], d[1], 0, d[2], d[3], 0, 0, 0, 1),
                       info or SeriesInfo())
        if dim != 3:
            raise ValueError(f"only 2-D and 3-D images are supported, got {dim}-D")
        return cls(arr, image.GetSpacing(), image.GetOrigin(), image.GetDirection(), info or SeriesInfo())
