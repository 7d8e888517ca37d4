"""Torch data sets for training, built from a recipe's [data] table over `kdviewer.study.datasets`.

Every sample, for every task, is a dict of tensors:

- ``"image"``: float32 (C, H, W), the model input (preprocessed by `kdviewer.imaging.preprocess`);
- ``"target"``: classify → int64 () class index; segment → int64 (H, W) label map;
  denoise → float32 (C, H, W) clean image; super_resolve → float32 (C, s·H, s·W) high-res image;
- ``"fov"``: segment only, bool (H, W), the field of view (all True when the data has none);
- ``"teacher"``: pooled denoising and super-resolution training draws once a teacher is attached
  (`ItemDataset.attach_pool_teacher`), float32 (C_out, H, W) (high-res for super-resolution), the teacher's
  output cut from its whole-slice output like the target.

Training samples are augmented and degraded afresh each epoch from a generator seeded by
(seed, epoch, index) (call `set_epoch`); the validation set is never augmented and its degradations are
seeded by (seed, index), so every epoch sees the same validation noise.

Simulated nodules ([data].simulate = {kind = "nodules", ...}, task segment): the images of any layout
(e.g. plain CT slices in HU) get synthetic nodules (`kdviewer.imaging.nodules`) and the masks come from
the simulation (0 background, 1 nodule): fresh nodules every training epoch, fixed ones per validation
item; the split is the usual one (slice blocks for volumes), so held-out slices are never trained on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from kdviewer.distill.augment import AugmentConfig
from kdviewer.distill.data_config import DataConfig, DataConfigError
from kdviewer.distill.data_samples import (
    PoolTeacher,
    classify_base,
    make_sample,
    pooled_teacher_base,
    segment_base,
)
from kdviewer.study.datasets import (
    Item,
    LabelledDataset,
    dataset_name,
    limit_items,
    open_dataset,
    readme_licence,
    recipe_split,
)

__all__ = ["DataConfig", "DataConfigError", "ItemDataset", "build_datasets"]


class ItemDataset(Dataset):
    """Samples (dicts, see the module docstring) of a list of `Item`s for one task."""

    def __init__(self, items: list[Item], cfg: DataConfig, task: str, train: bool, n_classes: int = 2):
        self.items = list(items)
        self.n_classes = n_classes  # a segmenter's classes: the planes of soft training masks
        self.cfg = cfg
        self.task = task
        self.train = train
        self.augment = AugmentConfig.from_dict(cfg.augment) if train else AugmentConfig()
        self.epoch = 0
        self._val_cache: dict[int, dict[str, torch.Tensor]] = {}
        # classify, segment (not simulated): decoded + preprocessed images (and masks), kept while they fit in
        # BASE_CACHE_BYTES (decoding and resizing were 80 % of a 96x96 brain MRI sample's 22 ms and of a DRIVE
        # patch's 53 ms); crops and augmentation are redrawn per epoch
        self._base_cache: dict[int, dict[str, np.ndarray]] = {}
        self._base_bytes = 0
        self._cacheable = task == "classify" or (task == "segment" and not cfg.simulate)  # nodules: drawn afresh
        self.pool_teacher: PoolTeacher | None = None

    @property
    def can_pool_teacher(self) -> bool:
        """Whether `attach_pool_teacher` applies: the training set of a denoising recipe with a fixed pool
        (`degrade.realizations` K > 0), or of a super-resolution recipe whose augmentation is flips only."""
        return self.train and ((self.task == "denoise" and self.cfg.realizations > 0)
                               or (self.task == "super_resolve" and self.augment.flips_only))

    def attach_pool_teacher(self, teacher: PoolTeacher) -> None:
        """Give every training draw a "teacher" entry: the teacher's output on the whole slice it was cut from
        (each noisy realisation of a pooled low-dose set; the low-res slice for super-resolution), computed
        once per slice (`pooled_teacher_base`), flipped and cut as the draw is. The draws themselves do not
        change."""
        if not self.can_pool_teacher:
            raise ValueError("a pool teacher needs the training set of a denoising recipe with "
                             "degrade.realizations > 0, or of a super-resolution recipe with flips only")
        self.pool_teacher, self._cacheable = teacher, True
        self._base_cache.clear()
        self._base_bytes = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random augmentations and degradations training samples get."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Training: every item `cfg.repeat` times (each a fresh random sample); validation: once."""
        return len(self.items) * (self.cfg.repeat if self.train else 1)

    def rng_for(self, index: int) -> np.random.Generator:
        """The generator of one sample: (seed, epoch, index) in training, (seed, index) in validation."""
        key = [self.cfg.seed, self.epoch, index] if self.train else [self.cfg.seed, 2**31 - 1, index]
        return np.random.default_rng(key)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not self.train and index in self._val_cache:
            return self._val_cache[index]
        item = self.items[index % len(self.items)]
        base = self._base(index % len(self.items), item) if self._cacheable else None
        arrays = make_sample(item, self.cfg, self.task, self.train, self.augment, self.rng_for(index), base,
                             self.n_classes)
        out = {k: torch.from_numpy(np.array(v, copy=True, order="C")) for k, v in arrays.items()}
        if not self.train and (self.task in ("denoise", "super_resolve") or self.cfg.simulate):
            self._val_cache[index] = out  # deterministic and costly (projections, nodules): compute once
        return out

    def _base(self, key: int, item: Item) -> dict[str, np.ndarray]:
        base = self._base_cache.get(key)
        if base is None:
            if self.task == "classify":
                base = classify_base(item, self.cfg)
            elif self.task == "segment":
                base = segment_base(item, self.cfg, self.train, self.rng_for(key), self.n_classes)
            else:
                assert self.pool_teacher is not None
                base = pooled_teacher_base(item, self.cfg, self.pool_teacher)
            size = sum(a.nbytes for a in base.values())
            # a pool teacher's outputs are always kept (K forwards of a whole slice per draw otherwise), as the
            # pool itself is: (K * C_out) * H * W * 4 bytes a slice, 84 MiB for the CT denoising recipe
            if self._base_bytes + size <= BASE_CACHE_BYTES or self.pool_teacher is not None:
                self._base_cache[key], self._base_bytes = base, self._base_bytes + size
        return base


