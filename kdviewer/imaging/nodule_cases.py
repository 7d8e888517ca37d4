"""Simulated nodule cases: a CT slice (or 2.5-D slice stack) with synthetic nodules and their mask, exactly
as training makes them from a recipe's ``[data].simulate = {kind = "nodules", ...}`` table.

Torch-free, so that both the distillation engine (`kdviewer.distill.data_samples.simulated_nodules`, which
calls `simulate_case`) and the runtime (`kdviewer evaluate` / `compare` of a model whose card recipe
simulates nodules) build the same cases from the same settings and seeds.

Seeding. Training slices draw from the training sample's generator (seeded by (seed, epoch, index),
fresh nodules each epoch). A validation case draws from `validation_rng(seed, key)` =
``np.random.default_rng([seed, zlib.crc32(key.encode())])`` (seed: the recipe's ``data.seed``; key: the
item's `kdviewer.study.datasets.Item.key`, e.g. "dicom/0040"), and nothing else: the validation
`ItemDataset`'s own generator ((seed, 2**31 - 1, index), index = the position in the val list) is not used
for these cases (no crops, no augmentation in validation), so a held-out slice carries the same nodules
whatever list or position it is in, and ``--limit`` or a subset does not change them.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kdviewer.imaging.nodules import NODULE_KINDS, insert_nodules, lung_mask

# The defaults of every key of [data].simulate for kind "nodules": the one table that both the recipe checks
# (`kdviewer.distill.data_config`, as NODULE_DEFAULTS) and the runtime (filling a model card's recipe) use.
SIMULATION_DEFAULTS: dict[str, Any] = {
    "kind": "nodules",
    "per_image": [1, 3],          # nodules per slice that gets any (inclusive range)
    "diameter_mm": [4.0, 20.0],   # nominal diameters
    "empty_fraction": 0.2,        # share of the eligible slices left without nodules
    "kinds": list(NODULE_KINDS),
    "juxta_pleural": 0.25,        # share of nodules pushed against the lung's edge
    "min_lung_cm2": 10.0,         # slices with less lung (in cm², `lung_mask`) get no nodules
    "exclude_slices": [],         # [first, last] slice indices (or a list of them) left out of both splits:
                                  # slices with real, unlabelled nodules
    "slice_spacing_mm": None,     # 2.5-D (data.slices > 1): the distance between neighbouring slices, so
                                  # nodules are drawn in 3-D across the stack (the target is the centre slice)
}


def simulation_settings(table: Mapping[str, Any]) -> dict[str, Any]:
    """A recipe's [data].simulate table (as written on a model card) filled with `SIMULATION_DEFAULTS` and
    put in the form training uses (pairs as [lo, hi] lists, kinds a list, numbers as floats); the same dict
    `kdviewer.distill.data_config` makes of a valid table. Raises ValueError for a kind other than "nodules"
    or a value that is not a number or pair."""
    if table.get("kind") != "nodules":
        raise ValueError(f"simulate.kind must be 'nodules', got {table.get('kind')!r}")
    out = {**SIMULATION_DEFAULTS, **table}

    def pair(v: Any, kind: type) -> list:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return [kind(v), kind(v)]
        a, b = v
        return [kind(a), kind(b)]

    kinds = [out["kinds"]] if isinstance(out["kinds"], str) else list(out["kinds"])
    excl = out["exclude_slices"] or []
    ranges = [excl] if excl and not isinstance(excl[0], list | tuple) else list(excl)
    try:
        return {"kind": "nodules", "per_image": pair(out["per_image"], int),
                "diameter_mm": pair(out["diameter_mm"], float),
                "empty_fraction": float(out["empty_fraction"]), "juxta_pleural": float(out["juxta_pleural"]),
                "kinds": kinds, "min_lung_cm2": float(out["min_lung_cm2"]),
                "exclude_slices": [pair(r, int) for r in ranges],
                "slice_spacing_mm": None if out["slice_spacing_mm"] is None else float(out["slice_spacing_mm"])}
    except (TypeError, ValueError) as e:
        raise ValueError(f"simulate: {e}") from e


def validation_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of a validation case: (seed, CRC-32 of the item key); see the module docstring."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def simulate_case(image_hu: np.ndarray, spacing_xy_mm: Sequence[float] | None, sim: Mapping[str, Any],
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic nodules in one slice (H, W) or a 2.5-D stack (S, H, W) of HU, centre slice S // 2.

    sim: the settings (`simulation_settings`); spacing_xy_mm: the slice's pixel size (None: 1 mm); for a
    stack, the nodules are drawn in 3-D with ``sim["slice_spacing_mm"]`` between slices. A slice whose
    (centre) lungs are smaller than ``min_lung_cm2``, and a share ``empty_fraction`` of the others (one
    ``rng.random()`` draw first), get none.

    Returns (image float32 HU of the input's shape, mask uint8 (H, W) of the (centre) slice, 0 background /
    1 nodule, lungs bool (H, W) of the (centre) slice).
    """
    img = np.asarray(image_hu, dtype=np.float32)
    if img.ndim not in (2, 3):
        raise ValueError(f"simulated nodules need an (H, W) slice or an (S, H, W) stack in HU, got {img.shape}")
    stack = img.ndim == 3
    centre = img.shape[0] // 2 if stack else None
    spacing = tuple(spacing_xy_mm or (1.0, 1.0))
    if stack:
        spacing += (float(sim["slice_spacing_mm"]),)
    lungs = lung_mask(img)
    centre_lungs = lungs[centre] if stack else lungs
    empty = rng.random() < sim["empty_fraction"]
    if empty or centre_lungs.sum() * spacing[0] * spacing[1] < sim["min_lung_cm2"] * 100:
        return img, np.zeros(centre_lungs.shape, dtype=np.uint8), centre_lungs
    img, mask = insert_nodules(img, lungs, rng, n=sim["per_image"], diameter_mm=sim["diameter_mm"],
                               spacing_mm=spacing, kind=sim["kinds"], juxta_pleural=sim["juxta_pleural"])
    return img, (mask[centre] if stack else mask), centre_lungs


def validation_case(image_hu: np.ndarray, spacing_xy_mm: Sequence[float] | None, sim: Mapping[str, Any],
                    seed: int, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training's validation case of the item `key`: `simulate_case` with `validation_rng(seed, key)`."""
    return simulate_case(image_hu, spacing_xy_mm, sim, validation_rng(seed, key))
