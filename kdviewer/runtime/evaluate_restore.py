"""Score a denoising or super-resolution model: PSNR and SSIM of its output and of its input.

Each clean image is degraded as the model's training recipe says (the card keeps the recipe as run;
defaults as the trainer's: low-dose CT when the card has a window, else Gaussian noise of 0.05;
bicubic ×scale downsampling for super-resolution), on the trainer's grid: resized first to the recipe's
``[data].input_size`` as the trainer resizes it (a CT denoiser trained on 256×256 slices meets noise simulated
on 256×256 pixels of twice the scanner's size, not the finer noise of a 512×512 projection). Degraded and clean
images go through the same intensity map (the card's window, else the clean image's range), the model runs on
the degraded one with sliding-window tiles at the image's own size, and both are compared with the clean image
in those units (data range 1 for a window, the clean image's span otherwise).
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from kdviewer.imaging.degrade import downsample, gaussian_noise, low_dose_pair
from kdviewer.imaging.metrics import psnr, ssim
from kdviewer.imaging.preprocess import resize_channels, to_channels
from kdviewer.imaging.resample import resize_2d
from kdviewer.runtime.control import CancelFlag, Progress, check_cancel, report
from kdviewer.runtime.evaluate import CaseRecord
from kdviewer.runtime.registry import Model
from kdviewer.runtime.session import make_runner
from kdviewer.runtime.tiling import predict_tiled
from kdviewer.study.datasets import Item


def _recipe_data(model: Model) -> dict[str, Any]:
    """The ``[data]`` table of the recipe the card keeps ({} when it has none or it does not parse)."""
    recipe = model.card.training.get("recipe")
    if isinstance(recipe, str) and recipe.strip():
        try:
            data = tomllib.loads(recipe).get("data", {})
        except tomllib.TOMLDecodeError:
            return {}
        return data if isinstance(data, dict) else {}
    return {}


def training_grid(model: Model) -> tuple[int, int] | None:
    """(H, W) the trainer resized each clean image to (the recipe's ``[data].input_size``), or None."""
    size = _recipe_data(model).get("input_size")
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        return None
    return (h, w) if h > 0 and w > 0 else None


def degradation(model: Model) -> dict[str, Any]:
    """The degradation the model was trained against: the card's recipe ``[data].degrade`` over the defaults."""
    given = dict(_recipe_data(model).get("degrade") or {})
    if model.task == "super_resolve":
        scale = int(model.card.output.get("scale") or given.get("factor") or 2)
        return {"kind": "downsample", "factor": scale, "method": "bicubic", **given}
    window = model.preprocess.get("window")
    default = {"kind": "low_dose", "photons": 1e4, "angles": 360} if window else {"kind": "gaussian", "sigma": 0.05}
    return {**default, **given}


def _intensity_map(model: Model, clean: np.ndarray):
    """f(array) -> model units, from the card's window (clipped to [0, 1]) or the clean image's range."""
    prep = model.preprocess
    mode = prep.get("normalize", "minmax")
    if mode == "window":
        c, w = (float(v) for v in prep["window"])
        lo, span, clip = c - w / 2, w, True
    elif mode == "zscore":
        lo, span, clip = float(clean.mean()), float(clean.std() or 1.0), False
    elif mode == "minmax":
        lo, span, clip = float(clean.min()), float(clean.max() - clean.min() or 1.0), False
    else:
        lo, span, clip = 0.0, 1.0, False

    def f(a: np.ndarray) -> np.ndarray:
        out = ((np.asarray(a, dtype=np.float32) - lo) / span).astype(np.float32)
        return np.clip(out, 0, 1, out=out) if clip else out

    return f


def degraded_pair(model: Model, image: np.ndarray, spacing_mm, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(model input (h, w), clean target (H, W)), both float32 in model units, from one clean image
    resized to the trainer's grid (`training_grid`) as the trainer resizes it; pixel size scaled to match."""
    grey = to_channels(image, 1)
    orig_w = grey.shape[-1]
    clean = resize_channels(grey, training_grid(model))[0]
    deg = degradation(model)
    pixel_mm = float(spacing_mm[0]) * orig_w / clean.shape[-1] if spacing_mm else 1.0  # as the trainer
    if deg["kind"] == "downsample":
        f = int(deg["factor"])
        clean = clean[: clean.shape[0] // f * f, : clean.shape[1] // f * f]
        low = downsample(clean, f, str(deg.get("method", "bicubic")))
        norm = _intensity_map(model, clean)
        return norm(low), norm(clean)
    if deg["kind"] == "low_dose":
        noisy, fbp = low_dose_pair(clean, float(deg.get("photons", 1e4)), int(deg.get("angles", 360)), rng, pixel_mm)
        target = fbp if deg.get("target", "fbp") == "fbp" else clean
        norm = _intensity_map(model, target)
        return norm(noisy), norm(target)
    norm = _intensity_map(model, clean)
    target = norm(clean)
    return gaussian_noise(target, float(deg.get("sigma", 0.05)), rng), target


def restore_records(model: Model, items: Sequence[Item], threads: int | None = None, progress: Progress = None,
                    cancel: CancelFlag = None, seed: int = 0, *, keep_arrays: bool = False) -> Iterator[CaseRecord]:
    """One record per item: PSNR (dB) and SSIM of the output and of the (upsampled) degraded input.

    The degradations are drawn from one generator seeded with `seed`, item after item, so two models
    with the same degradation and intensity map see the same degraded inputs.
    """
    run = make_runner(model, threads)
    rng = np.random.default_rng(seed)
    windowed = model.preprocess.get("normalize") == "window"
    for k, item in enumerate(items):
        check_cancel(cancel, "evaluation")
        sample = item.load()
        x, target = degraded_pair(model, sample.image, sample.spacing_mm, rng)
        t0 = time.perf_counter()
        x_in = np.repeat(x[None, None], model.channels, axis=1)
        out = predict_tiled(run, x_in, model.input_hw, cancel=cancel)[0, 0]
        latency_ms = (time.perf_counter() - t0) * 1000.0
        out = out[: target.shape[0], : target.shape[1]]
        base = x if x.shape == target.shape else resize_2d(x, target.shape, order=3)
        span = 1.0 if windowed else float(target.max() - target.min()) or 1.0
        scores = {"psnr": psnr(out, target, span), "ssim": ssim(out, target, span),
                  "psnr_input": psnr(base, target, span), "ssim_input": ssim(base, target, span)}
        yield CaseRecord(item.key, latency_ms, scores=scores, prediction=out if keep_arrays else None,
                         target=target if keep_arrays else None)
        report(progress, k + 1, len(items))


def summarise_restore(model: Model, records: Sequence[CaseRecord]) -> dict[str, Any]:
    """Mean PSNR (dB) and SSIM of the outputs and of the degraded inputs, the degradation, median latency."""
    r = np.asarray([[c.scores[k] for k in ("psnr", "ssim", "psnr_input", "ssim_input")] for c in records],
                   dtype=float)
    return {"n": len(records), "psnr": float(r[:, 0].mean()), "ssim": float(r[:, 1].mean()),
            "psnr_input": float(r[:, 2].mean()), "ssim_input": float(r[:, 3].mean()),
            "degradation": degradation(model), "latency_ms_median": float(np.median([c.latency_ms for c in records]))}


def evaluate_restore(model: Model, items: Sequence[Item], threads: int | None = None,
                     progress: Progress = None, cancel: CancelFlag = None, seed: int = 0) -> dict[str, Any]:
    """Mean PSNR (dB) and SSIM of the output and of the (upsampled) degraded input against the clean image."""
    return summarise_restore(model, list(restore_records(model, items, threads, progress, cancel, seed)))
