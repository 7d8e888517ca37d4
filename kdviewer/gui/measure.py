"""Distance measurements on a view, in millimetres (no Qt).

View coordinates are millimetres already (the images are placed with their pixel size in mm), so a
distance is the Euclidean length between two view points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    """A line drawn on slice `slice_index` of `view`, ends (x, y) in view millimetres."""

    view: str
    slice_index: int
    start_mm: tuple[float, float]
    end_mm: tuple[float, float]

    @property
    def length_mm(self) -> float:
        """Length of the line in mm."""
        return distance_mm(self.start_mm, self.end_mm)

    def label(self) -> str:
        """Text shown beside the line, e.g. "42.3 mm"."""
        return f"{self.length_mm:.1f} mm"


def distance_mm(start_mm: tuple[float, float], end_mm: tuple[float, float]) -> float:
    """Euclidean distance between two points given in mm."""
    return math.hypot(end_mm[0] - start_mm[0], end_mm[1] - start_mm[1])


def pixel_to_mm(row: float, col: float, pixel_mm: tuple[float, float]) -> tuple[float, float]:
    """View point (x, y) in mm of the continuous pixel position (row, col) with (row, col) pixel size."""
    return col * pixel_mm[1], row * pixel_mm[0]
