"""Patient orientation: showing any volume on LPS-aligned axes by axis swaps and flips only.

Conventions (as in `Volume`): arrays are (z, y, x[, c]); `direction` is the 3x3 row-major ITK matrix
whose columns are the voxel x, y, z axes in LPS (+x = patient Left, +y = Posterior, +z = Superior).
Indices in this module are numpy-ordered (k, j, i) = (z, y, x).

After `reorient_to_lps`, index i grows toward Left, j toward Posterior, k toward Superior. The views
of `display_slice` then follow the radiological convention: axial with anterior at the top and the
patient's right on the screen's left; coronal and sagittal with superior up.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_POSITIVE = "LPS"  # letter toward which each LPS axis grows
_NEGATIVE = "RAI"

# Screen-edge letters for the views of `display_slice` (fixed once the array is LPS-aligned).
VIEW_LABELS: dict[str, dict[str, str]] = {
    "axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
    "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
    "sagittal": {"left": "A", "right": "P", "top": "S", "bottom": "I"},
}


def _matrix(direction: Sequence[float] | np.ndarray) -> np.ndarray:
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(d)):
        raise ValueError(f"direction holds non-finite values: {direction}")
    return d


def nearest_axes(direction: Sequence[float] | np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """For voxel axes x, y, z: the nearest LPS axis (0=L, 1=P, 2=S) and its sign (+1/-1).

    The assignment is the axis permutation that best matches the direction cosines, so it is a
    permutation even for strongly oblique series.
    """
    d = np.abs(_matrix(direction))
    best = max(itertools.permutations(range(3)), key=lambda p: sum(d[p[k], k] for k in range(3)))
    signed = _matrix(direction)
    signs = tuple(1 if signed[best[k], k] >= 0 else -1 for k in range(3))
    return tuple(best), signs  # type: ignore[return-value]


def obliquity_deg(direction: Sequence[float] | np.ndarray) -> float:
    """Largest angle in degrees between a voxel axis and its nearest LPS axis (0 when axis-aligned)."""
    d = _matrix(direction)
    lps_axis, _ = nearest_axes(d)
    norms = np.linalg.norm(d, axis=0)
    cosines = [abs(d[lps_axis[k], k]) / norms[k] for k in range(3)]
    return float(np.degrees(np.arccos(np.clip(min(cosines), -1.0, 1.0))))


def axis_code(direction: Sequence[float] | np.ndarray) -> str:
    """Three letters naming where voxel x, y, z grow, as ITK's DICOMOrientImageFilter does ("LPS", "RAS")."""
    lps_axis, signs = nearest_axes(direction)
    return "".join(_POSITIVE[a] if s > 0 else _NEGATIVE[a] for a, s in zip(lps_axis, signs, strict=True))


def orientation_labels(direction: Sequence[float] | np.ndarray, min_cosine: float = 0.25) -> dict[str, tuple[str, str]]:
    """Letters at the low and high end of each voxel axis, e.g. ``{"x": ("R", "L"), ...}`` for LPS.

    Oblique axes get several letters, strongest first, for every LPS component whose cosine is at
    least `min_cosine` (e.g. "LA" for an axis 30 degrees off Left toward Anterior).
    """
    d = _matrix(direction)
    labels = {}
    for k, name in enumerate("xyz"):
        col = d[:, k] / np.linalg.norm(d[:, k])
        order = [a for a in np.argsort(-np.abs(col)) if abs(col[a]) >= min_cosine]
        high = "".join(_POSITIVE[a] if col[a] > 0 else _NEGATIVE[a] for a in order)
        low = "".join(_NEGATIVE[a] if col[a] > 0 else _POSITIVE[a] for a in order)
        labels[name] = (low, high)
    return labels


