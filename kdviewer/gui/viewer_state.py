"""What the viewer shows, without Qt: the volume in LPS order, the cursor, the window, the overlay.

Like a napari layer, `ViewerState` is a plain object a test can drive without a window; widgets
listen to its events (`state.listen(callback)`, called with an event name) and draw what it says.
Events: "volume", "cursor", "window", "overlay", "layout".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kdviewer.gui import planes
from kdviewer.gui.geometry import DisplayGeometry, display_geometry
from kdviewer.gui.overlay import check_overlay_grid, label_array
from kdviewer.imaging.window import PRESETS, Window, auto_window
from kdviewer.study.volume import Volume

LAYOUTS = ("1x3", "2x2", "single")
FILE_PRESET = "file"  # the name under which the file's own (or an automatic) window is offered


@dataclass(frozen=True)
class Readout:
    """The voxel under the mouse: value (with units), LPS position in mm and the file's voxel index."""

    value: float | tuple[float, ...]
    units: str
    lps_mm: tuple[float, float, float]
    index_xyz: tuple[int, int, int]

    def text(self) -> str:
        """One status-bar line, e.g. "-1000 HU   (12.3, -45.6, 78.9) mm LPS   voxel (10, 20, 30)"."""
        if isinstance(self.value, tuple):
            value = "(" + ", ".join(f"{v:g}" for v in self.value) + ")"
        else:
            value = f"{self.value:g}"
        units = f" {self.units}" if self.units else ""
        x, y, z = self.lps_mm
        return (f"{value}{units}   ({x:.1f}, {y:.1f}, {z:.1f}) mm LPS   "
                f"voxel {tuple(int(v) for v in self.index_xyz)}")


