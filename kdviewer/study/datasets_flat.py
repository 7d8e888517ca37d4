"""Readers of the 2-D layouts: MedMNIST `.npz`, class folders, image + mask pairs (BUSI), DRIVE.

Each `find_*` answers "does this folder look like that layout" (cheaply, no decoding) and each
`read_*` builds a `LabelledDataset` of lazily decoded `Item`s.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np

from kdviewer.study.datasets_base import (
    DatasetLayoutError,
    Item,
    LabelledDataset,
    Sample,
    array_hash,
    file_hash,
)
from kdviewer.study.datasets_io import is_dicom_file, is_image_file, read_image, read_mask

# Label meaning from the MedMNIST v2 info.py (see each data set's README).
MEDMNIST_CLASS_NAMES = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal/benign"),
}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}
_MASK_STEM = re.compile(r"^(?P<base>.+)_mask(?:_\d+)?$")
_LEADING_NUMBER = re.compile(r"^(\d+)")


# -- MedMNIST --------------------------------------------------------------------------------
def find_medmnist_npz(path: Path) -> Path | None:
    """The `.npz` holding `<split>_images` arrays: `path` itself or the only such file in the folder."""
    files = [path] if path.is_file() else sorted(path.glob("*.npz")) if path.is_dir() else []
    hits = []
    for f in files:
        if f.suffix == ".npz":
            try:
                with np.load(f) as z:
                    if any(k.endswith("_images") for k in z.files):
                        hits.append(f)
            except (OSError, ValueError):
                continue
    return hits[0] if len(hits) == 1 else None


def _medmnist_sample(images: np.ndarray, labels: np.ndarray, i: int) -> Sample:
    return Sample(image=images[i], label=int(labels[i]))


def _medmnist_hash(images: np.ndarray, i: int) -> str:
    return array_hash(images[i])


def read_medmnist(path: Path) -> LabelledDataset:
    """A MedMNIST `.npz` (`train_`/`val_`/`test_` `images` + `labels`, any subset), fully in memory."""
    npz = find_medmnist_npz(path)
    if npz is None:
        raise DatasetLayoutError(path, "expected one .npz with train_images/train_labels (MedMNIST)")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    splits: dict[str, list[Item]] = {}
    max_label = -1
    for split in ("train", "val", "test"):
        if f"{split}_images" not in arrays:
            continue
        images = arrays[f"{split}_images"]
        labels = arrays.get(f"{split}_labels")
        if labels is None:
            raise DatasetLayoutError(npz, f"{split}_images has no {split}_labels")
        labels = np.asarray(labels).reshape(len(labels), -1)
        if labels.shape[1] != 1:
            raise DatasetLayoutError(npz, f"{split}_labels is multi-label {labels.shape}; expected one label each")
        labels = labels[:, 0].astype(np.int64)
        max_label = max(max_label, int(labels.max(initial=-1)))
        splits[split] = [
            Item(key=f"{split}/{i}", loader=partial(_medmnist_sample, images, labels, i), label=int(labels[i]),
                 hasher=partial(_medmnist_hash, images, i))
            for i in range(len(images))
        ]
    if "class_names" in arrays:
        names = tuple(str(s) for s in np.asarray(arrays["class_names"]).ravel())
    else:
        names = MEDMNIST_CLASS_NAMES.get(npz.stem.lower(), tuple(str(k) for k in range(max_label + 1)))
    return LabelledDataset(npz, "medmnist", "classify", names, splits)


# -- class folders ---------------------------------------------------------------------------
def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _is_class_dir(folder: Path) -> bool:
    """Holds 2-D images; a folder that is one DICOM series (slices of a volume) is not a class."""
    if folder.name.startswith(".") or not folder.is_dir():
        return False
    files = _image_files(folder)
    if not files:
        return False
    if len(files) > 1 and all(is_dicom_file(f) for f in files):
        import SimpleITK as sitk

        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        return len(ids) != 1
    return True


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if _is_class_dir(d))


def find_class_roots(path: Path) -> dict[str, Path] | None:
    """{split: folder of class sub-folders}: `train/`, `val/`, `test/` if present, else {"all": path}."""
    if not path.is_dir():
        return None
    subdirs = [d for d in path.iterdir() if d.is_dir()]
    split_dirs = {SPLIT_NAMES[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_NAMES}
    split_dirs = {s: d for s, d in split_dirs.items() if _class_dirs(d)}
    if split_dirs:
        return dict(sorted(split_dirs.items(), key=lambda kv: ("train", "val", "test").index(kv[0])))
    if len(_class_dirs(path)) >= 2:
        return {"all": path}
    return None


def file_sample(path: Path, label: int | None) -> Sample:
    image, spacing = read_image(path)
    return Sample(image=image, label=label, spacing_mm=spacing)


def read_class_folders(path: Path) -> LabelledDataset:
    """`<root>/<class>/*.{png,jpg,tif,dcm}`, optionally under `train/`, `val/`, `test/`."""
    roots = find_class_roots(path)
    if roots is None:
        raise DatasetLayoutError(path, "expected at least two class sub-folders holding images")
    names = tuple(sorted({d.name for root in roots.values() for d in _class_dirs(root)}))
    splits = {}
    for split, root in roots.items():
        items = []
        for d in _class_dirs(root):
            label = names.index(d.name)
            items += [Item(key=f"{d.name}/{f.name}", loader=partial(file_sample, f, label), label=label,
                           hasher=partial(file_hash, f)) for f in _image_files(d)]
        splits[split] = items
    return LabelledDataset(path, "class_folders", "classify", names, splits)


# -- image + mask pairs (BUSI) -------------------------------------------------------------------
def find_mask_pairs(path: Path) -> dict[Path, list[Path]]:
    """{image: [its mask files]} for every `name_mask.png` (+ `name_mask_1.png` ...) with a `name.*` beside it."""
    if not path.is_dir():
        return {}
    pairs: dict[Path, list[Path]] = {}
    for m in sorted(path.rglob("*_mask*")):
        hit = _MASK_STEM.match(m.stem)
        if not hit or not is_image_file(m):
            continue
        images = [p for p in m.parent.glob(f"{glob_escape(hit['base'])}.*") if is_image_file(p)]
        if images:
            pairs.setdefault(images[0], []).append(m)
    return pairs


def glob_escape(text: str) -> str:
    """`text` with the glob wildcards bracketed ("benign (3)" stays literal)."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _pair_sample(image: Path, masks: tuple[Path, ...], label: int | None) -> Sample:
    img, spacing = read_image(image)
    mask = np.zeros(img.shape[:2], dtype=np.uint8)
    for m in masks:
        part = read_mask(m)
        if part.shape != mask.shape:
            raise DatasetLayoutError(m, f"mask is {part.shape}, its image {image.name} is {mask.shape}")
        mask |= part  # extra masks of one image (BUSI `_mask_1`) are merged by OR
    return Sample(image=img, label=label, mask=mask, spacing_mm=spacing)


