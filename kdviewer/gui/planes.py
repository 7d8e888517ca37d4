"""The three display planes of an LPS-ordered array, in the radiological convention (no Qt).

`array_lps` is (z, y, x[, c]) with x toward patient Left, y toward Posterior, z toward Superior
(see `kdviewer.imaging.orient.reorient_to_lps`). Each view shows a 2-D plane as (rows, cols):

| view     | plane                   | rows (top to bottom)  | cols (left to right)         |
|----------|-------------------------|-----------------------|------------------------------|
| axial    | `a[k]`                  | y: anterior first     | x: patient right first       |
| coronal  | `a[::-1, j, :]`         | z: superior first     | x: patient right first       |
| sagittal | `a[::-1, :, i]`         | z: superior first     | y: anterior first            |

Planes come from `imaging.orient.display_slice` (numpy views, no copy). The cursor is an LPS index `(k, j, i)` = (z, y, x).
"""

from __future__ import annotations

import numpy as np

from kdviewer.imaging.orient import VIEW_LABELS, display_slice, display_spacing

VIEWS = ("axial", "coronal", "sagittal")

# Which LPS axis (0=z, 1=y, 2=x) each view's slices step along.
SLICE_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}

# Orientation letters on the screen edges of each view: {"left": "R", "top": "A", ...}.
EDGE_LABELS = VIEW_LABELS


def check_view(view: str) -> str:
    """Return `view` if it is one of VIEWS, else raise ValueError."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    return view


def slice_count(shape_zyx: tuple[int, ...], view: str) -> int:
    """Number of slices a view can step through for an LPS array of shape (z, y, x[, c])."""
    return int(shape_zyx[SLICE_AXIS[check_view(view)]])


def plane(array_lps: np.ndarray, view: str, index: int) -> np.ndarray:
    """The (rows, cols[, c]) plane `index` of `view`, as a view of `array_lps` (no copy)."""
    return display_slice(array_lps, view, index)


def pixel_size_mm(spacing_lps_xyz: tuple[float, float, float], view: str) -> tuple[float, float]:
    """(row height, col width) in mm of a view's pixels, from the LPS spacing (x, y, z) mm."""
    return display_spacing(spacing_lps_xyz, view)


def cursor_to_plane(cursor_kji: tuple[int, int, int], nz: int, view: str) -> tuple[int, int, int]:
    """(slice index, row, col) of the LPS cursor (k, j, i) in a view; `nz` is the LPS z size."""
    k, j, i = cursor_kji
    if check_view(view) == "axial":
        return k, j, i
    if view == "coronal":
        return j, nz - 1 - k, i
    return i, nz - 1 - k, j


def plane_to_cursor(view: str, index: int, row: int, col: int, nz: int) -> tuple[int, int, int]:
    """The LPS index (k, j, i) of pixel (row, col) on slice `index` of a view (inverse of cursor_to_plane)."""
    if check_view(view) == "axial":
        return index, row, col
    if view == "coronal":
        return nz - 1 - row, index, col
    return nz - 1 - row, col, index
