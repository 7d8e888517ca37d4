"""Enhance a series: denoising (same grid) or super-resolution (×2/×4 in-plane, new spacing).

Each slice is normalised as the card says (a CT window maps HU to [0, 1]), run with sliding-window
tiles at its own resolution, and mapped back to the input's units with the inverse of that
normalisation (so HU in, HU out; values outside a card's window come back clipped to it).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from kdviewer.imaging.resample import resampled_origin
from kdviewer.runtime.control import CancelFlag, Progress, check_cancel, report
from kdviewer.runtime.errors import ModelInputError
from kdviewer.runtime.inputs import model_image, model_input, slice_stack
from kdviewer.runtime.registry import Model
from kdviewer.runtime.session import make_runner
from kdviewer.runtime.tiling import predict_tiled
from kdviewer.study.volume import Volume

ENHANCE_TASKS = ("denoise", "super_resolve")


@dataclass(frozen=True, eq=False)
class EnhancementResult:
    """volume: the new series (z, s·y, s·x) in the input's units and dtype; scale: s (1 for denoising)."""

    volume: Volume
    latency_ms: float
    scale: int = 1
    model_id: str = ""


def inverse_normalisation(model: Model, img: np.ndarray) -> tuple[float, float]:
    """(scale, offset) with ``stored_units = model_units * scale + offset`` for one raw slice.

    The inverse of `kdviewer.imaging.preprocess.normalize_image` for the card's mode (window: fixed;
    minmax and zscore: measured on this slice, as the forward step does).
    """
    prep = model.preprocess
    mode = prep.get("normalize", "minmax") or "none"
    x = np.asarray(img, dtype=np.float32)
    if mode == "window":
        center, width = (float(v) for v in prep["window"])
        return width, center - width / 2
    if mode == "minmax":
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        return (hi - lo if hi - lo > 1e-8 else 1.0), lo
    if mode == "zscore":
        std = float(np.std(x, dtype=np.float64))
        return (std if std > 1e-8 else 1.0), float(np.mean(x, dtype=np.float64))
    return 1.0, 0.0


def _to_dtype(out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype if np.issubdtype(dtype, np.floating) else np.float32)


def enhance_volume(model: Model, volume: Volume | np.ndarray, progress: Progress = None,
                   cancel: CancelFlag = None, *, threads: int | None = None, chunk_slices: int = 4,
                   overlap: float = 0.25, blend: str = "gaussian") -> EnhancementResult:
    """Denoise or super-resolve every slice of a grey `volume` (or one 2-D image) into a new `Volume`.

    Super-resolution by s gives (z, s·y, s·x) voxels at spacing (x/s, y/s, z) mm over the same extent.
    progress(done, total) per chunk; `cancel` raises `Cancelled` between batches, returning nothing.
    """
    if model.task not in ENHANCE_TASKS:
        raise ModelInputError(model.onnx_path, f"model {model.id} is a {model.task} model, not denoise "
                              "or super_resolve")
    if not isinstance(volume, Volume):
        volume = Volume(np.asarray(volume))
    if volume.is_color:
        raise ModelInputError(volume.info.source or None, "enhancement takes grey images, not colour")
    t0 = time.perf_counter()
    run = make_runner(model, threads)
    arr = volume.array
    nz = arr.shape[0]
    out: np.ndarray | None = None
    scale = 1
    for start in range(0, nz, chunk_slices):
        check_cancel(cancel, "enhancement")
        zs = range(start, min(nz, start + chunk_slices))
        raws = [slice_stack(arr, z, model.slices) if model.slices > 1 else model_image(model, arr[z]) for z in zs]
        x = np.stack([model_input(model, r, None) for r in raws])
        y = predict_tiled(run, x, model.input_hw, overlap=overlap, blend=blend, cancel=cancel)
        if out is None:
            scale = y.shape[2] // x.shape[2]
            out = np.empty((nz, arr.shape[1] * scale, arr.shape[2] * scale), dtype=arr.dtype)
        for k, (z, raw) in enumerate(zip(zs, raws, strict=True)):
            a, b = inverse_normalisation(model, arr[z] if model.slices > 1 else raw)
            out[z] = _to_dtype(y[k, 0] * np.float32(a) + np.float32(b), arr.dtype)
        report(progress, start + len(zs), nz)
    assert out is not None
    sx, sy, sz = volume.spacing
    spacing = (sx / scale, sy / scale, sz)
    origin = resampled_origin(volume.origin, volume.direction, volume.spacing, spacing)
    verb = "denoised" if model.task == "denoise" else f"super-resolved x{scale}"
    info = dataclasses.replace(volume.info, uid="", sop_instance_uids=(), warnings=(),
                               description=f"{volume.info.description} ({verb} by {model.id})".strip())
    new = Volume(out, spacing, origin, volume.direction, info)
    return EnhancementResult(new, (time.perf_counter() - t0) * 1000.0, scale, model.id)