def read_mask_pairs(path: Path) -> LabelledDataset:
    """`name.png` + `name_mask.png` (+ `name_mask_N.png`) anywhere below `path`; the first folder level
    below `path` (or below `train/`, `val/`, `test/`) names the class when there is one."""
    pairs = find_mask_pairs(path)
    if not pairs:
        raise DatasetLayoutError(path, "expected image files with `<name>_mask.png` beside them")
    keyed = []
    for image, masks in pairs.items():
        rel = image.relative_to(path).parts[:-1]
        split = SPLIT_NAMES.get(rel[0].lower(), "all") if rel else "all"
        if rel and split != "all":
            rel = rel[1:]
        keyed.append((split, rel[0] if rel else None, image, tuple(sorted(masks))))
    names = tuple(sorted({c for _, c, _, _ in keyed if c is not None}))
    splits: dict[str, list[Item]] = {}
    for split, cls, image, masks in sorted(keyed, key=lambda k: (k[0], k[1] or "", _natural(k[2].name))):
        label = names.index(cls) if cls is not None else None
        key = "/".join(image.relative_to(path).with_suffix("").parts)
        splits.setdefault(split, []).append(
            Item(key=key, loader=partial(_pair_sample, image, masks, label), label=label,
                 hasher=partial(file_hash, image)))
    n_extra = sum(len(m) - 1 for *_, m in keyed)
    notes = (f"{n_extra} extra mask file(s) merged by OR",) if n_extra else ()
    return LabelledDataset(path, "image_mask_pairs", "segment", names, splits, notes, ("background", "foreground"))


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# -- DRIVE -----------------------------------------------------------------------------------
def _is_drive_part(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "1st_manual").is_dir()


def find_drive_parts(path: Path) -> dict[str, Path] | None:
    """{split: folder with images/, 1st_manual/, mask/}: the folder itself or its training/, test/."""
    if not path.is_dir():
        return None
    if _is_drive_part(path):
        return {SPLIT_NAMES.get(path.name.lower(), "all"): path}
    parts = {SPLIT_NAMES.get(d.name.lower(), d.name): d for d in sorted(path.iterdir())
             if d.is_dir() and _is_drive_part(d)}
    return parts or None


def _by_number(folder: Path) -> dict[int, Path]:
    out = {}
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            hit = _LEADING_NUMBER.match(f.name)
            if hit and is_image_file(f):
                out[int(hit[1])] = f
    return out


def _drive_sample(image: Path, manual: Path, fov: Path | None) -> Sample:
    img, _ = read_image(image)
    mask = read_mask(manual)
    fov_arr = read_mask(fov).astype(bool) if fov is not None else None
    return Sample(image=img, mask=mask, fov=fov_arr)


def read_drive(path: Path) -> LabelledDataset:
    """DRIVE: `images/NN_*.tif`, `1st_manual/NN_manual1.gif`, `mask/NN_*_mask.gif` paired by NN."""
    parts = find_drive_parts(path)
    if parts is None:
        raise DatasetLayoutError(path, "expected images/ and 1st_manual/ (DRIVE), here or in training/, test/")
    splits = {}
    notes = []
    for split, folder in parts.items():
        images, manuals = _by_number(folder / "images"), _by_number(folder / "1st_manual")
        fovs = _by_number(folder / "mask")
        unpaired = sorted(set(images) ^ set(manuals))
        if unpaired:
            notes.append(f"{folder.name}: numbers without an image or manual skipped: {unpaired}")
        splits[split] = [
            Item(key=f"{folder.name}/{n:02d}", loader=partial(_drive_sample, images[n], manuals[n], fovs.get(n)),
                 hasher=partial(file_hash, images[n]))
            for n in sorted(set(images) & set(manuals))
        ]
        if not splits[split]:
            raise DatasetLayoutError(folder, "no image in images/ has a manual with the same leading number")
    return LabelledDataset(path, "drive", "segment", (), splits, tuple(notes), ("background", "vessel"))
