"""Sliding-window inference: run a fully convolutional model on images larger than its input.

Tiles of the model's input size overlap by a fraction; their outputs are blended with a Gaussian
weight (centre counts most, as in nnU-Net) or a linear ramp, so seams do not show. Images smaller
than a tile are padded (edge values) and cropped back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from kdviewer.runtime.control import CancelFlag, check_cancel

Runner = Callable[[np.ndarray], np.ndarray]


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering `length` pixels with about `overlap` (0..1) overlap."""
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def _axis_weights(n: int, mode: str, flat_start: bool = False, flat_end: bool = False) -> np.ndarray:
    c = np.arange(n, dtype=np.float64) - (n - 1) / 2
    if mode == "gaussian":
        a = np.exp(-0.5 * (c / (n / 8.0)) ** 2)
    elif mode == "linear":
        a = 1.0 - np.abs(c) / (n / 2.0)
    else:
        raise ValueError(f"blend mode must be 'gaussian' or 'linear', got {mode!r}")
    a /= a.max()
    # a side on the image border has no neighbour tile to hand over to: full weight up to it
    if flat_start:
        a[c < 0] = 1.0
    if flat_end:
        a[c > 0] = 1.0
    # floor per axis, not on the product, so the ratio between tiles survives along an image edge
    return np.maximum(a, 1e-3)


def blend_weights(tile_hw: Sequence[int], mode: str = "gaussian",
                  border: tuple[bool, bool, bool, bool] = (False, False, False, False)) -> np.ndarray:
    """(h, w) float32 weights of one tile's output: Gaussian (sigma = side / 8) or linear ramp; > 0, max 1.

    border: (top, bottom, left, right) sides lying on the image border, where the weight stays 1.
    """
    h, w = (int(s) for s in tile_hw)
    top, bottom, left, right = border
    return np.outer(_axis_weights(h, mode, top, bottom), _axis_weights(w, mode, left, right)).astype(np.float32)


def predict_tiled(run: Runner, images: np.ndarray, tile_hw: Sequence[int], *, overlap: float = 0.25,
                  batch_size: int = 16, blend: str = "gaussian", cancel: CancelFlag = None) -> np.ndarray:
    """Blend a model's outputs over overlapping tiles of every image.

    run: (B, C, th, tw) float32 -> (B, K, s·th, s·tw) (s = 1 for segmentation and denoising, the
    factor for super-resolution; found from the first batch). images: (N, C, H, W) float32.
    Returns (N, K, s·H, s·W) float32. Only one chunk's outputs plus the (N, K, s·H, s·W) sum are held.
    """
    n, c, h, w = images.shape
    th, tw = (int(t) for t in tile_hw)
    ph, pw = max(h, th), max(w, tw)
    if (ph, pw) != (h, w):
        images = np.pad(images, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode="edge")
    boxes = [(i, y, x) for i in range(n) for y in tile_starts(ph, th, overlap) for x in tile_starts(pw, tw, overlap)]
    if len(boxes) == n and (ph, pw) == (th, tw):
        out = _run_batches(run, images, batch_size, cancel)
        return out[:, :, : out.shape[2] * h // ph, : out.shape[3] * w // pw]
    acc: np.ndarray | None = None
    norm: np.ndarray | None = None
    s = 1
    weights: dict[tuple[int, int], np.ndarray] = {}
    for start in range(0, len(boxes), batch_size):
        check_cancel(cancel)
        chunk = boxes[start:start + batch_size]
        batch = np.stack([images[i, :, y:y + th, x:x + tw] for i, y, x in chunk])
        out = np.asarray(run(batch), dtype=np.float32)
        if acc is None:
            s = out.shape[2] // th
            acc = np.zeros((n, out.shape[1], ph * s, pw * s), np.float32)
            norm = np.zeros((ph * s, pw * s), np.float32)
            for _, y, x in boxes[: len(boxes) // n]:  # every image has the same tiles
                weights[y, x] = blend_weights((th * s, tw * s), blend, (y == 0, y + th == ph, x == 0, x + tw == pw))
                norm[y * s:(y + th) * s, x * s:(x + tw) * s] += weights[y, x]
        for (i, y, x), o in zip(chunk, out, strict=True):
            acc[i, :, y * s:(y + th) * s, x * s:(x + tw) * s] += o * weights[y, x]
    assert acc is not None and norm is not None
    acc /= norm
    return acc[:, :, : h * s, : w * s]


def _run_batches(run: Runner, images: np.ndarray, batch_size: int, cancel: CancelFlag) -> np.ndarray:
    outs = []
    for start in range(0, images.shape[0], batch_size):
        check_cancel(cancel)
        outs.append(np.asarray(run(images[start:start + batch_size]), dtype=np.float32))
    return np.concatenate(outs, axis=0)
