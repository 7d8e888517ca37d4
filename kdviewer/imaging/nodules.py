"""Lung masks and simulated lung nodules in chest CT (HU), for training nodule segmentation without labels.

`lung_mask` finds the lungs by thresholding; `insert_nodules` draws 1–3 synthetic nodules inside them and
returns the image with the nodules and their mask. Both take an (H, W) slice or a (z, y, x) volume.

The nodule model (all sizes in mm, from `spacing_mm`):

- Shape: an ellipsoid (axis ratios 0.7–1, random orientation) whose radius varies smoothly with
  direction, r(u) = r0 · (1 + Σ_j a_j cos(k_j·π·(u·v_j) + φ_j)) with a few random unit vectors v_j and
  low frequencies k_j ∈ [0.5, 2]: a lobulated, not spiky, outline. `diameter_mm` is the nominal diameter
  2·r0 (geometric mean of the axes); the drawn outline stays within ±20 % of it.
- Partial volume: the occupancy f(x) ∈ [0, 1] falls off across the outline as an error function with
  a width of 0.4–0.9 mm (solid) or 0.8–2 mm (ground glass), so edges are soft as in a reconstructed CT.
- Intensity: solid 0…60 HU, ground glass −600…−300 HU; part-solid = a ground-glass nodule with a solid
  core of 30–60 % of its diameter. Solid parts get correlated noise and a faint low-frequency texture
  scaled to the CT noise of the lung (the robust std of the image's high-pass), so they are not flat.
  Solid blending is a partial-volume mix that never darkens: new = max(orig, (1 − f)·orig + f·tissue),
  tissue = level + texture + noise (vessels and the chest wall stay where they are brighter).
  Ground-glass blending is additive, so the lung texture shows through: new = orig + f·(level − bg)·w,
  bg = the median lung HU around the nodule, w = 1 at the parenchyma level falling to 0 at soft tissue
  (0 HU): vessels inside a ground-glass opacity are not brightened.
- Placement: the centre is drawn so that the whole outline lies inside the lung mask (distance to the
  mask's edge ≥ the largest radius + the edge width), nodules apart from each other; with probability
  `juxta_pleural` (default 0.25) the nodule is pushed against the edge instead (centre at 0.8–1.0 of
  its radius from it): a juxta-pleural nodule touching the chest wall or mediastinum.
- The mask (uint8, 1 = nodule) is where the nodule raises the HU by at least half of its contrast
  (level − bg, the raise computed without noise or texture; for part-solid nodules the ground-glass
  part's), holes filled, inside the lung mask. So a
  part over the chest wall or a vessel that is already brighter is not labelled, and the label is
  what a reader would outline at the half-maximum of the edge.

All randomness comes from the `rng` argument: the same seed gives the same nodules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import erfc

NODULE_KINDS = ("solid", "part_solid", "ground_glass")
SOLID_HU = (0.0, 60.0)
GROUND_GLASS_HU = (-600.0, -300.0)
SOFT_TISSUE_HU = 0.0
LUNG_THRESHOLD_HU = -400.0


def lung_mask(image_hu: np.ndarray, threshold_hu: float = LUNG_THRESHOLD_HU, closing_px: int = 2) -> np.ndarray:
    """The lungs of an (H, W) slice or (z, y, x) volume in HU: bool array of the same shape.

    Air below `threshold_hu`, minus the air outside the body (components touching the in-plane border,
    per slice, which also removes the scanner's padding); the two largest remaining components (3-D
    components for a volume; the trachea joins them there); holes filled per slice (vessels, nodules)
    and a light closing (`closing_px` pixels, per slice) to smooth the outline.
    """
    img = np.asarray(image_hu)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) slice or a (z, y, x) volume in HU, got shape {img.shape}")
    vol = img[None] if img.ndim == 2 else img
    inside = np.stack([_inside_air(sl, threshold_hu) for sl in vol])
    labels, n = ndimage.label(inside)
    if n == 0:
        return np.zeros(img.shape, dtype=bool)
    sizes = ndimage.sum_labels(inside, labels, index=np.arange(1, n + 1))
    keep = np.argsort(sizes)[::-1][:2] + 1
    lungs = np.isin(labels, keep)
    disk = _disk(closing_px)
    for k in range(len(lungs)):
        sl = ndimage.binary_closing(lungs[k], structure=disk, border_value=0) if closing_px > 0 else lungs[k]
        lungs[k] = ndimage.binary_fill_holes(sl)
    return lungs[0] if img.ndim == 2 else lungs


LUNG_GATE_MIN_AREA_CM2 = 10.0   # above the trachea and main bronchi (2-5 cm²)


def lung_region(image_hu: np.ndarray, spacing_xy: Sequence[float] | None, closing_mm: float,
                min_area_cm2: float = LUNG_GATE_MIN_AREA_CM2, min_lung_cm2: float = 0.0) -> np.ndarray:
    """Where a lung nodule may be, per slice, for gating a segmentation: bool array of the image's shape.

    Each (H, W) slice of an (H, W) image or (z, H, W) stack in HU: the air below `LUNG_THRESHOLD_HU` that does
    not touch the in-plane border (the air outside the body): its two largest components (as `lung_mask`: the
    lungs, however small at the apex or the bases) and every other one of at least `min_area_cm2` (a lung
    that the trachea or bowel gas outranks stays; smaller airways and gas fall out), closed by a disc of radius
    `closing_mm` (so that the notch a nodule on the pleura cuts into the lung is filled), holes filled.
    A slice whose kept air (before the closing) is under `min_lung_cm2` gets no region at all: below the lung
    bases the two largest air sections are bowel gas, and a gate that kept them would keep what lies in them.
    `spacing_xy` (column, row) mm; None: 1 mm pixels.
    """
    img = np.asarray(image_hu, dtype=np.float32)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) slice or a (z, H, W) stack in HU, got shape {img.shape}")
    sx, sy = (1.0, 1.0) if spacing_xy is None else (float(spacing_xy[0]), float(spacing_xy[1]))
    min_px = min_area_cm2 * 100.0 / (sx * sy)
    min_lung_px = min_lung_cm2 * 100.0 / (sx * sy)
    disk = _disk(int(round(closing_mm / min(sx, sy))))
    stack = img[None] if img.ndim == 2 else img
    out = np.zeros(stack.shape, dtype=bool)
    for k, sl in enumerate(stack):
        labels, n = ndimage.label(_inside_air(sl, LUNG_THRESHOLD_HU))
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
        sizes[0] = 0.0
        big = np.union1d(np.flatnonzero(sizes >= min_px), np.argsort(sizes)[::-1][:2])
        big = big[sizes[big] > 0]
        if sizes[big].sum() < min_lung_px:
            continue
        keep = np.isin(labels, big)
        if closing_mm > 0 and keep.any():
            keep = ndimage.binary_closing(keep, structure=disk, border_value=0)
        out[k] = ndimage.binary_fill_holes(keep)
    return out[0] if img.ndim == 2 else out


def _inside_air(slice_hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    """Air below `threshold_hu` in one (H, W) slice, without the components that touch the image border (the air
    outside the body and the scanner's padding)."""
    air = slice_hu < threshold_hu
    labels, _ = ndimage.label(air)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return air & ~np.isin(labels, border)


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy**2 + xx**2) <= r * r


