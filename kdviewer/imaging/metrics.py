"""Evaluation metrics: overlap and surface distance for masks, image fidelity, classification.

Masks are boolean-like arrays of any matching shape; spacings are ITK-ordered (x, y[, z]) mm,
reversed relative to the array axes, as `Volume.spacing`. Labels for classification are integer
class indices 0..n-1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import rankdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

# -- masks ------------------------------------------------------------------------------------


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return a, b


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two binary masks; 1.0 when both are empty."""
    a, b = _pair(a, b)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard index |A∩B| / |A∪B| of two binary masks; 1.0 when both are empty."""
    a, b = _pair(a, b)
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask that touch the background (face connectivity); the image edge counts as outside."""
    eroded = ndi.binary_erosion(mask, structure=ndi.generate_binary_structure(mask.ndim, 1), border_value=0)
    return mask & ~eroded


def surface_distances_mm(a: np.ndarray, b: np.ndarray, spacing_mm: float | Sequence[float] = 1.0) -> np.ndarray:
    """Distances in mm from every surface voxel of `a` to the nearest surface voxel of `b`, then b to a.

    Both masks must be non-empty. `spacing_mm`: a scalar or one value per axis in (x, y[, z]) order.
    Returns a 1-D float64 array (the directed distances A->B followed by B->A).
    """
    a, b = _pair(a, b)
    if not a.any() or not b.any():
        raise ValueError("surface distances need two non-empty masks")
    sampling = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (a.ndim,))
    sampling = tuple(sampling[::-1])  # (x, y, z) -> array axes (z, y, x)
    surf_a, surf_b = _surface(a), _surface(b)
    to_b = ndi.distance_transform_edt(~surf_b, sampling=sampling)
    to_a = ndi.distance_transform_edt(~surf_a, sampling=sampling)
    return np.concatenate([to_b[surf_a], to_a[surf_b]])


def hd95_mm(a: np.ndarray, b: np.ndarray, spacing_mm: float | Sequence[float] = 1.0) -> float:
    """95th percentile of the symmetric surface distance in mm, 2-D or 3-D (medpy's convention).

    The directed distances A->B and B->A are pooled before taking the percentile.
    Both masks empty: 0.0 (nothing to miss). Exactly one empty: inf (average with care, e.g.
    report how many cases were inf rather than a mean).
    """
    a, b = _pair(a, b)
    has_a, has_b = bool(a.any()), bool(b.any())
    if not has_a and not has_b:
        return 0.0
    if has_a != has_b:
        return float("inf")
    return float(np.percentile(surface_distances_mm(a, b, spacing_mm), 95))


# -- image fidelity ---------------------------------------------------------------------------


def psnr(x: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB of `x` against `ref`; inf when they are equal.

    `data_range`: the span of values that counts as full scale (e.g. 2000 for [-1000, 1000] HU).
    """
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if np.array_equal(x, ref):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, x, data_range=data_range))


def ssim(x: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Mean structural similarity (skimage, 7-pixel window) of a 2-D or 3-D grey image against `ref`."""
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(structural_similarity(x, ref, data_range=data_range))


# -- classification ---------------------------------------------------------------------------


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve for binary labels (1 = positive), from ranks; ties count half.

    nan when `y_true` holds only one class.
    """
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(score, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_ovr(y: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest AUC for labels 0..C-1 and probabilities (n, C); classes absent from `y` are skipped.

    For C = 2 this is the binary AUC of column 1. nan when no class has both positives and negatives.
    """
    y = np.asarray(y).ravel()
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[0] != y.size:
        raise ValueError(f"proba must be (n, C) with n = {y.size}, got {proba.shape}")
    if proba.shape[1] == 2:
        return roc_auc(y == 1, proba[:, 1])
    aucs = [roc_auc(y == c, proba[:, c]) for c in range(proba.shape[1])]
    aucs = [v for v in aucs if not np.isnan(v)]
    return float(np.mean(aucs)) if aucs else float("nan")


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of a binary ROC curve, as scikit-learn returns them (without dropping points).

    Thresholds are the distinct scores in decreasing order, preceded by inf (the point (0, 0));
    a sample counts as positive when ``score >= threshold``.
    """
    y = np.asarray(y).ravel().astype(bool)
    s = np.asarray(score, dtype=float).ravel()
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last_of_each]
    fps = last_of_each + 1 - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, s[last_of_each]]


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """(n, n) int64 counts: row = true class, column = predicted class."""
    y = np.asarray(y, dtype=np.int64).ravel()
    pred = np.asarray(pred, dtype=np.int64).ravel()
    if y.shape != pred.shape:
        raise ValueError(f"labels and predictions differ in length: {y.shape} vs {pred.shape}")
    if y.size and (min(y.min(), pred.min()) < 0 or max(y.max(), pred.max()) >= n):
        raise ValueError(f"class indices must lie in 0..{n - 1}")
    return np.bincount(y * n + pred, minlength=n * n).reshape(n, n)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def classification_metrics(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, balanced accuracy, macro precision/recall/F1, AUC and the confusion matrix.

    `proba`: (n,) probability of class 1 for binary tasks (class 1 when ``>= threshold``), or
    (n, C) class probabilities (argmax). Macro averages run over the classes present in `y` or in
    the predictions (scikit-learn's convention; 0/0 counts as 0); balanced accuracy over those in `y`.
    Binary tasks also get sensitivity and specificity of class 1. `confusion` is a nested list of ints
    (rows true, columns predicted), so the dict can be written to JSON as it is.
    """
    y = np.asarray(y, dtype=np.int64).ravel()
    p = np.asarray(proba, dtype=float)
    if p.ndim == 1:
        pred = (p >= threshold).astype(np.int64)
        n_classes, auc = 2, roc_auc(y == 1, p)
    else:
        pred = np.argmax(p, axis=1)
        n_classes, auc = p.shape[1], roc_auc_ovr(y, p)
    cm = confusion_matrix(y, pred, n_classes)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    seen = (support > 0) | (predicted > 0)
    out = {
        "n": int(y.size),
        "accuracy": float(tp.sum() / max(y.size, 1)),
        "balanced_accuracy": float(recall[support > 0].mean()) if support.any() else float("nan"),
        "precision": float(precision[seen].mean()) if seen.any() else float("nan"),
        "recall": float(recall[seen].mean()) if seen.any() else float("nan"),
        "f1": float(f1[seen].mean()) if seen.any() else float("nan"),
        "auc": auc,
        "confusion": cm.tolist(),
    }
    if n_classes == 2:
        out["sensitivity"] = float(recall[1]) if support[1] else float("nan")
        out["specificity"] = float(recall[0]) if support[0] else float("nan")
    return out
