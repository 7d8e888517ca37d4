"""How a Volume is laid out for display: its array reoriented to LPS axes (no copy, no resampling).

2-D images (X-ray, photos) are shown as stored: rows down, columns right, as every viewer does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdviewer.imaging.orient import DisplayTransform, obliquity_deg, reorient_to_lps
from kdviewer.study.volume import IDENTITY_DIRECTION, Volume


@dataclass(frozen=True)
class DisplayGeometry:
    """A volume's array in LPS order with the spacing of its new axes and the way back to file indices."""

    array_lps: np.ndarray  # (z, y, x[, c]), x toward Left, y toward Posterior, z toward Superior
    spacing_lps: tuple[float, float, float]  # (x, y, z) mm of array_lps' axes
    transform: DisplayTransform
    obliquity_deg: float = 0.0  # how far the grid is from the LPS axes it is shown on

    def to_lps(self, array: np.ndarray) -> np.ndarray:
        """Reorient another array on the same grid (e.g. a label volume) the same way (a view)."""
        return self.transform.apply(array)

    def original_index_xyz(self, kji: tuple[int, int, int]) -> tuple[int, int, int]:
        """The file's voxel index (x, y, z) of an LPS array index (k, j, i)."""
        k, j, i = (int(v) for v in self.transform.from_lps_index(np.asarray(kji)))
        return i, j, k


def display_geometry(volume: Volume) -> DisplayGeometry:
    """The LPS display layout of `volume` (2-D images keep their stored orientation)."""
    direction = IDENTITY_DIRECTION if volume.is_2d else volume.direction
    array_lps, transform = reorient_to_lps(volume.array, direction)
    spacing = tuple(float(s) for s in transform.spacing_lps(volume.spacing))
    return DisplayGeometry(array_lps, spacing, transform, obliquity_deg(direction))  # type: ignore[arg-type]


def preview_volume(ref, slice_yx: np.ndarray) -> Volume:
    """A one-slice Volume to show while `ref` (a SeriesRef) decodes: its middle slice, axial when it can.

    When the series' slices are axial, the slice is reoriented like the full volume will be, so the
    picture does not jump when the volume arrives; other slices are shown as stored.
    """
    one = np.asarray(slice_yx)[None]
    array_lps, transform = reorient_to_lps(one, ref.direction)
    if array_lps.shape[0] == 1:
        return Volume(array_lps, transform.spacing_lps(ref.spacing), info=ref.info)
    return Volume(one, ref.spacing, info=ref.info)
