"""Occlusion sensitivity: how much the predicted class's probability drops when a patch is hidden."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kdviewer.runtime.control import CancelFlag, check_cancel


def occlusion_saliency(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, target: int,
                       patch: int | None = None, stride: int | None = None, batch_size: int = 32,
                       cancel: CancelFlag = None) -> np.ndarray:
    """(H, W) float32 map in [0, 1] of the drop in class `target`'s probability per hidden patch.

    predict: (N, C, H, W) float32 -> (N, K) probabilities. x: one (C, H, W) model input. The patch
    (default H/8, stride one patch) is filled with the input's mean; overlapping patches (a smaller
    stride) are averaged; the map is scaled
    so its maximum is 1 (all zeros when no patch lowers the probability).
    """
    _, h, w = x.shape
    patch = patch or max(2, min(h, w) // 8)
    stride = stride or patch  # 8 x 8 patches, 65 runs: a second or less for a student on a laptop
    base = float(predict(x[None])[0, target])
    ys = list(range(0, max(1, h - patch) + 1, stride))
    xs = list(range(0, max(1, w - patch) + 1, stride))
    if ys[-1] + patch < h:
        ys.append(h - patch)
    if xs[-1] + patch < w:
        xs.append(w - patch)
    boxes = [(y, xx) for y in ys for xx in xs]
    fill = np.float32(x.mean())
    heat = np.zeros((h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    for start in range(0, len(boxes), batch_size):
        check_cancel(cancel, "saliency")
        chunk = boxes[start:start + batch_size]
        batch = np.repeat(x[None], len(chunk), axis=0)
        for i, (y, xx) in enumerate(chunk):
            batch[i, :, y:y + patch, xx:xx + patch] = fill
        drops = base - predict(batch)[:, target]
        for (y, xx), d in zip(chunk, drops, strict=True):
            heat[y:y + patch, xx:xx + patch] += max(float(d), 0.0)
            count[y:y + patch, xx:xx + patch] += 1
    heat /= np.maximum(count, 1)
    top = float(heat.max())
    return heat / top if top > 0 else heat
