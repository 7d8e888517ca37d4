"""Slice geometry of a DICOM series, pure numpy: axes, sorting along the normal, spacing, irregularities.

Conventions are SimpleITK's (ITK/GDCM): the direction matrix has the row cosine, the column cosine and
their cross product (the slice normal) as columns; slices are sorted by ascending position along the
normal, and the origin is the position of the first sorted slice.
"""

from __future__ import annotations

import math

import numpy as np

GAP_FACTOR = 1.5  # a step this many times the median spacing means missing slices
UNEVEN_TOLERANCE = 0.01  # relative spread of the steps tolerated before warning
SHEAR_TOLERANCE_DEG = 0.1  # slice positions drifting sideways more than this is a tilted stack


def axes_from_orientation(iop) -> np.ndarray:
    """3x3 matrix with columns (row cosine, column cosine, normal) from ImageOrientationPatient (6,)."""
    v = np.asarray(iop, dtype=float).reshape(2, 3)
    row = v[0] / (np.linalg.norm(v[0]) or 1.0)
    col = v[1] / (np.linalg.norm(v[1]) or 1.0)
    return np.column_stack([row, col, np.cross(row, col)])


def direction_from_orientation(iop) -> tuple[float, ...]:
    """ITK direction (9 numbers, 3x3 row-major) of a series with this ImageOrientationPatient."""
    return tuple(float(x) for x in axes_from_orientation(iop).ravel())


def sort_along_normal(positions: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order of the slices by position along `normal`, and the sorted distances (mm).

    positions: (n, 3) ImagePositionPatient in LPS mm; a stable sort keeps file order for ties.
    """
    distances = np.asarray(positions, dtype=float) @ np.asarray(normal, dtype=float)
    order = np.argsort(distances, kind="stable")
    return order, distances[order]


def slice_spacing(distances: np.ndarray) -> tuple[float | None, list[str]]:
    """Spacing between slices (median step, mm) and warnings about gaps, uneven steps and duplicates.

    distances: (n,) sorted positions along the normal. Returns (None, []) for fewer than two slices.
    """
    steps = np.diff(np.asarray(distances, dtype=float))
    if steps.size == 0:
        return None, []
    warnings: list[str] = []
    duplicates = int(np.sum(steps < 1e-3))
    real = steps[steps >= 1e-3]
    if real.size == 0:
        return None, [f"all {steps.size + 1} slices share one position"]
    median = float(np.median(real))
    if duplicates:
        warnings.append(f"{duplicates} slice(s) share a position with another slice")
    gaps = np.flatnonzero(real > GAP_FACTOR * median)
    if gaps.size:
        missing = int(sum(round(real[g] / median) - 1 for g in gaps))
        warnings.append(f"missing slices: {gaps.size} gap(s), about {missing} slice(s) missing, largest step "
                        f"{real[gaps].max():.2f} mm (median {median:.2f} mm)")
    elif real.max() - real.min() > UNEVEN_TOLERANCE * median + 1e-3:
        warnings.append(f"uneven slice spacing: steps {real.min():.3f}–{real.max():.3f} mm "
                        f"(median {median:.3f} mm used)")
    return median, warnings


def shear_deg(positions_sorted: np.ndarray, normal: np.ndarray) -> float:
    """Angle (degrees) between the line through the slice positions and the slice normal.

    0 for a normal stack; a gantry-tilted CT stored with an untilted orientation gives the tilt.
    positions_sorted: (n, 3) LPS mm, sorted along the normal.
    """
    p = np.asarray(positions_sorted, dtype=float)
    if len(p) < 2:
        return 0.0
    span = p[-1] - p[0]
    along = float(span @ normal)
    sideways = float(np.linalg.norm(span - along * np.asarray(normal)))
    if abs(along) < 1e-6:
        return 0.0
    return math.degrees(math.atan2(sideways, abs(along)))


def irregularity_warnings(positions_sorted: np.ndarray, normal: np.ndarray, gantry_tilt_deg: float) -> list[str]:
    """Warnings for a tilted or sheared stack (loaded as is, without resampling)."""
    warnings = []
    if abs(gantry_tilt_deg) > 1e-3:
        warnings.append(f"gantry tilt {gantry_tilt_deg:g}° (GantryDetectorTilt): loaded without correction")
    angle = shear_deg(positions_sorted, normal)
    if angle > SHEAR_TOLERANCE_DEG:
        warnings.append(f"slice positions are not along the slice normal (sheared by {angle:.1f}°, e.g. gantry "
                        "tilt): loaded without correction, distances across slices are approximate")
    return warnings
