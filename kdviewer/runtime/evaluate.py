"""Score a model on a labelled data set in any layout `kdviewer.study.datasets` reads.

Keys of the result (besides model, task, data, split, n, latency_ms_median):
classify: accuracy, balanced_accuracy, precision, recall, f1 (macro), auc (one-vs-rest macro for more
than two classes), confusion. segment: dice, jaccard, hd95_mm (means over the images where the truth
or the prediction is non-empty, inside the field of view when the layout has one), auc of the pixel
probabilities. restoration: psnr, ssim of the output and psnr_input, ssim_input of the degraded input,
both against the clean image (see `evaluate_restore`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdviewer.imaging.metrics import classification_metrics, dice, hd95_mm, jaccard, roc_auc
from kdviewer.imaging.resample import resize_2d
from kdviewer.runtime.classify import classify_image
from kdviewer.runtime.control import CancelFlag, Progress, check_cancel, report
from kdviewer.runtime.errors import ModelInputError
from kdviewer.runtime.registry import Model
from kdviewer.runtime.segment import SlicePredictor, postprocess_labels, probabilities_to_labels
from kdviewer.study.datasets import DatasetLayoutError, Item, LabelledDataset, open_dataset

AUC_MAX_PIXELS = 4_000_000  # pixels pooled for the segmentation AUC (sampled evenly beyond that)


def choose_split(ds: LabelledDataset, split: str | None) -> str:
    """The split to score: the one asked for, or the only one; several and none asked: an error listing them."""
    if split is not None:
        if split not in ds.splits:
            raise DatasetLayoutError(ds.path, f"no split {split!r}; present: {', '.join(ds.splits)}")
        return split
    if len(ds.splits) == 1:
        return ds.splits[0]
    raise DatasetLayoutError(ds.path, f"holds several splits ({', '.join(ds.splits)}); choose one with --split")


def evaluate_model(model: Model, data_path: str | Path, split: str | None = None, *, layout: str = "auto",
                   threads: int | None = None, limit: int | None = None, progress: Progress = None,
                   cancel: CancelFlag = None) -> dict[str, Any]:
    """The task's metrics of `model` on one split of a labelled data set, as one JSON-ready dict.

    limit: score only the first N items of the split (stable order). Raises `DatasetLayoutError` for
    data that does not fit, `ModelInputError` when the data's images do not fit the model.
    """
    ds = open_dataset(data_path, layout, model.task)
    name = choose_split(ds, split)
    items = ds.items(name)[: limit or None]
    if not items:
        raise DatasetLayoutError(ds.path, f"split {name!r} is empty")
    if model.task == "classify":
        metrics = evaluate_classify(model, items, threads, progress, cancel)
    elif model.task == "segment":
        metrics = evaluate_segment(model, items, threads, progress, cancel)
    else:
        from kdviewer.runtime.evaluate_restore import evaluate_restore

        metrics = evaluate_restore(model, items, threads, progress, cancel)
    head = {"model": model.id, "task": model.task, "data": str(ds.path), "layout": ds.layout, "split": name}
    return {**head, **metrics}


def _median(latencies: Sequence[float]) -> float:
    return float(np.median(latencies)) if latencies else float("nan")


def _image_of(model: Model, item: Item, sample) -> np.ndarray:
    return item.load_slices(model.slices) if model.slices > 1 and item.slice_index is not None else sample.image


def evaluate_classify(model: Model, items: Sequence[Item], threads: int | None = None,
                      progress: Progress = None, cancel: CancelFlag = None) -> dict[str, Any]:
    """classification_metrics over the items (class 1's probability for two classes), plus latency."""
    probs, labels, latencies = [], [], []
    for k, item in enumerate(items):
        check_cancel(cancel, "evaluation")
        sample = item.load()
        if sample.label is None:
            raise ModelInputError(None, f"item {item.key} has no class label")
        result = classify_image(model, _image_of(model, item, sample), threads=threads)
        probs.append(result.probabilities)
        labels.append(int(sample.label))
        latencies.append(result.latency_ms)
        report(progress, k + 1, len(items))
    p = np.stack(probs)
    if int(max(labels)) >= p.shape[1]:
        raise ModelInputError(model.onnx_path, f"the data has class {max(labels)}, the model only {p.shape[1]} classes")
    out = classification_metrics(np.asarray(labels), p[:, 1] if p.shape[1] == 2 else p)
    out["latency_ms_median"] = _median(latencies)
    return out


def _image_scores(pred: np.ndarray, truth: np.ndarray, n_labels: int, spacing) -> tuple[float, float, float]:
    """Mean dice, jaccard, hd95 over the foreground labels present in the truth or the prediction."""
    d, j, h = [], [], []
    for c in range(1, max(n_labels, 2)):
        a, b = pred == c, truth == c
        if a.any() or b.any():
            d.append(dice(a, b))
            j.append(jaccard(a, b))
            h.append(hd95_mm(a, b, spacing))
    return float(np.mean(d)), float(np.mean(j)), float(np.mean(h))


def evaluate_segment(model: Model, items: Sequence[Item], threads: int | None = None,
                     progress: Progress = None, cancel: CancelFlag = None) -> dict[str, Any]:
    """Per-image dice, jaccard, hd95 (mm when the data gives a spacing, else pixels), pooled pixel AUC."""
    pred = SlicePredictor(model, threads)
    n_labels = max(len(model.labels), 2)
    scores: list[tuple[float, float, float]] = []
    latencies: list[float] = []
    fg_scores: list[np.ndarray] = []
    fg_truth: list[np.ndarray] = []
    stride = 1
    for k, item in enumerate(items):
        check_cancel(cancel, "evaluation")
        sample = item.load()
        if sample.mask is None:
            raise ModelInputError(None, f"item {item.key} has no mask")
        img = _image_of(model, item, sample)
        t0 = time.perf_counter()
        probs = pred.probabilities([img], sample.spacing_mm)[0]
        hw = sample.mask.shape
        if probs.shape[1:] != hw:
            probs = np.moveaxis(resize_2d(np.moveaxis(probs, 0, -1), hw, order=1), -1, 0)
        labels = postprocess_labels(probabilities_to_labels(probs[None], model.postprocess)[0],
                                    model.postprocess, n_labels)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        truth = np.asarray(sample.mask).astype(np.int64)
        fov = np.ones(hw, bool) if sample.fov is None else np.asarray(sample.fov, bool)
        if labels.any() or truth.any():
            scores.append(_image_scores(np.where(fov, labels, 0), np.where(fov, truth, 0), n_labels,
                                        sample.spacing_mm or 1.0))
        if k == 0:
            stride = max(1, int(np.ceil(len(items) * fov.sum() / AUC_MAX_PIXELS)))
        fg_scores.append((1.0 - probs[0])[fov][::stride])
        fg_truth.append((truth > 0)[fov][::stride])
        report(progress, k + 1, len(items))
    arr = np.asarray(scores, dtype=float).reshape(-1, 3)
    hd = arr[:, 2][np.isfinite(arr[:, 2])]
    return {
        "n": len(items),
        "n_scored": int(arr.shape[0]),
        "dice": float(arr[:, 0].mean()) if arr.size else float("nan"),
        "jaccard": float(arr[:, 1].mean()) if arr.size else float("nan"),
        "hd95_mm": float(hd.mean()) if hd.size else float("nan"),
        "hd95_missed": int(arr.shape[0] - hd.size),
        "auc": roc_auc(np.concatenate(fg_truth), np.concatenate(fg_scores)),
        "auc_pixel_stride": stride,
        "latency_ms_median": _median(latencies),
    }
