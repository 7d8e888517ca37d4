"""Labelled data sets, torch-free: find a folder's layout, open it, split it.

The one way in for `distill` (training) and `runtime` (`kdviewer evaluate`):

    ds = open_dataset(path)            # layout detected
    print(ds.summary())
    train, val = split_items(ds.items("all"), 0.1, seed=0)
    sample = train[0].load()           # Sample: image, label, mask, fov, spacing_mm

Layouts (DESIGN.md "Data, honestly"): medmnist, class_folders, image_mask_pairs, drive, volume_labels,
plain_images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kdviewer.study.datasets_base import LAYOUTS, DatasetLayoutError, Item, LabelledDataset, Sample
from kdviewer.study.datasets_flat import (
    find_class_roots,
    find_drive_parts,
    find_mask_pairs,
    find_medmnist_npz,
    read_class_folders,
    read_drive,
    read_mask_pairs,
    read_medmnist,
)
from kdviewer.study.datasets_readme import dataset_name, readme_licence
from kdviewer.study.datasets_split import (
    ItemSplit,
    deduplicate,
    limit_items,
    recipe_split,
    slice_ranges,
    split_items,
    training_pool,
)
from kdviewer.study.datasets_volume import (
    find_cases,
    find_plain_sources,
    read_plain_images,
    read_volume_labels,
)

__all__ = [
    "LAYOUTS", "DatasetLayoutError", "Item", "ItemSplit", "LabelledDataset", "Sample", "dataset_name", "deduplicate",
    "detect_layout", "limit_items", "open_dataset", "readme_licence", "recipe_split", "slice_ranges", "split_items",
    "training_pool",
]

_READERS: dict[str, Callable[[Path], LabelledDataset]] = {
    "medmnist": read_medmnist,
    "class_folders": read_class_folders,
    "image_mask_pairs": read_mask_pairs,
    "drive": read_drive,
    "volume_labels": read_volume_labels,
    "plain_images": read_plain_images,
}

_LOOKED_FOR = (
    "a MedMNIST .npz with train_images/train_labels; DRIVE images/ + 1st_manual/ (+ mask/); "
    "a label volume (name with mask/label/seg, NIfTI or .npz) beside a DICOM folder or NIfTI; "
    "image + <name>_mask.png pairs; two or more class sub-folders of images (optionally under train/ val/); "
    "image files, DICOM series or NIfTI volumes"
)


def detect_layout(path: str | Path) -> str:
    """The layout of a data folder (or `.npz` file): one of `LAYOUTS`.

    Checked in this order, the first that fits wins: medmnist, drive, volume_labels, image_mask_pairs,
    class_folders, plain_images. Raises `DatasetLayoutError` naming what was looked for.
    """
    p = Path(path)
    if not p.exists():
        raise DatasetLayoutError(p, "no such file or folder")
    if find_medmnist_npz(p) is not None:
        return "medmnist"
    if p.is_dir():
        if find_drive_parts(p):
            return "drive"
        if find_cases(p):
            return "volume_labels"
        if find_mask_pairs(p):
            return "image_mask_pairs"
        if find_class_roots(p):
            return "class_folders"
    if find_plain_sources(p):
        return "plain_images"
    raise DatasetLayoutError(p, f"fits no known data-set layout; looked for {_LOOKED_FOR}")


_TASK_HINTS = {"classify": "classify", "segment": "segment", "denoise": "restore", "super_resolve": "restore",
               "restore": "restore"}


def open_dataset(path: str | Path, layout: str = "auto", task: str | None = None) -> LabelledDataset:
    """Open a data set by its layout ("auto": `detect_layout`).

    `task` ("classify", "segment", "denoise", "super_resolve") only checks that the data can serve it:
    classification needs labels, segmentation masks; restoration takes the images of any layout.
    """
    p = Path(path)
    name = detect_layout(p) if layout == "auto" else layout
    if name not in _READERS:
        raise DatasetLayoutError(p, f"unknown layout {name!r}; expected one of {', '.join(LAYOUTS)} or auto")
    ds = _READERS[name](p)
    need = _TASK_HINTS.get(task or "", None) if task else None
    if task and need is None:
        raise DatasetLayoutError(p, f"unknown task {task!r}")
    if need == "classify" and not ds.class_names:
        raise DatasetLayoutError(p, f"layout {name} has no class labels for classification")
    if need == "segment" and ds.task_hint != "segment":
        raise DatasetLayoutError(p, f"layout {name} has no masks for segmentation")
    return ds