class ViewerState:
    """The model behind the slice views: one volume, its cursor, window and overlay."""

    def __init__(self) -> None:
        self.volume: Volume | None = None
        self.geometry: DisplayGeometry | None = None
        self.cursor: tuple[int, int, int] = (0, 0, 0)  # LPS index (k, j, i) = (z, y, x)
        self.window: Window = Window(40.0, 400.0)
        self.presets: dict[str, Window] = {}
        self.overlay: Volume | None = None
        self.overlay_lps: np.ndarray | None = None  # uint8 labels in LPS order
        self.overlay_opacity: float = 0.5
        self.overlay_visible: bool = True
        self.overlay_version: int = 0  # bumped whenever overlay_lps changes, for views' caches
        self.layout: str = "1x3"
        self.preview: bool = False  # the volume is a one-slice stand-in while a series loads
        self._listeners: list[Callable[[str], None]] = []

    # -- events ------------------------------------------------------------------------------
    def listen(self, callback: Callable[[str], None]) -> None:
        """Call `callback(event_name)` after every change."""
        self._listeners.append(callback)

    def unlisten(self, callback: Callable[[str], None]) -> None:
        """Stop calling `callback` (a closed view); nothing happens when it was not listening."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _emit(self, event: str) -> None:
        for callback in list(self._listeners):
            callback(event)

    # -- volume ------------------------------------------------------------------------------
    @property
    def array_lps(self) -> np.ndarray:
        """The displayed array (z, y, x[, c]) in LPS order: a view of the volume's array."""
        if self.geometry is None:
            raise RuntimeError("no volume loaded")
        return self.geometry.array_lps

    @property
    def views(self) -> tuple[str, ...]:
        """The views that make sense for the volume: axial only for a 2-D image."""
        if self.volume is not None and self.volume.is_2d:
            return ("axial",)
        return planes.VIEWS

    def set_volume(self, volume: Volume, preview: bool = False) -> None:
        """Show `volume`: cursor at its centre, its own window (or an automatic one); drops the overlay.

        preview: `volume` is one slice shown while the whole series decodes (the layout stays).
        """
        self.volume = volume
        self.preview = preview
        self.geometry = display_geometry(volume)
        self.cursor = tuple(s // 2 for s in self.array_lps.shape[:3])  # type: ignore[assignment]
        self.overlay = None
        self.overlay_lps = None
        self.overlay_version += 1
        self.presets = self._presets_for(volume)
        self.window = self.presets[self.default_preset()]
        self._emit("volume")

    def default_preset(self) -> str:
        """The window a new volume opens with: the file's own; for CT without one, abdomen."""
        info = self.volume.info
        if not info.window_presets and info.units == "HU" and "abdomen" in self.presets:
            return "abdomen"
        return FILE_PRESET

    def _presets_for(self, volume: Volume) -> dict[str, Window]:
        """The file's own window first (or an automatic one), then the CT presets for images in HU."""
        presets: dict[str, Window] = {}
        own = volume.info.window_presets
        if own:
            presets[FILE_PRESET] = Window(own[0].center, own[0].width)
        elif volume.is_color:
            presets[FILE_PRESET] = Window(127.5, 256.0)
        else:
            step = max(1, volume.array.shape[0] // 16)
            presets[FILE_PRESET] = auto_window(volume.array[::step])
        if volume.info.units == "HU" or volume.info.modality == "CT":
            presets.update(PRESETS)
        return presets

    # -- slices and cursor -------------------------------------------------------------------
    def slice_count(self, view: str) -> int:
        """Number of slices of `view`."""
        return planes.slice_count(self.array_lps.shape, view)

    def slice_index(self, view: str) -> int:
        """Current slice of `view` (from the cursor)."""
        return planes.cursor_to_plane(self.cursor, self.array_lps.shape[0], view)[0]

    def set_slice(self, view: str, index: int) -> None:
        """Move `view` to slice `index` (clamped); the other views' crosshairs follow."""
        index = int(np.clip(index, 0, self.slice_count(view) - 1))
        cursor = list(self.cursor)
        cursor[planes.SLICE_AXIS[view]] = index
        self._set_cursor(tuple(cursor))  # type: ignore[arg-type]

    def scroll(self, view: str, steps: int) -> None:
        """Step `view` by `steps` slices (positive: toward higher indices)."""
        self.set_slice(view, self.slice_index(view) + steps)

    def click(self, view: str, row: float, col: float) -> None:
        """Put the crosshair on pixel (row, col) of `view`: the other two views change slice."""
        rows, cols = self.plane(view).shape[:2]
        r = int(np.clip(np.floor(row), 0, rows - 1))
        c = int(np.clip(np.floor(col), 0, cols - 1))
        self._set_cursor(planes.plane_to_cursor(view, self.slice_index(view), r, c, self.array_lps.shape[0]))

    def _set_cursor(self, cursor: tuple[int, int, int]) -> None:
        if cursor != self.cursor:
            self.cursor = cursor
            self._emit("cursor")

    def crosshair(self, view: str) -> tuple[int, int]:
        """(row, col) of the crosshair in `view`."""
        _, row, col = planes.cursor_to_plane(self.cursor, self.array_lps.shape[0], view)
        return row, col

    def plane(self, view: str, index: int | None = None) -> np.ndarray:
        """The grey (or colour) plane shown by `view`: (rows, cols[, c]), a view of the volume."""
        index = self.slice_index(view) if index is None else index
        return planes.plane(self.array_lps, view, index)

    def overlay_plane(self, view: str, index: int | None = None) -> np.ndarray | None:
        """The uint8 label plane of `view`, or None without an overlay."""
        if self.overlay_lps is None:
            return None
        index = self.slice_index(view) if index is None else index
        return planes.plane(self.overlay_lps, view, index)

    def pixel_size_mm(self, view: str) -> tuple[float, float]:
        """(row height, col width) in mm for `view`."""
        return planes.pixel_size_mm(self.geometry.spacing_lps, view)

    # -- window ------------------------------------------------------------------------------
    def set_window(self, center: float, width: float) -> None:
        """Show values through the window (center, width); width at least 1."""
        self.window = Window(float(center), max(1.0, float(width)))
        self._emit("window")

    def apply_preset(self, name: str) -> None:
        """Switch to a named preset ("file", "lung", "mediastinum", ...)."""
        self.set_window(*self.presets[name])

    def drag_window(self, dx_px: float, dy_px: float) -> None:
        """Window by mouse drag: right widens, left narrows; down raises the level (darker image)."""
        step = max(self.window.width, 10.0) / 256.0
        self.set_window(self.window.center + dy_px * step, self.window.width + dx_px * step)

    # -- overlay -----------------------------------------------------------------------------
    def set_overlay(self, labels: Volume | None) -> None:
        """Show an integer label volume on the image's grid (raises OverlayGridError otherwise)."""
        if labels is None:
            self.overlay, self.overlay_lps = None, None
        else:
            check_overlay_grid(self.volume, labels)
            self.overlay = labels
            self.overlay_lps = self.geometry.to_lps(label_array(labels.array))
        self.overlay_version += 1
        self._emit("overlay")

    def set_overlay_opacity(self, opacity: float) -> None:
        """Overlay opacity 0..1."""
        self.overlay_opacity = float(np.clip(opacity, 0.0, 1.0))
        self._emit("overlay")

    def set_overlay_visible(self, visible: bool) -> None:
        """Show or hide the overlay."""
        self.overlay_visible = bool(visible)
        self._emit("overlay")

    # -- layout and readout ------------------------------------------------------------------
    def set_layout(self, layout: str) -> None:
        """One of LAYOUTS (the grid shows a 2-D image alone whatever the layout)."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        self._emit("layout")

    def readout(self, view: str, row: float, col: float) -> Readout | None:
        """The voxel under pixel (row, col) of `view`, or None outside the image."""
        plane = self.plane(view)
        r, c = int(np.floor(row)), int(np.floor(col))
        if not (0 <= r < plane.shape[0] and 0 <= c < plane.shape[1]):
            return None
        value = plane[r, c]
        value = tuple(float(v) for v in value) if np.ndim(value) else float(value)
        kji = planes.plane_to_cursor(view, self.slice_index(view), r, c, self.array_lps.shape[0])
        index_xyz = self.geometry.original_index_xyz(kji)
        lps = self.volume.index_to_lps(index_xyz)
        return Readout(value, self.volume.info.units, tuple(float(v) for v in lps), index_xyz)
