"""Seeded train/validation splits of `Item`s: stratified by label, by case or by slice blocks for volumes,
after removing identical images."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from kdviewer.study.datasets_base import Item

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
