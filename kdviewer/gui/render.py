"""Headless rendering of one view to RGBA pixels: what `kdviewer screenshot` and "Export view" write.

The slice views draw the same plane (`planes.plane`), through the same window bounds
(`window_bounds`, as pyqtgraph levels) and the same label colours (`overlay.LABEL_LUT`), so a
screenshot shows what the window shows. Pixels are resampled nearest-neighbour to square
millimetres (the pixel aspect comes from the spacing), centred on a black canvas of `size`.
"""

from __future__ import annotations

import numpy as np

from kdviewer.gui import planes
from kdviewer.gui.geometry import display_geometry
from kdviewer.gui.overlay import blend_overlay, check_overlay_grid, label_array
from kdviewer.imaging.window import auto_window, window_to_uint8
from kdviewer.study.volume import Volume


def grey_to_rgba(plane: np.ndarray, center: float, width: float) -> np.ndarray:
    """(h, w) values or (h, w, 3) colour to (h, w, 4) uint8 RGBA through the window (colour: as is if uint8)."""
    if plane.ndim == 3:
        rgb = plane[..., :3] if plane.dtype == np.uint8 else window_to_uint8(plane[..., :3], center, width)
    else:
        grey = window_to_uint8(plane, center, width)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    rgba = np.empty(plane.shape[:2] + (4,), dtype=np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = 255
    return rgba


def fit_size(rows: int, cols: int, pixel_mm: tuple[float, float],
             size: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """(draw_w, draw_h, canvas_w, canvas_h) in screen pixels for a plane of rows x cols pixels.

    Without `size` the canvas is the plane at the finer of its two pixel sizes; with `size` (w, h)
    the plane is scaled to fit inside it, keeping its aspect in mm.
    """
    height_mm, width_mm = rows * pixel_mm[0], cols * pixel_mm[1]
    if size is None:
        mm_per_px = min(pixel_mm)
        draw_w, draw_h = round(width_mm / mm_per_px), round(height_mm / mm_per_px)
        return draw_w, draw_h, draw_w, draw_h
    canvas_w, canvas_h = size
    scale = min(canvas_w / width_mm, canvas_h / height_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale)), canvas_w, canvas_h


def resample_nearest(image: np.ndarray, draw_w: int, draw_h: int) -> np.ndarray:
    """Nearest-neighbour resize of (h, w, ...) to (draw_h, draw_w, ...) (pixel centres sampled)."""
    rows = np.minimum((np.arange(draw_h) + 0.5) * image.shape[0] / draw_h, image.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(draw_w) + 0.5) * image.shape[1] / draw_w, image.shape[1] - 1).astype(int)
    return image[rows][:, cols]


def render_view(volume: Volume, view: str = "axial", slice_index: int | None = None,
                window: tuple[float, float] | None = None, overlay: Volume | None = None,
                overlay_opacity: float = 0.5, size: tuple[int, int] | None = None) -> np.ndarray:
    """One view of `volume` as (h, w, 4) uint8 RGBA, radiological orientation, aspect from the spacing.

    slice_index: in the view's LPS slice order (None: the middle slice); window: (center, width) in
    the volume's units (None: the file's own window, else an automatic one); overlay: a label volume
    on the same grid (raises OverlayGridError otherwise); size: (w, h) canvas in pixels.
    """
    from kdviewer.gui.viewer_state import ViewerState

    state = ViewerState()
    state.set_volume(volume)
    if view not in state.views:
        raise ValueError(f"a 2-D image has only the axial view, not {view!r}")
    planes.check_view(view)
    count = state.slice_count(view)
    index = count // 2 if slice_index is None else int(slice_index)
    if not 0 <= index < count:
        raise ValueError(f"slice {index} is outside 0..{count - 1} of the {view} view")
    center, width = state.window if window is None else window
    rgba = grey_to_rgba(state.plane(view, index), center, width)
    if overlay is not None:
        check_overlay_grid(volume, overlay)
        labels = planes.plane(display_geometry(volume).to_lps(label_array(overlay.array)), view, index)
        blend_overlay(rgba, labels, overlay_opacity)
    draw_w, draw_h, canvas_w, canvas_h = fit_size(rgba.shape[0], rgba.shape[1], state.pixel_size_mm(view), size)
    drawn = resample_nearest(rgba, draw_w, draw_h)
    if (canvas_w, canvas_h) == (draw_w, draw_h):
        return np.ascontiguousarray(drawn)
    canvas = np.zeros((canvas_h, canvas_w, 4), dtype=np.uint8)
    canvas[..., 3] = 255
    top, left = (canvas_h - draw_h) // 2, (canvas_w - draw_w) // 2
    canvas[top:top + draw_h, left:left + draw_w] = drawn
    return canvas


def thumbnail_uint8(plane: np.ndarray, size: int = 64) -> np.ndarray:
    """A small (h, w[, 3]) uint8 picture of a (y, x[, 3]) slice, automatic window, longest side `size`."""
    plane = np.asarray(plane)
    if plane.ndim == 3 and plane.dtype == np.uint8:
        image = plane[..., :3]
    else:
        center, width = auto_window(plane)
        image = window_to_uint8(plane, center, width)
    scale = size / max(image.shape[:2])
    draw_h, draw_w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    return np.ascontiguousarray(resample_nearest(image, draw_w, draw_h))
