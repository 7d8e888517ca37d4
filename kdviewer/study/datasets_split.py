"""Seeded train/validation splits of `Item`s: stratified by label, by case or by slice blocks for volumes,
after removing identical images."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from kdviewer.study.datasets_base import Item, LabelledDataset

DEFAULT_BLOCK_SLICES = 16


@dataclass(frozen=True)
class ItemSplit:
    """The result of `split_items`: unpacks as ``train, val = split_items(...)``; `dropped` counts the
    identical images removed before splitting; `unit` says what was kept together ("image", "case",
    "block of N slices")."""

    train: list[Item]
    val: list[Item]
    dropped: int = 0
    unit: str = "image"

    def __iter__(self) -> Iterator[list[Item]]:
        return iter((self.train, self.val))


def deduplicate(items: Sequence[Item]) -> tuple[list[Item], int]:
    """Keep the first of each set of identical images (content hash); volume slices are kept as they are
    (they are split by case or block, and identical blank slices are not duplicates of a patient).

    Returns (kept items in their order, number dropped).
    """
    seen: set[str] = set()
    kept = []
    for it in items:
        if it.slice_index is None:
            h = it.content_hash()
            if h in seen:
                continue
            seen.add(h)
        kept.append(it)
    return kept, len(items) - len(kept)


def _n_val(n: int, fraction: float) -> int:
    if n < 2 or fraction <= 0:
        return 0
    return int(min(n - 1, max(1, round(n * fraction))))


def _pick_units(units: list, fraction: float, rng: np.random.Generator) -> set:
    order = rng.permutation(len(units))
    return {units[i] for i in order[:_n_val(len(units), fraction)]}


def split_items(items: Sequence[Item], val_fraction: float, seed: int, stratify: bool = True,
                block_size: int | None = None, dedup: bool = True) -> ItemSplit:
    """Split items into (train, val), seeded.

    - Volume slices (items with `slice_index`): by case when there are several cases and no
      `block_size` is given, else by contiguous blocks of `block_size` slices (default 16) per case:
      never random slices, so neighbouring slices do not leak across the split.
    - Items with a `group` (patient) and no slice index: by group.
    - Otherwise per image, stratified by label when `stratify` (each class keeps `val_fraction`).
    Identical images are removed first when `dedup`. Both lists keep the input order.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    items, dropped = deduplicate(items) if dedup else (list(items), 0)
    rng = np.random.default_rng(seed)
    slices = [it for it in items if it.slice_index is not None]
    if slices:
        cases = sorted({it.group or "" for it in slices})
        if len(cases) > 1 and block_size is None:
            unit, key = "case", (lambda it: it.group or "")
        else:
            size = block_size or DEFAULT_BLOCK_SLICES
            unit, key = f"block of {size} slices", (lambda it: (it.group or "", (it.slice_index or 0) // size))
        units = sorted({key(it) for it in items})
        val_units = _pick_units(units, val_fraction, rng)
        is_val = [key(it) in val_units for it in items]
    elif any(it.group is not None for it in items):
        unit = "group"
        units = sorted({it.group or it.key for it in items})
        val_units = _pick_units(units, val_fraction, rng)
        is_val = [(it.group or it.key) in val_units for it in items]
    else:
        unit = "image"
        strata: dict[object, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            strata[it.label if stratify else None].append(i)
        val_idx: set[int] = set()
        for label in sorted(strata, key=lambda x: (x is None, x)):
            members = strata[label]
            val_idx |= {members[i] for i in rng.permutation(len(members))[:_n_val(len(members), val_fraction)]}
        is_val = [i in val_idx for i in range(len(items))]
    train = [it for it, v in zip(items, is_val, strict=True) if not v]
    val = [it for it, v in zip(items, is_val, strict=True) if v]
    return ItemSplit(train, val, dropped, unit)


def slice_ranges(value: object) -> list[tuple[int, int]]:
    """[first, last] slice ranges from a recipe's ``simulate.exclude_slices``: one pair ``[52, 62]`` or a
    list of pairs; empty for None or []."""
    if not value:
        return []
    pairs = [value] if not isinstance(value[0], list | tuple) else list(value)  # type: ignore[index]
    return [(int(lo), int(hi)) for lo, hi in pairs]


def in_ranges(item: Item, ranges: Sequence[Sequence[int]]) -> bool:
    """True for a volume slice whose index lies in one of the [first, last] ranges (inclusive)."""
    return item.slice_index is not None and any(lo <= item.slice_index <= hi for lo, hi in ranges)


def training_pool(ds: LabelledDataset) -> str:
    """The split `recipe_split` divides when the data has no "val" split: "train", else "all", else the first."""
    return next((s for s in ("train", "all") if s in ds.splits), ds.splits[0])


def recipe_split(ds: LabelledDataset, val_fraction: float, seed: int, stratify: bool = True,
                 block_size: int | None = None, exclude_slices: object = ()
                 ) -> tuple[list[Item], list[Item], int, str]:
    """The train/validation split a training recipe makes of a data set: (train, val, identical images
    dropped, how the split was made).

    The data's own "val" split when it has one (its "train" split, if any, for training; a training image
    identical to a validation image is dropped), else `split_items` of its "train" (or "all", or first)
    split with the recipe's val_fraction, seed, stratify and block_size. Volume slices in
    `exclude_slices` (see `slice_ranges`) are left out of both. Used by training (`kdviewer.distill.data`)
    and by `kdviewer evaluate --split val` to rebuild the split from a model card's recipe.
    """
    ranges = slice_ranges(exclude_slices)

    def items(split: str) -> list[Item]:
        return [it for it in ds.items(split) if not in_ranges(it, ranges)]

    if "val" in ds.splits:
        val, dropped_val = deduplicate(items("val"))
        train_pool = items("train") if "train" in ds.splits else []
        # Val first, so a training image identical to a validation image is the one dropped.
        kept, dropped = deduplicate(val + train_pool)
        train = kept[len(val):]
        return train, val, dropped_val + dropped, "the data's own val split"
    pool_name = training_pool(ds)
    split = split_items(items(pool_name), val_fraction, seed, stratify=stratify, block_size=block_size)
    return split.train, split.val, split.dropped, f"split_items of {pool_name!r} by {split.unit}, seed {seed}"


def limit_items(items: list[Item], n: int | None, seed: int) -> list[Item]:
    """At most `n` of the items (a recipe's ``max_items``): a seeded random subset in their order."""
    if n is None or len(items) <= n:
        return items
    keep = set(np.random.default_rng(seed).permutation(len(items))[:n].tolist())
    return [it for i, it in enumerate(items) if i in keep]
