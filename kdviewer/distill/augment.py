"""On-the-fly training augmentation, applied identically to an image and its masks (numpy + scipy).

Recipe keys ([data].augment): hflip, vflip (bool), rotate_deg (max |angle|), scale ([lo, hi] zoom),
intensity (max relative contrast/brightness change, images only), crop (fraction of each side kept by a
random crop that is resized back; 1 or absent: no crop), blur (max sigma in pixels of a Gaussian blur) and
noise (max sigma of additive Gaussian noise, relative to the image's standard deviation): each of the last
two on half of the draws, images only, as nnU-Net's default pipeline does, for scanners, doses and
reconstruction kernels that the training data lack. The caller passes a seeded generator, so a run is
repeatable; the validation set is never augmented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kdviewer.errors import KdviewerError

# Keys that change the image alone (no geometry): skipped by `augment_arrays(..., intensity=False)`.
IMAGE_ONLY_KEYS = ("intensity", "blur", "noise")


class AugmentConfigError(KdviewerError):
    """The recipe's [data].augment table has an unknown key or a bad value."""


@dataclass(frozen=True)
class AugmentConfig:
    """What augmentation to do (see the module docstring for the units)."""

    hflip: bool = False
    vflip: bool = False
    rotate_deg: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    intensity: float = 0.0
    crop: float = 1.0
    blur: float = 0.0
    noise: float = 0.0

    @classmethod
    def from_dict(cls, d: Mapping | None) -> AugmentConfig:
        """From the recipe table; raises `AugmentConfigError` naming an unknown key or a bad value."""
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise AugmentConfigError(f"data.augment: unknown key(s) {sorted(unknown)}; "
                                     f"expected {sorted(cls.__dataclass_fields__)}")
        try:
            cfg = cls(hflip=bool(d.get("hflip", False)), vflip=bool(d.get("vflip", False)),
                      rotate_deg=float(d.get("rotate_deg", 0.0)),
                      scale=tuple(float(s) for s in d.get("scale", (1.0, 1.0))),  # type: ignore[arg-type]
                      intensity=float(d.get("intensity", 0.0)),
                      crop=float(d.get("crop", 1.0) if d.get("crop", 1.0) not in (None, False, True) else 1.0),
                      blur=float(d.get("blur", 0.0)), noise=float(d.get("noise", 0.0)))
        except (TypeError, ValueError) as e:
            raise AugmentConfigError(f"data.augment: {e}") from e
        if len(cfg.scale) != 2 or not 0 < cfg.scale[0] <= cfg.scale[1]:
            raise AugmentConfigError(f"data.augment.scale must be [lo, hi] with 0 < lo <= hi, got {cfg.scale}")
        if not 0 < cfg.crop <= 1:
            raise AugmentConfigError(f"data.augment.crop must be a fraction in (0, 1], got {cfg.crop}")
        for key in ("blur", "noise", "intensity", "rotate_deg"):
            if not getattr(cfg, key) >= 0:
                raise AugmentConfigError(f"data.augment.{key} must be >= 0, got {getattr(cfg, key)}")
        return cfg

    @property
    def is_identity(self) -> bool:
        return self == AugmentConfig()

    @property
    def flips_only(self) -> bool:
        """Nothing but left-right / up-down flips (or nothing): pixels move without interpolation."""
        return self == AugmentConfig(hflip=self.hflip, vflip=self.vflip)


def _affine(shape_hw: tuple[int, int], angle_deg: float, zoom: float, crop_center_shift: np.ndarray,
            crop: float) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset mapping output (row, col) to input coordinates (scipy's convention)."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = rot * (crop / zoom)
    centre = (np.asarray(shape_hw, dtype=float) - 1) / 2
    offset = centre + crop_center_shift - m @ centre
    return m, offset


def draw_flips(cfg: AugmentConfig, rng: np.random.Generator) -> tuple[bool, bool]:
    """(left-right, up-down): the flips `augment_arrays` draws first, from the same generator calls (so a
    caller that applies them itself draws what `augment_arrays` would have)."""
    hflip = cfg.hflip and rng.random() < 0.5
    vflip = cfg.vflip and rng.random() < 0.5
    return bool(hflip), bool(vflip)


def _warp_mask(mask: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    if mask.ndim == 3:  # class shares: linear, as the image
        return np.stack([ndimage.affine_transform(c, matrix, offset, order=1, mode="nearest") for c in mask])
    return ndimage.affine_transform(mask.astype(np.uint8), matrix, offset, order=0, mode="constant").astype(mask.dtype)


def augment_arrays(image: np.ndarray, masks: list[np.ndarray | None], cfg: AugmentConfig,
                   rng: np.random.Generator, intensity: bool = True) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Augment a (C, H, W) float32 image and its masks with the same geometry.

    The image is interpolated linearly (edges repeat); (H, W) masks by nearest neighbour (outside: 0 / False);
    (K, H, W) float class shares (soft masks) linearly, edges repeating as the image's do.
    `intensity` False skips the changes of the image alone (contrast/brightness, blur, noise; e.g. for
    restoration targets).
    Returns (image, masks) of the same shapes and dtypes.
    """
    if cfg.is_identity:
        return image, masks
    h, w = image.shape[-2:]
    hflip, vflip = draw_flips(cfg, rng)
    if hflip:
        image, masks = image[..., ::-1], [None if m is None else m[..., ::-1] for m in masks]
    if vflip:
        image, masks = image[..., ::-1, :], [None if m is None else m[..., ::-1, :] for m in masks]
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg) if cfg.rotate_deg else 0.0
    zoom = rng.uniform(*cfg.scale) if cfg.scale != (1.0, 1.0) else 1.0
    shift = np.zeros(2)
    if cfg.crop < 1:
        shift = (rng.random(2) - 0.5) * (1 - cfg.crop) * np.array([h, w], dtype=float)
    if angle or zoom != 1.0 or cfg.crop < 1:
        m, off = _affine((h, w), angle, zoom, shift, cfg.crop)
        image = np.stack([ndimage.affine_transform(c, m, off, order=1, mode="nearest") for c in image])
        masks = [None if k is None else _warp_mask(k, m, off) for k in masks]
    image = np.ascontiguousarray(image, dtype=np.float32)
    if intensity and cfg.intensity:
        contrast = 1 + rng.uniform(-cfg.intensity, cfg.intensity)
        brightness = rng.uniform(-cfg.intensity, cfg.intensity) * float(np.std(image) or 1.0)
        image = (image - image.mean()) * contrast + image.mean() + brightness
    if intensity and cfg.blur and rng.random() < 0.5:
        sigma = rng.uniform(0.0, cfg.blur)
        image = np.stack([ndimage.gaussian_filter(c, sigma, mode="nearest") for c in image])
    if intensity and cfg.noise and rng.random() < 0.5:
        sigma = rng.uniform(0.0, cfg.noise) * float(np.std(image) or 1.0)
        image = image + rng.normal(0.0, sigma, image.shape)
    return image.astype(np.float32), [None if k is None else np.ascontiguousarray(k) for k in masks]
