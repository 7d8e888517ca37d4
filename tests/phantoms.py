"""Small grey phantom slices (a disc with a few blobs) written as a plain-images folder, for restoration tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_phantoms(root: Path, size: int = 32, count: int = 6, seed: int = 7, ramp: float = 0.0) -> Path:
    """`count` PNGs of size x size in `root`: a disc, three random blobs, plus `ramp` grey levels per column."""
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(seed)
    c = size / 2
    for i in range(count):
        img = np.where((yy - c) ** 2 + (xx - c) ** 2 < (13 * size / 32) ** 2, 120, 10).astype(np.float64) + ramp * xx
        for _ in range(3):
            cy, cx, r = rng.integers(size // 4, 3 * size // 4, size=2).tolist() + [int(rng.integers(2, 5))]
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(150, 250)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"slice{i}.png")
    return root


def paired_draws(plain, with_teacher, epochs: int = 3):
    """Every training draw of two data sets built alike, over `epochs` epochs, one with a pool teacher attached:
    yields (plain draw, draw with teacher) after checking that their image and target are the same."""
    import torch

    for epoch in range(epochs):
        plain.set_epoch(epoch)
        with_teacher.set_epoch(epoch)
        for i in range(len(with_teacher)):
            a, b = plain[i], with_teacher[i]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
            assert "teacher" not in a and "teacher" in b
            yield a, b
