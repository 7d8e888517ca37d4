"""The values every labelled-data reader returns: `Sample`, `Item`, `LabelledDataset`, and its error.

Readers of the layouts (`datasets_flat.py`, `datasets_volume.py`) build these; `datasets.py` is the
one way in. Torch-free, so the runtime (`kdviewer evaluate`) and `distill` read data the same way.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdviewer.errors import KdviewerError

LAYOUTS = ("medmnist", "class_folders", "image_mask_pairs", "drive", "volume_labels", "plain_images")


class DatasetLayoutError(KdviewerError):
    """A folder fits no known data-set layout, or a file of a layout is missing or unreadable."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True, eq=False)
class Sample:
    """One decoded 2-D example.

    image: (H, W) or (H, W, 3), uint8 or float32 (CT slices: float32 HU).
    label: class index or None. mask: (H, W) uint8 label map (0 = background) or None.
    fov: (H, W) bool field of view or None. spacing_mm: (x, y) pixel size or None.
    """

    image: np.ndarray
    label: int | None = None
    mask: np.ndarray | None = None
    fov: np.ndarray | None = None
    spacing_mm: tuple[float, float] | None = None


@dataclass(frozen=True, eq=False)
class Item:
    """One example not yet decoded: `load()` reads it.

    key: stable id (e.g. "train/17", "benign/benign (20)", "case/42"); group: patient or case id used to
    keep related items on one side of a split (None: every item is its own group); slice_index: the
    slice number within its volume (None for 2-D images).
    """

    key: str
    loader: Callable[[], Sample] = field(repr=False)
    label: int | None = None
    group: str | None = None
    slice_index: int | None = None
    hasher: Callable[[], str] | None = field(default=None, repr=False)
    stacker: Callable[[int], np.ndarray] | None = field(default=None, repr=False)

    def load(self) -> Sample:
        """Decode the example."""
        return self.loader()

    def content_hash(self) -> str:
        """SHA-1 of the image content (file bytes or array bytes), for removing identical images."""
        if self.hasher is not None:
            return self.hasher()
        return array_hash(self.load().image)

    def load_slices(self, n: int) -> np.ndarray:
        """(n, H, W) float32: this slice and its neighbours (odd n, centred; edges repeat).

        For 2-D images (no volume) the image repeated n times (grey level), so 2.5-D inputs still work.
        """
        if self.stacker is not None:
            return self.stacker(n)
        img = np.asarray(self.load().image, dtype=np.float32)
        if img.ndim == 3:
            img = img.mean(axis=-1)
        return np.repeat(img[None], n, axis=0)


def array_hash(a: np.ndarray) -> str:
    """SHA-1 of an array's shape, dtype and bytes."""
    h = hashlib.sha1(str((a.shape, a.dtype.str)).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def file_hash(path: Path) -> str:
    """SHA-1 of a file's bytes."""
    return hashlib.sha1(path.read_bytes()).hexdigest()


@dataclass(frozen=True, eq=False)
class LabelledDataset:
    """A data set on disk, read by one layout.

    layout: one of `LAYOUTS`; task_hint: "classify" | "segment" | "restore"; class_names: names of the
    image labels `Item.label` (empty when the data has none); mask_names: names of the mask values
    (index 0 = background; empty without masks); splits: the split names present ("train", "val",
    "test", or "all" when the data has none).
    """

    path: Path
    layout: str
    task_hint: str
    class_names: tuple[str, ...]
    split_items: dict[str, list[Item]] = field(repr=False)
    notes: tuple[str, ...] = ()
    mask_names: tuple[str, ...] = ()

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_items)

    @property
    def name(self) -> str:
        """The data set's folder name (the folder holding a given file)."""
        return (self.path.parent if self.path.is_file() else self.path).name

    def items(self, split: str) -> list[Item]:
        """The items of one split, in a stable order."""
        if split not in self.split_items:
            raise DatasetLayoutError(self.path, f"no split {split!r}; present: {', '.join(self.splits)}")
        return list(self.split_items[split])

    def summary(self) -> str:
        """One paragraph: layout, what each split holds (per class, cases, slices)."""
        parts = [f"{self.name}: layout {self.layout} ({self.task_hint})"]
        for split, items in self.split_items.items():
            parts.append(f"{split}: {_describe(items, self.class_names, self.layout)}")
        parts.extend(self.notes)
        return "; ".join(parts) + "."


def _describe(items: list[Item], class_names: tuple[str, ...], layout: str) -> str:
    slices = [it for it in items if it.slice_index is not None]
    if slices:
        cases = Counter(it.group for it in slices)
        text = f"{len(slices)} slices in {len(cases)} case(s) (" + ", ".join(f"{c}: {k}" for c, k in cases.items()) + ")"
        rest = len(items) - len(slices)
        return text + (f" and {rest} 2-D image(s)" if rest else "")
    n = len(items)
    labelled = [it.label for it in items if it.label is not None]
    what = "pairs" if layout in ("image_mask_pairs", "drive") else "images"
    if labelled and class_names:
        per = Counter(labelled)
        return f"{n} {what} (" + ", ".join(f"{class_names[k]}: {per[k]}" for k in sorted(per)) + ")"
    return f"{n} {what}"
