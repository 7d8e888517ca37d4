"""Classify a 2-D image or one slice of a volume: class probabilities, optionally a saliency map."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdviewer.imaging.resample import resize_2d
from kdviewer.runtime.control import CancelFlag, Progress, check_cancel, report
from kdviewer.runtime.inputs import model_image, model_input
from kdviewer.runtime.registry import Model
from kdviewer.runtime.saliency import occlusion_saliency
from kdviewer.runtime.session import make_runner
from kdviewer.study.volume import Volume


@dataclass(frozen=True, eq=False)
class ClassificationResult:
    """labels: class names; probabilities: (K,) float32 summing to 1; latency_ms: preprocessing and
    inference of the prediction (not the saliency); saliency: (H, W) float32 in [0, 1] on the grid of
    the image given (None unless asked for)."""

    labels: tuple[str, ...]
    probabilities: np.ndarray
    latency_ms: float
    model_id: str = ""
    saliency: np.ndarray | None = None

    @property
    def top_label(self) -> str:
        return self.labels[int(np.argmax(self.probabilities))]

    @property
    def top_probability(self) -> float:
        return float(np.max(self.probabilities))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no saliency array)."""
        return {"model": self.model_id, "label": self.top_label, "probability": self.top_probability,
                "probabilities": {k: float(p) for k, p in zip(self.labels, self.probabilities, strict=True)},
                "latency_ms": round(self.latency_ms, 3)}


def to_probabilities(out: np.ndarray, kind: str) -> np.ndarray:
    """(N, K) probabilities from a classifier's (N, K) output; one sigmoid logit becomes (N, 2)."""
    out = np.asarray(out, dtype=np.float64).reshape(out.shape[0], -1)
    if kind == "logits":
        if out.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-out))
            return np.concatenate([1 - p, p], axis=1).astype(np.float32)
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    if out.shape[1] == 1:
        return np.concatenate([1 - out, out], axis=1).astype(np.float32)
    return out.astype(np.float32)


def classifier(model: Model, threads: int | None = None):
    """A function (N, C, H, W) float32 -> (N, K) probabilities for `model`."""
    run = make_runner(model, threads)
    kind = str(model.card.output.get("kind", "logits"))
    return lambda batch: to_probabilities(run(batch), kind)


def classify_image(model: Model, image: np.ndarray | Volume, slice_index: int | None = None, *,
                   saliency: bool = False, threads: int | None = None, progress: Progress = None,
                   cancel: CancelFlag = None) -> ClassificationResult:
    """Class probabilities of a 2-D image (H, W) / (H, W, 3), or of slice `slice_index` of a `Volume`.

    Preprocessing is the card's (`preprocess_image`); `saliency=True` adds an occlusion-sensitivity map
    of the top class, resized to the image's (H, W).
    """
    predict = classifier(model, threads)
    check_cancel(cancel, "classification")
    t0 = time.perf_counter()
    img = model_image(model, image, slice_index)
    x = model_input(model, img, model.input_hw)
    probs = predict(x[None])[0]
    latency_ms = (time.perf_counter() - t0) * 1000.0
    report(progress, 1, 2 if saliency else 1)
    labels = model.labels or tuple(str(i) for i in range(len(probs)))
    heat = None
    if saliency:
        small = occlusion_saliency(predict, x, int(np.argmax(probs)), cancel=cancel)
        hw = img.shape[1:] if model.slices > 1 else img.shape[:2]
        heat = np.clip(resize_2d(small, hw, order=1), 0, 1).astype(np.float32)
        report(progress, 2, 2)
    return ClassificationResult(tuple(labels), probs, latency_ms, model.id, heat)
