"""Label overlays: a fixed colour per label id, and the check that a label volume fits the image (no Qt)."""

from __future__ import annotations

import numpy as np

from kdviewer.errors import KdviewerError
from kdviewer.study.volume import Volume

# Colours of labels 1..10 (RGB); label 0 is transparent, labels above 10 cycle through them.
LABEL_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),    # 1 red
    (60, 180, 75),    # 2 green
    (0, 130, 200),    # 3 blue
    (255, 225, 25),   # 4 yellow
    (245, 130, 48),   # 5 orange
    (145, 30, 180),   # 6 purple
    (70, 240, 240),   # 7 cyan
    (240, 50, 230),   # 8 magenta
    (210, 245, 60),   # 9 lime
    (250, 190, 212),  # 10 pink
)


class OverlayGridError(KdviewerError):
    """A label volume that does not lie on the image's grid."""


def label_lut() -> np.ndarray:
    """(256, 4) uint8 RGBA lookup table for uint8 labels: 0 transparent, others opaque colours."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for label in range(1, 256):
        lut[label, :3] = LABEL_COLORS[(label - 1) % len(LABEL_COLORS)]
        lut[label, 3] = 255
    return lut


LABEL_LUT = label_lut()


def label_array(array: np.ndarray) -> np.ndarray:
    """Labels as uint8 for the LUT (ids above 255 wrap to 1..255 so they stay visible)."""
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        array = np.rint(array)
    labels = array.astype(np.int64, copy=False)
    return np.where(labels > 0, (labels - 1) % 255 + 1, 0).astype(np.uint8)


def check_overlay_grid(image: Volume | None, labels: Volume) -> None:
    """Raise OverlayGridError unless `labels` is an integer volume on exactly `image`'s grid."""
    source = labels.info.source or "overlay"
    if image is None:
        raise OverlayGridError(f"{source}: open an image before its overlay")
    if labels.is_color:
        raise OverlayGridError(f"{source}: an overlay must be a label volume, not a colour image")
    if not image.same_grid(labels):
        raise OverlayGridError(
            f"{source}: the overlay is on another grid (shape {labels.shape}, spacing "
            f"{tuple(round(s, 3) for s in labels.spacing)}) than the image (shape {image.shape}, "
            f"spacing {tuple(round(s, 3) for s in image.spacing)})")


def blend_overlay(rgba: np.ndarray, labels: np.ndarray, opacity: float) -> np.ndarray:
    """Blend label colours over an (h, w, 4) uint8 image in place where labels > 0; returns it."""
    mask = labels > 0
    if opacity <= 0 or not mask.any():
        return rgba
    colors = LABEL_LUT[labels[mask]][:, :3].astype(np.float32)
    base = rgba[mask][:, :3].astype(np.float32)
    rgba[mask, :3] = np.rint(base * (1 - opacity) + colors * opacity).astype(np.uint8)
    return rgba


def label_outline(labels: np.ndarray) -> np.ndarray:
    """The boundary pixels of each region of a (h, w) label plane (others 0): the overlay's outline mode."""
    labels = np.asarray(labels)
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    inner = ((padded[:-2, 1:-1] == centre) & (padded[2:, 1:-1] == centre)
             & (padded[1:-1, :-2] == centre) & (padded[1:-1, 2:] == centre))
    return np.where(inner, 0, labels).astype(labels.dtype, copy=False)


def heat_lut() -> np.ndarray:
    """(256, 4) uint8 RGBA lookup table for a uint8 saliency map: transparent at 0, dark red to yellow."""
    t = np.linspace(0.0, 1.0, 256)
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, 0] = np.rint(255 * np.clip(0.35 + 1.3 * t, 0, 1))
    lut[:, 1] = np.rint(255 * np.clip(1.6 * t - 0.45, 0, 1))
    lut[:, 2] = np.rint(255 * np.clip(3.0 * t - 2.2, 0, 1))
    lut[:, 3] = np.rint(255 * np.clip(1.2 * t, 0, 0.6))  # low saliency fades out; the image shows through
    return lut


HEAT_LUT = heat_lut()