BASE_CACHE_BYTES = 512 << 20  # per data set (and per loader worker)
SIMULATED_CLASSES = ("background", "nodule")


def simulation_note(sim: Mapping[str, Any]) -> str:
    """One line for the model card's limits: what the simulated nodules were."""
    n, d = sim["per_image"], sim["diameter_mm"]
    excl = ", ".join(f"{a}-{b}" for a, b in sim.get("exclude_slices") or [])
    return (f"simulated nodules, not real ones: {n[0]}-{n[1]} per slice with at least {sim['min_lung_cm2']:g} cm² "
            f"of lung ({sim['empty_fraction']:.0%} of those left empty), {d[0]:g}-{d[1]:g} mm, "
            f"{'/'.join(sim['kinds'])}, {sim['juxta_pleural']:.0%} juxta-pleural, drawn by kdviewer.imaging.nodules"
            + (f"; slices {excl} (real, unlabelled nodules) left out" if excl else ""))


def _limit(items: list[Item], n: int | None, seed: int) -> list[Item]:
    return limit_items(items, n, seed)


def _train_val(ds: LabelledDataset, cfg: DataConfig) -> tuple[list[Item], list[Item], int, str]:
    """(train, val, identical images dropped, how the split was made); slices in
    `simulate.exclude_slices` are left out of both. The shared `recipe_split`, so that `kdviewer evaluate
    --split val` rebuilds exactly this split from a model card's recipe."""
    return recipe_split(ds, cfg.val_fraction, cfg.seed, stratify=cfg.stratify, block_size=cfg.block_size,
                        exclude_slices=cfg.simulate.get("exclude_slices") or [])


def _counts(train: list[Item], val: list[Item], class_names: tuple[str, ...]) -> dict[str, Any]:
    counts: dict[str, Any] = {"train": len(train), "val": len(val)}
    for name, items in (("train", train), ("val", val)):
        labels = Counter(it.label for it in items if it.label is not None)
        if labels and class_names:
            counts[f"{name}_per_class"] = {class_names[k]: labels[k] for k in sorted(labels)}
        groups = {it.group for it in items if it.slice_index is not None}
        if groups:
            counts[f"{name}_cases"] = sorted(str(g) for g in groups)
    return counts


def build_datasets(data_cfg: Mapping[str, Any], task: str, recipe_dir: Path | None
                   ) -> tuple[ItemDataset, ItemDataset, dict[str, Any]]:
    """(train_ds, val_ds, meta) for a recipe's [data] table and task (classify | segment | denoise |
    super_resolve). `data_cfg["path"]` is relative to `recipe_dir` unless absolute.

    meta: layout, dataset_name, licence, class_names, num_classes, in_channels, input_size (the model
    input (H, W); for super_resolve the low-res size), output_size, scale, preprocess (what the runtime
    does at inference: see `kdviewer.imaging.preprocess`), counts, dedup_dropped, split, task.
    Raises `DataConfigError` (bad key or value) or `DatasetLayoutError` (folder in no known layout).
    """
    cfg = DataConfig.from_dict(data_cfg, task, recipe_dir)
    # Simulated nodules make their own masks: any layout's images will do.
    ds = open_dataset(cfg.path, cfg.layout, None if cfg.simulate else task)
    train, val, dropped, how = _train_val(ds, cfg)
    if not train or not val:
        raise DataConfigError(f"data: {cfg.path} gives {len(train)} training and {len(val)} validation "
                              "items; both must be non-empty (check val_fraction)")
    train, val = _limit(train, cfg.max_items, cfg.seed), _limit(val, cfg.max_items, cfg.seed + 1)
    names = ds.class_names if task == "classify" else ds.mask_names if task == "segment" else ()
    if cfg.simulate:
        names = SIMULATED_CLASSES
    meta = {
        "task": task,
        "layout": ds.layout,
        "dataset_name": dataset_name(cfg.path) + (" with simulated nodules" if cfg.simulate else ""),
        "dataset_path": str(cfg.path),
        "licence": readme_licence(cfg.path),
        "class_names": list(names),
        "num_classes": len(names),
        "in_channels": cfg.in_channels,
        "input_size": list(cfg.model_input_size) if cfg.model_input_size else None,
        "output_size": list(cfg.input_size) if cfg.input_size else None,
        "scale": cfg.scale,
        "preprocess": cfg.preprocess,
        "counts": _counts(train, val, ds.class_names),
        "dedup_dropped": dropped,
        "split": how,
        "summary": ds.summary(),
    }
    if cfg.simulate:
        meta["simulate"] = dict(cfg.simulate)
        meta["simulation"] = simulation_note(cfg.simulate)
        spacing = val[0].load().spacing_mm  # nodule sizes are in mm: the card says which pixel size was learnt
        meta["spacing_mm"] = list(spacing) if spacing else None
    k = max(len(names), 2)
    return ItemDataset(train, cfg, task, True, k), ItemDataset(val, cfg, task, False, k), meta
