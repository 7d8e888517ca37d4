"""Connected components of masks and label maps: clean-up, volumes and where a lesion is largest.

Masks and label maps are (z, y, x) or (y, x) arrays; spacings are ITK-ordered (x, y, z) mm, as
`Volume.spacing`. Connectivity follows scikit-image: 1 = faces only, ``ndim`` = faces, edges, corners.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as _label


def largest_component(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Boolean mask of the largest connected component of `mask` (all False when `mask` is empty).

    Ties go to the component met first in array order.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    labels = _label(mask, connectivity=connectivity)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def components_touching(mask: np.ndarray, region: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """The connected components of `mask` that overlap `region` (same shape), whole; the others dropped."""
    labels = _label(np.asarray(mask, bool), connectivity=connectivity)
    hit = np.unique(labels[np.asarray(region, bool) & (labels > 0)])
    return np.isin(labels, hit[hit > 0])


def remove_small_components(mask: np.ndarray, min_diameter_mm: float,
                            spacing_xyz_mm: Sequence[float] | None = None, connectivity: int = 1) -> np.ndarray:
    """Boolean `mask` without the connected components smaller than a lesion `min_diameter_mm` across.

    A (y, x) mask drops components whose area is below a disc's, π d²/4 mm²; a (z, y, x) mask those
    whose volume is below a sphere's, π d³/6 mm³. `spacing_xyz_mm`: (x, y[, z]) mm, the first two
    values for a 2-D mask, all three for a 3-D one; None = 1 mm pixels. A diameter <= 0 keeps the
    mask as it is (a copy). A component exactly the size of the disc or sphere is kept.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim not in (2, 3):
        raise ValueError(f"remove_small_components needs a (y, x) or (z, y, x) mask, got shape {mask.shape}")
    if min_diameter_mm is None or not min_diameter_mm > 0 or not mask.any():
        return mask.copy()
    spacing = (1.0,) * mask.ndim if spacing_xyz_mm is None else tuple(float(s) for s in spacing_xyz_mm)
    if len(spacing) < mask.ndim:
        raise ValueError(f"a {mask.ndim}-D mask needs a spacing of {mask.ndim} values (x, y, z) mm, got {spacing}")
    spacing = spacing[:mask.ndim]
    if not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")
    d = float(min_diameter_mm)
    size_mm = math.pi * d * d / 4.0 if mask.ndim == 2 else math.pi * d ** 3 / 6.0
    min_voxels = size_mm / math.prod(spacing)
    labels = _label(mask, connectivity=connectivity)
    keep = np.bincount(labels.ravel()) >= min_voxels
    keep[0] = False
    return keep[labels]


def fill_holes(mask: np.ndarray, per_slice: bool = False) -> np.ndarray:
    """Boolean `mask` with enclosed background filled (scipy ``binary_fill_holes``).

    `per_slice`: for (z, y, x) masks, fill each axial slice in 2-D; this closes holes that open
    through the top or bottom slice, as organ masks drawn slice by slice need.
    """
    mask = np.asarray(mask, dtype=bool)
    if per_slice and mask.ndim == 3:
        return np.stack([ndi.binary_fill_holes(s) for s in mask])
    return ndi.binary_fill_holes(mask)


def voxel_volume_ml(spacing_xyz_mm: Sequence[float]) -> float:
    """Volume of one voxel in millilitres (1 ml = 1000 mm³)."""
    return float(np.prod(np.asarray(spacing_xyz_mm, dtype=float))) / 1000.0


def _counts_by_bincount(labels: np.ndarray, block: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """(values, counts) of small non-negative labels, in blocks so bincount's intp copy stays small."""
    flat = labels.ravel()
    counts = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    for start in range(0, flat.size, block):
        counts += np.bincount(flat[start:start + block], minlength=counts.size)
    values = np.flatnonzero(counts)
    return values, counts[values]


def label_volumes_ml(labels: np.ndarray, spacing_xyz_mm: Sequence[float]) -> dict[int, float]:
    """Volume in ml of each non-zero label present in an integer label map, e.g. ``{1: 1523.4, 2: 12.1}``."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"label maps must hold integers, got {labels.dtype}")
    if labels.size and labels.min() >= 0 and labels.max() < 1 << 16:
        values, counts = _counts_by_bincount(labels)  # 10x faster than unique on a CT label map
    else:
        values, counts = np.unique(labels, return_counts=True)
    per_voxel = voxel_volume_ml(spacing_xyz_mm)
    return {int(v): float(c) * per_voxel for v, c in zip(values, counts, strict=True) if v != 0}


def largest_lesion_slice(labels: np.ndarray, label: int, axis: int = 0) -> int | None:
    """Index along `axis` (0 = axial slices) of the slice where `label` covers the most voxels.

    None when the label is absent. For "jump to largest lesion".
    """
    present = np.asarray(labels) == label
    other_axes = tuple(a for a in range(present.ndim) if a != axis)
    areas = present.sum(axis=other_axes)
    return int(np.argmax(areas)) if areas.any() else None


def largest_component_centroid(labels: np.ndarray, label: int, connectivity: int = 1) -> tuple[float, ...] | None:
    """Centroid, in (z, y, x) voxel indices, of the largest connected component of `label`.

    None when the label is absent. Round it to jump the views to that lesion.
    """
    component = largest_component(np.asarray(labels) == label, connectivity)
    if not component.any():
        return None
    return tuple(float(c) for c in ndi.center_of_mass(component))


def field_of_view(image: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Where a photograph's field of view is (a fundus camera's bright disc on a dark surround): bool (H, W), or
    (z, H, W) for a stack, from an (H, W) grey / (H, W, 3|4) colour image or such a stack.

    Per image: the red channel of a colour image (its surround is darkest there; the usual fundus rule), else the
    grey level, above `fraction` of its 99th percentile; the largest such component with its holes filled. On
    DRIVE training photographs this matches the data set's own FOV masks (intersection over union 0.99-1.0).
    """
    img = np.asarray(image)
    colour = img.ndim >= 3 and img.shape[-1] in (3, 4)
    plane_dims = 3 if colour else 2
    if img.ndim not in (plane_dims, plane_dims + 1):
        raise ValueError(f"expected an image or a stack of them, got shape {img.shape}")
    stack = img if img.ndim == plane_dims + 1 else img[None]
    out = np.zeros(stack.shape[:3], dtype=bool)
    for k, plane in enumerate(stack):
        level = np.asarray(plane[..., 0] if colour else plane, dtype=np.float32)
        bright = level > fraction * float(np.percentile(level, 99))
        if bright.any():
            out[k] = ndi.binary_fill_holes(largest_component(bright))
    return out if img.ndim == plane_dims + 1 else out[0]