@dataclass(frozen=True)
class Nodule:
    """One simulated nodule: centre (array index order), nominal diameter (mm), kind, HU levels."""

    center: tuple[float, ...]
    diameter_mm: float
    kind: str
    level_hu: float            # solid level, or the ground-glass level
    core_level_hu: float | None  # part-solid: the solid core's level
    juxta_pleural: bool


def _spacing_zyx(spacing_mm: Sequence[float], ndim: int) -> np.ndarray:
    """(x, y[, z]) mm in ITK order → per-axis spacing in array order ((y, x) or (z, y, x))."""
    sp = [float(s) for s in spacing_mm]
    if len(sp) < ndim:
        raise ValueError(f"spacing_mm needs {ndim} values (x, y{', z' if ndim == 3 else ''}), got {spacing_mm}")
    return np.array(sp[:ndim][::-1])


def _random_rotation(ndim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    return q * np.sign(np.diag(r))


def _unit_vectors(n: int, ndim: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, ndim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class _Shape:
    """A lobulated ellipsoid: `occupancy(offsets_mm)` gives f ∈ [0, 1] with a soft edge."""

    def __init__(self, radius_mm: float, edge_mm: float, ndim: int, rng: np.random.Generator, lobulation: float):
        self.r0 = radius_mm
        self.edge = edge_mm
        ratios = rng.uniform(0.7, 1.0, size=ndim)
        self.axes = radius_mm * ratios / np.prod(ratios) ** (1 / ndim)  # geometric mean = r0
        self.rot = _random_rotation(ndim, rng)
        m = 3
        self.v = _unit_vectors(m, ndim, rng)
        self.k = rng.uniform(0.5, 2.0, size=m)
        self.phase = rng.uniform(0, 2 * np.pi, size=m)
        self.a = rng.uniform(0, lobulation, size=m) / m * 2
        # the outline's largest radius: axes × (1 + Σ|a|)
        self.r_max = float(self.axes.max() * (1 + self.a.sum()))

    def occupancy(self, offsets_mm: np.ndarray) -> np.ndarray:
        """offsets_mm: (..., ndim) from the centre, array axis order; f (...) in [0, 1]."""
        local = offsets_mm @ self.rot  # into the ellipsoid's frame
        scaled = local / self.axes
        rho = np.linalg.norm(scaled, axis=-1)
        u = scaled / np.maximum(rho, 1e-9)[..., None]
        bump = np.cos(np.pi * self.k * (u @ self.v.T) + self.phase) @ self.a
        rho = rho / (1 + bump)
        # distance past the outline in mm (approximately: along the radius at the mean axis length)
        d_mm = (rho - 1.0) * self.r0
        return 0.5 * erfc(d_mm / (self.edge * np.sqrt(2.0)))


def _box(center: np.ndarray, half_px: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...]:
    lo = np.maximum(np.floor(center - half_px).astype(int), 0)
    hi = np.minimum(np.ceil(center + half_px).astype(int) + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _offsets_mm(box: tuple[slice, ...], center: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij")
    return np.stack([(g - c) * sp for g, c, sp in zip(grids, center, spacing, strict=True)], axis=-1)


def _highpass_sigma(a: np.ndarray, where: np.ndarray | None = None) -> float:
    """Robust std (1.4826·MAD) of a minus a Gaussian-smoothed (1 px) copy: the fine-grained noise level."""
    high = a - ndimage.gaussian_filter(a, 1.0)
    vals = high[where] if where is not None else high.ravel()
    return 1.4826 * float(np.median(np.abs(vals - np.median(vals)))) if vals.size else 0.0


def local_noise_hu(image_hu: np.ndarray, lung: np.ndarray) -> float:
    """The CT noise of the lung (HU): robust std of the image's high-pass (image − 1 px Gaussian) in the mask.

    The high-pass removes the anatomy and keeps the pixel noise; the median ignores vessel edges.
    """
    lung = np.asarray(lung, dtype=bool)
    if not lung.any():
        return 10.0
    return max(_highpass_sigma(np.asarray(image_hu, dtype=np.float32), lung), 1.0)


def _matched_noise(shape: tuple[int, ...], highpass_sigma_hu: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise blurred like a CT reconstruction's (0.7 px), scaled so that its high-pass has the
    same robust std as the image's (`local_noise_hu`): the nodule gets the grain of the scan around it."""
    n = ndimage.gaussian_filter(rng.normal(size=shape), 0.7)
    return (n * (highpass_sigma_hu / max(_highpass_sigma(n), 1e-6))).astype(np.float32)


def _pick_center(allowed: np.ndarray, placed: list[tuple[np.ndarray, float]], radius_mm: float,
                 spacing: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A random centre (array index units) among `allowed` pixels, ≥ 2 mm between this nodule's outline
    and every nodule already `placed` ((centre, largest radius mm) pairs); None when there is none."""
    idx = np.flatnonzero(allowed)
    if idx.size == 0:
        return None
    coords = np.stack(np.unravel_index(idx, allowed.shape), axis=1).astype(float)
    ok = np.ones(len(coords), dtype=bool)
    for c, r in placed:
        ok &= np.linalg.norm((coords - c) * spacing, axis=1) >= r + radius_mm + 2.0
    if not ok.any():
        return None
    return coords[int(rng.choice(np.flatnonzero(ok)))] + rng.uniform(-0.5, 0.5, size=allowed.ndim)


def insert_nodules(img_hu: np.ndarray, lung: np.ndarray, rng: np.random.Generator,
                   n: int | Sequence[int] = (1, 3), diameter_mm: Sequence[float] = (4.0, 20.0),
                   spacing_mm: Sequence[float] = (1.0, 1.0), kind: str | Sequence[str] = NODULE_KINDS,
                   juxta_pleural: float = 0.25, lobulation: float = 0.12,
                   return_nodules: bool = False):
    """Draw synthetic nodules inside the lungs of an (H, W) slice or (z, y, x) volume (module docstring).

    img_hu: HU image; lung: bool mask of the same shape (`lung_mask`); n: a count or an inclusive
    range [lo, hi]; diameter_mm: range of nominal diameters; spacing_mm: pixel size (x, y) for a slice,
    (x, y, z) for a volume (ITK order, as `Sample.spacing_mm` and `Volume.spacing`); kind: one kind or
    the kinds to draw from uniformly. A nodule that does not fit in the lungs is retried smaller, then
    left out, so fewer nodules (or none) can come back when the lungs are small.

    Returns (image float32 HU, mask uint8 {0, 1}) of the input's shape, and the list of `Nodule`s when
    `return_nodules`.
    """
    img = np.asarray(img_hu, dtype=np.float32).copy()
    lung = np.asarray(lung, dtype=bool)
    if lung.shape != img.shape or img.ndim not in (2, 3):
        raise ValueError(f"image {img.shape} and lung mask {lung.shape} must be the same (H, W) or (z, y, x)")
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    for k in kinds:
        if k not in NODULE_KINDS:
            raise ValueError(f"unknown nodule kind {k!r}; expected one of {NODULE_KINDS}")
    lo_n, hi_n = (int(n), int(n)) if isinstance(n, int | np.integer) else (int(n[0]), int(n[1]))
    d_lo, d_hi = float(diameter_mm[0]), float(diameter_mm[1])
    spacing = _spacing_zyx(spacing_mm, img.ndim)
    mask = np.zeros(img.shape, dtype=np.uint8)
    nodules: list[Nodule] = []
    count = int(rng.integers(lo_n, hi_n + 1))
    if count == 0 or not lung.any():
        return (img, mask, nodules) if return_nodules else (img, mask)
    dist_mm = ndimage.distance_transform_edt(lung, sampling=spacing)
    noise_hu = local_noise_hu(img, lung)
    placed: list[tuple[np.ndarray, float]] = []  # (centre, largest radius mm) of the nodules drawn
    for _ in range(count):
        for attempt in range(6):  # three draws from the whole range, then from ever smaller ones
            hi = d_hi if attempt < 3 else d_lo + (d_hi - d_lo) * 0.5 ** (attempt - 2)
            nodule = _try_one(img, mask, lung, dist_mm, placed, rng.uniform(d_lo, hi), kinds, spacing,
                              noise_hu, rng, juxta_pleural, lobulation)
            if nodule is not None:
                nodules.append(nodule)
                break
    return (img, mask, nodules) if return_nodules else (img, mask)


def _try_one(img: np.ndarray, mask: np.ndarray, lung: np.ndarray, dist_mm: np.ndarray,
             placed: list[tuple[np.ndarray, float]],
             diameter: float, kinds: tuple[str, ...], spacing: np.ndarray, noise_hu: float,
             rng: np.random.Generator, juxta_p: float, lobulation: float) -> Nodule | None:
    """Place, draw and label one nodule in place; None when it does not fit."""
    kind = kinds[int(rng.integers(len(kinds)))]
    ground_glass = kind != "solid"
    edge = rng.uniform(0.8, 2.0) if ground_glass else rng.uniform(0.4, 0.9)
    shape = _Shape(diameter / 2, edge, img.ndim, rng, lobulation)
    juxta = bool(rng.random() < juxta_p)
    reach = shape.r_max + edge
    if juxta:
        allowed = (dist_mm >= 0.8 * shape.r_max) & (dist_mm <= 1.0 * shape.r_max)
    else:
        allowed = dist_mm >= reach
    center = _pick_center(allowed, placed, shape.r_max, spacing, rng)
    if center is None:
        return None
    half_px = (reach + 3 * edge) / spacing + 1
    box = _box(center, half_px, img.shape)
    f = shape.occupancy(_offsets_mm(box, center, spacing)).astype(np.float32)
    orig = img[box]
    region_lung = lung[box]
    bg = float(np.median(orig[region_lung])) if region_lung.any() else -850.0
    bg = min(bg, -700.0)  # the parenchyma level, even when a vessel sits at the centre

    core_level = None
    if kind == "solid":
        level = rng.uniform(*SOLID_HU)
        new, clean_raise = _blend_solid(orig, f, level, noise_hu, rng)
    else:
        level = rng.uniform(*GROUND_GLASS_HU)
        w = np.clip((SOFT_TISSUE_HU - orig) / (SOFT_TISSUE_HU - bg), 0.0, 1.0)
        texture = _matched_noise(orig.shape, 0.3 * noise_hu, rng) * f
        new = orig + f * (level - bg) * w + texture
        clean_raise = f * (level - bg) * w
        if kind == "part_solid":
            core_level = rng.uniform(*SOLID_HU)
            core = _Shape(diameter / 2 * rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.9), img.ndim, rng, lobulation)
            offset = rng.normal(scale=0.15 * diameter / 2, size=img.ndim)  # core a little off-centre
            fc = core.occupancy(_offsets_mm(box, center + offset / spacing, spacing)).astype(np.float32)
            new, _ = _blend_solid(new, fc, core_level, noise_hu, rng)
    contrast = level - bg
    label = clean_raise >= 0.5 * contrast
    label = _fill_holes(label) & region_lung
    if not label.any():
        return None
    img[box] = new
    mask[box] |= label.astype(np.uint8)
    placed.append((center, shape.r_max))
    return Nodule(tuple(float(c) for c in center), float(diameter), kind, float(level),
                  None if core_level is None else float(core_level), juxta)


def _blend_solid(orig: np.ndarray, f: np.ndarray, level: float, noise_hu: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume mix of a solid nodule into `orig`, never darker than it (module docstring).

    Returns (new image, noise-free raise over orig = f·max(level − orig, 0))."""
    texture = ndimage.gaussian_filter(rng.normal(size=orig.shape), 2.0)
    texture = texture / max(float(texture.std()), 1e-6) * 8.0  # faint internal heterogeneity, ±8 HU
    tissue = level + texture + _matched_noise(orig.shape, noise_hu, rng)
    new = np.maximum(orig, (1.0 - f) * orig + f * tissue)
    return new.astype(np.float32), f * np.maximum(level - orig, 0.0)


def _fill_holes(label: np.ndarray) -> np.ndarray:
    if label.ndim == 2:
        return ndimage.binary_fill_holes(label)
    return np.stack([ndimage.binary_fill_holes(s) for s in label])