@dataclass(frozen=True)
class DisplayTransform:
    """How `reorient_to_lps` rearranged an array, and the way back.

    perm[a]: the source numpy axis that became numpy axis a of the LPS array (axes 0, 1, 2 = k, j, i).
    flips[a]: whether that axis was reversed. in_shape: the source (z, y, x) shape.
    """

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    in_shape: tuple[int, int, int]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(z, y, x) shape of the LPS array."""
        return tuple(self.in_shape[p] for p in self.perm)  # type: ignore[return-value]

    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flips)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The LPS view of a source-grid (z, y, x[, c]) array, e.g. a label overlay (no copy)."""
        if tuple(array.shape[:3]) != self.in_shape:
            raise ValueError(f"array shape {array.shape} does not match the source grid {self.in_shape}")
        out = np.transpose(array, self.perm + tuple(range(3, array.ndim)))
        return out[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def invert(self, array_lps: np.ndarray) -> np.ndarray:
        """Back from the LPS array to the source grid (e.g. a mask drawn on the display; no copy)."""
        if tuple(array_lps.shape[:3]) != self.out_shape:
            raise ValueError(f"array shape {array_lps.shape} does not match the LPS grid {self.out_shape}")
        unflipped = array_lps[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        inverse = tuple(int(a) for a in np.argsort(self.perm))
        return np.transpose(unflipped, inverse + tuple(range(3, array_lps.ndim)))

    def to_lps_index(self, index_kji) -> np.ndarray:
        """Source (k, j, i) indices, shape (..., 3), integer or continuous -> indices in the LPS array."""
        idx = np.asarray(index_kji)
        out = idx[..., list(self.perm)]
        sizes = np.array(self.out_shape)
        flips = np.array(self.flips)
        return np.where(flips, sizes - 1 - out, out)

    def from_lps_index(self, index_lps) -> np.ndarray:
        """Indices (..., 3) in the LPS array -> source (k, j, i) indices."""
        idx = np.asarray(index_lps)
        sizes = np.array(self.out_shape)
        unflipped = np.where(np.array(self.flips), sizes - 1 - idx, idx)
        return unflipped[..., list(np.argsort(self.perm))]

    def spacing_lps(self, spacing_xyz: Sequence[float]) -> tuple[float, float, float]:
        """Voxel spacing (x, y, z) mm of the LPS array, i.e. along Left, Posterior, Superior."""
        src_zyx = tuple(float(s) for s in spacing_xyz)[::-1]
        return tuple(src_zyx[p] for p in self.perm)[::-1]  # type: ignore[return-value]

    def geometry_lps(self, origin: Sequence[float], spacing_xyz: Sequence[float],
                     direction: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """(origin, spacing_xyz, direction) of the LPS array in the same world, for a `Volume`.

        The direction is the source's with columns swapped and negated: the identity for axis-aligned
        series, still oblique for oblique ones.
        """
        d = _matrix(direction)
        first = self.from_lps_index(np.zeros(3, dtype=int))[::-1]  # source (x, y, z) of new voxel 0
        new_origin = np.asarray(origin, dtype=float) + d @ (first * np.asarray(spacing_xyz, dtype=float))
        cols = []
        for a in (2, 1, 0):  # new x, y, z = numpy axes 2, 1, 0
            src_col = d[:, 2 - self.perm[a]]
            cols.append(-src_col if self.flips[a] else src_col)
        new_dir = np.stack(cols, axis=1)
        return (tuple(float(v) for v in new_origin), self.spacing_lps(spacing_xyz),
                tuple(float(v) for v in new_dir.ravel()))


def reorient_to_lps(array: np.ndarray, direction: Sequence[float] | np.ndarray) -> tuple[np.ndarray, DisplayTransform]:
    """View a (z, y, x[, c]) array on the nearest LPS-aligned axes by transposes and flips only.

    Returns (array_lps, transform); `array_lps` is a numpy view (no copy, no resampling). Oblique
    series get their nearest axes; check `obliquity_deg` to warn.
    """
    if array.ndim not in (3, 4):
        raise ValueError(f"reorient_to_lps takes (z, y, x[, c]) arrays, got shape {array.shape}")
    lps_axis, signs = nearest_axes(direction)
    perm = [0, 0, 0]
    flips = [False, False, False]
    for k in range(3):  # voxel axis k (x, y, z) is numpy axis 2 - k; LPS axis a is numpy axis 2 - a
        out_axis = 2 - lps_axis[k]
        perm[out_axis] = 2 - k
        flips[out_axis] = signs[k] < 0
    transform = DisplayTransform(tuple(perm), tuple(flips), tuple(array.shape[:3]))  # type: ignore[arg-type]
    return transform.apply(array), transform


def display_slice(array_lps: np.ndarray, view: str, index: int) -> np.ndarray:
    """The 2-D (rows, cols[, c]) slice of an LPS array as the screen shows it (a view, no copy).

    axial: ``array_lps[index]`` (rows anterior to posterior, cols right to left);
    coronal: ``array_lps[:, index]`` with superior up; sagittal: ``array_lps[:, :, index]`` with
    superior up and anterior on the left. See `VIEW_LABELS` and `display_spacing`.
    """
    if view == "axial":
        return array_lps[index]
    if view == "coronal":
        return array_lps[::-1, index]
    if view == "sagittal":
        return array_lps[::-1, :, index]
    raise ValueError(f"unknown view {view!r}; expected axial, coronal or sagittal")


def display_spacing(spacing_lps_xyz: Sequence[float], view: str) -> tuple[float, float]:
    """(row, col) pixel size in mm of a `display_slice` view, from the LPS array's (x, y, z) spacing."""
    sx, sy, sz = (float(s) for s in spacing_lps_xyz)
    rows_cols = {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}
    if view not in rows_cols:
        raise ValueError(f"unknown view {view!r}; expected axial, coronal or sagittal")
    return rows_cols[view]
