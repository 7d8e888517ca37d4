"""Model-zoo table: one row per model of one task, every number measured in the same run (docs/MODEL_ZOO.md).

    .venv/bin/python benchmarks/zoo_table.py --data ../shared/datasets/breastmnist --split val \\
        teacher=runs/breast-teacher/breast-us-teacher.onnx kd=runs/breast-student/breast-us-student.onnx \\
        nokd=runs/breast-baseline/breast-us-baseline.onnx int8=runs/breast-student/breast-us-student-int8.onnx \\
        [--threads 2] [--rounds 7] [--layout auto] [--limit N] [--markdown] [--classic nlm|bicubic|frangi]

Each LABEL=MODEL is an ``.onnx`` with its card ``.json`` beside it (or the card, or a registry id), loaded
with `kdviewer.runtime.resolve_model`, so the card is checked against the schema and the file against
the card's sha256. Per model:

- parameters (the card's ``architecture.parameters``), the teacher/model parameter ratio, the file size (MB);
- latency: median ms of batch-1 onnxruntime runs (kdviewer's `make_runner`, ``--threads`` intra-op threads,
  each model in the convolution layout the runtime chose for it on this machine; the footnote names those run
  without onnxruntime's NCHWc rewrite)
  on a random input of the card's shape (a segmenter whose card averages flipped views, ``postprocess.flip_average``,
  timed on all of them, as it runs); ``--rounds`` rounds, each timing every model in turn (the order
  rotated every round) so load from other jobs hits all of them alike; speed-up = teacher median / its
  median. The teacher is the row labelled ``teacher``, else the row whose card id the others name as
  ``teacher``;
- the task's metrics from `kdviewer.runtime.evaluate` on DATA / ``--split`` (exactly what
  ``kdviewer evaluate MODEL DATA --split S`` reports; every model scores the same items): classification
  AUC, accuracy, balanced accuracy, macro F1; segmentation Dice, pixel AUC; restoration PSNR, SSIM and the
  degraded input's PSNR. Each model is evaluated once (deterministic); only the latency is repeated.
  ``--split val`` (or ``train``) on data that training split itself (DRIVE, DICOM folders, class folders) is
  the recipe's split rebuilt from the teacher's card (else the first model's), as ``kdviewer evaluate`` does;
- with rows ``teacher``, ``kd`` and ``nokd``: the share of the teacher - no-KD gap on the primary metric
  (AUC, Dice, PSNR) that each other row closes, (row - nokd) / (teacher - nokd); "n/a" when the teacher
  is not above the no-KD student.

``--classic NAME`` (repeatable) adds a classic, non-learned baseline row scored on the very same items with
the same metric code: ``nlm`` (denoise: scikit-image non-local means on the degraded inputs evaluate made,
from evaluate_restore's own `degraded_pair` and seed, in model units; sigma per image, h = factor × sigma
with the factor of {0.6, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0} of the best mean PSNR on the first ``--tune-items`` training items,
0.8 when there is no training split; patch 5, distance 6, fast mode), ``bicubic`` (super-resolution: the
cubic upsampling of the low-res input that evaluate already scores as the input PSNR, timed) and ``frangi``
(vessel segmentation: Frangi vesselness with black ridges on the grey image, thresholded at the level of
the best mean Dice inside the FOV on the training items; Dice and pixel AUC by evaluate's code). Classic
rows show "—" for parameters, MB and speed-up, their own median ms per image, and no KD gap; a note under
the table names each one's parameters.

``--markdown`` prints only a GitHub table (and one line saying how it was measured), ready to paste.
Errors (a missing file, a bad card, data that does not fit) print one line and exit with code 2.
It asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import load_average, median_iqr, print_table

# task -> [(result key, column title)]; the first is the primary metric (the KD gap is measured on it).
METRICS: dict[str, list[tuple[str, str]]] = {
    "classify": [("auc", "AUC"), ("accuracy", "accuracy"), ("balanced_accuracy", "bal. accuracy"),
                 ("f1", "macro F1")],
    "segment": [("dice", "Dice"), ("auc", "pixel AUC")],
    "restore": [("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("psnr_input", "input PSNR (dB)")],
}
TARGET_S_PER_ROUND = 0.2  # each model runs about this long per round (at least one run): medians of many runs
MAX_RUNS_PER_ROUND = 200
WARM_UP_RUNS = 2


class ZooError(Exception):
    """A problem the user can fix (bad argument, file, card or data): one line, exit code 2."""


@dataclass
class Row:
    """One model of the table and what was measured of it."""

    label: str
    model: Any  # kdviewer.runtime.Model
    metrics: dict[str, Any] = field(default_factory=dict)
    eval_s: float = 0.0
    times_ms: list[float] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)  # evaluate's CaseRecords, one per item
    conv_plan: str = ""  # the convolution layout the runtime chose for this model here (blocked | plain)


@dataclass
class ClassicRow:
    """A classic (non-learned) baseline scored on the same items: its metrics, per-image times and a note."""

    label: str
    method: str  # a key of CLASSIC
    metrics: dict[str, Any] = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)
    note: str = ""
    eval_s: float = 0.0


def task_group(task: str) -> str:
    """classify | segment | restore (denoise and super_resolve are scored alike)."""
    return task if task in ("classify", "segment") else "restore"


def parse_pairs(pairs: list[str]) -> list[tuple[str, str]]:
    """[(label, model)] from LABEL=MODEL arguments; labels must be unique and non-empty."""
    out: list[tuple[str, str]] = []
    for pair in pairs:
        label, sep, model = pair.partition("=")
        if not sep or not label.strip() or not model.strip():
            raise ZooError(f"expected LABEL=MODEL (e.g. teacher=runs/x/model.onnx), got {pair!r}")
        if label in {lab for lab, _ in out}:
            raise ZooError(f"label {label!r} given twice")
        out.append((label.strip(), model.strip()))
    if not out:
        raise ZooError("no models given: pass LABEL=MODEL arguments")
    return out


def load_rows(pairs: list[tuple[str, str]]) -> list[Row]:
    """Load every model with the runtime's own loader (card schema and sha256 checked); one task for all."""
    from kdviewer.runtime import resolve_model

    rows = []
    for label, name in pairs:
        p = Path(name)
        if p.suffix.lower() in (".onnx", ".json") and not p.exists():
            raise ZooError(f"{label}: no such file {p}")
        rows.append(Row(label, resolve_model(name)))
    groups = {task_group(r.model.task) for r in rows}
    if len(groups) > 1:
        raise ZooError("the models are of different tasks: "
                       + ", ".join(f"{r.label} {r.model.task}" for r in rows))
    return rows


def find_teacher(rows: list[Row]) -> Row | None:
    """The row labelled "teacher", else the first row whose card id another row's card names as its teacher."""
    for r in rows:
        if r.label == "teacher":
            return r
    named = [r.model.card.teacher for r in rows if r.model.card.teacher]
    for teacher_id in named:
        for r in rows:
            if r.model.id == teacher_id:
                return r
    return None


def evaluate_rows(rows: list[Row], data: str, split: str | None, layout: str, threads: int,
                  limit: int | None, reference: Row | None = None) -> Any:
    """Score every model on the same items, as `evaluate_model` does; returns evaluate's `DataSelection`.

    `reference` (the teacher, else the first row) is the model whose card's training recipe rebuilds
    ``--split val`` / ``train`` on data that training split itself, exactly as ``kdviewer evaluate`` does.
    """
    from kdviewer.runtime.evaluate import dataset_items, evaluate_items, result_head, summarise_records

    ref = reference or rows[0]
    sel = dataset_items(data, ref.model.task, split, layout=layout, limit=limit, model=ref.model)
    for line in sel.warnings:
        print(f"zoo_table: warning: {line}", file=sys.stderr, flush=True)
    ds, name, items = sel
    for r in rows:
        print(f"evaluating {r.label} ({r.model.id}) on {len(items)} items ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        r.records = list(evaluate_items(r.model, items, threads))
        r.metrics = {**result_head(r.model, ds, name), **summarise_records(r.model, r.records)}
        r.eval_s = time.perf_counter() - t0
    return sel


# --classic NAME -> (the model task it is a baseline for, row label, what it is)
CLASSIC: dict[str, tuple[str, str, str]] = {
    "nlm": ("denoise", "NLM (classic)", "non-local means (scikit-image)"),
    "bicubic": ("super_resolve", "bicubic (classic)", "cubic upsampling (scikit-image)"),
    "frangi": ("segment", "Frangi (classic)", "Frangi vesselness + threshold"),
}
NLM_KW: dict[str, Any] = {"patch_size": 5, "patch_distance": 6, "fast_mode": True}
NLM_H_FACTORS = (0.6, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0)  # h = factor × estimate_sigma, the best mean PSNR on training items
NLM_H_DEFAULT = 0.8
FRANGI_THRESHOLDS = np.geomspace(1e-4, 0.9, 81)  # levels of the response / its maximum inside the image's FOV
TUNE_ITEMS = 16  # training items that choose NLM's h and Frangi's threshold (DRIVE's 16 recipe training images)


def training_items(model: Any, data: str, layout: str, n: int) -> tuple[list[Any], str]:
    """The first `n` items of the training split (the recipe's own when training split the data itself),
    and where they came from; ([], why) when there is none."""
    from kdviewer.errors import KdviewerError
    from kdviewer.runtime.evaluate import dataset_items

    try:
        sel = dataset_items(data, model.task, "train", layout=layout, limit=n, model=model)
    except (KdviewerError, OSError) as exc:
        return [], str(exc).splitlines()[0]
    return sel.items, sel.source or "the data's own 'train' split"


def degraded_inputs(model: Any, items: list[Any]):
    """(key, model input, clean target) per item: evaluate_restore's own `degraded_pair`, drawn from one
    generator seeded as `restore_records` seeds it, item after item, so these are the inputs the models saw."""
    import inspect

    from kdviewer.runtime.evaluate_restore import degraded_pair, restore_records

    rng = np.random.default_rng(inspect.signature(restore_records).parameters["seed"].default)
    for item in items:
        sample = item.load()
        x, target = degraded_pair(model, sample.image, sample.spacing_mm, rng)
        yield item.key, x, target


def _span(model: Any, target: np.ndarray) -> float:
    """The PSNR/SSIM data range `restore_records` uses: 1 for a window, else the clean image's span."""
    return 1.0 if model.preprocess.get("normalize") == "window" else float(target.max() - target.min()) or 1.0


def has_pywt() -> bool:
    """skimage's estimate_sigma needs PyWavelets, which kdviewer does not require."""
    try:
        import pywt  # noqa: F401
    except ImportError:
        return False
    return True


def noise_sigma(x: np.ndarray) -> float:
    """Gaussian noise sigma: skimage's estimate_sigma (Donoho's MAD of the finest db2 diagonal wavelet
    coefficients / 0.6745) when PyWavelets is installed, else the same estimator on the Haar diagonal detail."""
    if has_pywt():
        from skimage.restoration import estimate_sigma

        return float(estimate_sigma(x))
    a = np.asarray(x, dtype=np.float64)
    a = a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2]
    hh = (a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(hh)) / 0.6745)


def sigma_how() -> str:
    return ("sigma = skimage estimate_sigma per image" if has_pywt() else
            "sigma per image by estimate_sigma's estimator (MAD of the finest diagonal wavelet detail / 0.6745) "
            "on the Haar wavelet, PyWavelets (which estimate_sigma needs) not being installed")


def nlm(x: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
    """denoise_nl_means with sigma from `noise_sigma` and h = factor × sigma; (output, sigma)."""
    from skimage.restoration import denoise_nl_means

    sigma = noise_sigma(x)
    return denoise_nl_means(x, h=factor * sigma, sigma=sigma, **NLM_KW).astype(np.float32), sigma


def choose_nlm_h(model: Any, train: list[Any], why: str) -> tuple[float, str]:
    """The h factor of the best mean PSNR on the training items (ties: the one nearest 0.8), and how."""
    from kdviewer.imaging.metrics import psnr

    if not train:
        return NLM_H_DEFAULT, f"h = {NLM_H_DEFAULT} sigma fixed (no training split to choose on: {why})"
    got: dict[float, list[float]] = {f: [] for f in NLM_H_FACTORS}
    for _key, x, target in degraded_inputs(model, train):
        for f in NLM_H_FACTORS:
            got[f].append(psnr(nlm(x, f)[0], target, _span(model, target)))
    mean = {f: float(np.mean(v)) for f, v in got.items()}
    best = max(NLM_H_FACTORS, key=lambda f: (mean[f], -abs(f - NLM_H_DEFAULT)))
    edge = (f" (NB: {best} is the edge of the grid: a larger or smaller h may do better; on correlated noise such "
            "as low-dose CT's filtered back-projection the estimated sigma is below the noise's std)"
            if best in (min(NLM_H_FACTORS), max(NLM_H_FACTORS)) else "")
    return best, (f"h = {best} sigma, the best mean PSNR on {len(train)} training items ({why}) of "
                  + ", ".join(f"{f}: {mean[f]:.2f} dB" for f in NLM_H_FACTORS) + edge)


def classic_restore(method: str, ref: Row, items: list[Any], train: list[Any], why: str) -> ClassicRow:
    """NLM (denoise) or cubic upsampling (super-resolution) of the degraded inputs evaluate scored, scored
    with the same psnr / ssim in the same units; each item's input PSNR is checked against the model's."""
    from kdviewer.imaging.metrics import psnr, ssim
    from kdviewer.imaging.resample import resize_2d
    from kdviewer.runtime.evaluate import CaseRecord
    from kdviewer.runtime.evaluate_restore import summarise_restore

    model = ref.model
    factor, how = choose_nlm_h(model, train, why) if method == "nlm" else (0.0, "")
    records, sigmas = [], []
    for (key, x, target), seen in zip(degraded_inputs(model, items), ref.records, strict=True):
        t0 = time.perf_counter()
        if method == "nlm":
            out, sigma = nlm(x, factor)
            sigmas.append(sigma)
        else:
            out = resize_2d(x, target.shape, order=3)
        ms = (time.perf_counter() - t0) * 1000.0
        out = out[: target.shape[0], : target.shape[1]]
        base = x if x.shape == target.shape else resize_2d(x, target.shape, order=3)
        span = _span(model, target)
        scores = {"psnr": psnr(out, target, span), "ssim": ssim(out, target, span),
                  "psnr_input": psnr(base, target, span), "ssim_input": ssim(base, target, span)}
        if key != seen.key or not math.isclose(scores["psnr_input"], seen.scores["psnr_input"], abs_tol=1e-6):
            raise ZooError(f"classic {method}: item {key}'s degraded input is not the one evaluate scored "
                           f"for {ref.label} (input PSNR {scores['psnr_input']:.4f} vs {seen.scores['psnr_input']:.4f})")
        records.append(CaseRecord(key, ms, scores=scores))
    row = ClassicRow(CLASSIC[method][1], method, summarise_restore(model, records), [r.latency_ms for r in records])
    if method == "nlm":
        row.note = (f"nlm: skimage.restoration.denoise_nl_means on the degraded input in model units, patch_size 5, "
                    f"patch_distance 6, fast_mode=True, {sigma_how()} (mean {np.mean(sigmas):.4f}), "
                    f"{how}.")
    else:
        from kdviewer.runtime.evaluate_restore import degradation

        deg = degradation(model).get("factor", "?")
        row.note = (f"bicubic: the low-res input (x{deg}) upsampled with kdviewer's resize_2d order 3 (scikit-image "
                    "cubic spline, edge borders): the very upsampling evaluate_restore scores as the input PSNR, "
                    "so its PSNR/SSIM are the models' input PSNR/SSIM, timed here.")
    return row


def _grey(model: Any, image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The image as the model sees it in grey: its 1-channel luminance, or the green channel for RGB models."""
    from kdviewer.imaging.preprocess import to_channels
    from kdviewer.imaging.resample import resize_2d

    img = np.asarray(image, dtype=np.float64)
    grey = img[..., 1] if model.channels != 1 and img.ndim == 3 and img.shape[-1] >= 3 else to_channels(img, 1)[0]
    grey = np.asarray(grey, dtype=np.float64)
    return grey if grey.shape == shape else resize_2d(grey, shape, order=1).astype(np.float64)


def vesselness(model: Any, sample: Any) -> tuple[np.ndarray, np.ndarray]:
    """(Frangi response with black_ridges=True / its maximum inside the FOV, FOV), at the mask's size;
    outside the FOV the image is filled with the FOV's mean first, so the FOV border is no ridge."""
    from skimage.filters import frangi

    shape = tuple(np.asarray(sample.mask).shape)
    fov = np.ones(shape, bool) if sample.fov is None else np.asarray(sample.fov, bool)
    grey = _grey(model, sample.image, shape)
    if fov.any() and not fov.all():
        grey = np.where(fov, grey, grey[fov].mean())
    r = frangi(grey, black_ridges=True)
    top = float(r[fov].max()) if fov.any() else 0.0
    return (r / top if top > 0 else r), fov


def choose_frangi_threshold(model: Any, train: list[Any], why: str) -> tuple[float | None, str]:
    """The level of the best mean Dice inside the FOV on the training items (None: Otsu per image), and how."""
    from kdviewer.imaging.metrics import dice

    if not train:
        return None, f"Otsu's threshold per image inside the FOV (no training split to choose on: {why})"
    mean = np.zeros(len(FRANGI_THRESHOLDS))
    for item in train:
        sample = item.load()
        r, fov = vesselness(model, sample)
        truth = (np.asarray(sample.mask) > 0) & fov
        mean += [dice((r >= t) & fov, truth) for t in FRANGI_THRESHOLDS]
    mean /= len(train)
    k = int(np.argmax(mean))
    return float(FRANGI_THRESHOLDS[k]), (f"threshold {FRANGI_THRESHOLDS[k]:.4g} of the per-image maximum, the best "
                                         f"mean Dice inside the FOV ({mean[k]:.4f}) on {len(train)} training items "
                                         f"({why}) over {len(FRANGI_THRESHOLDS)} levels {FRANGI_THRESHOLDS[0]:g}-"
                                         f"{FRANGI_THRESHOLDS[-1]:g}")


def classic_frangi(ref: Row, items: list[Any], train: list[Any], why: str) -> ClassicRow:
    """Frangi vesselness thresholded at the training-chosen level, scored by evaluate's own dice / pixel-AUC code."""
    from skimage.filters import threshold_otsu

    from kdviewer.runtime.evaluate import AUC_MAX_PIXELS, CaseRecord, _image_scores, summarise_segment

    model = ref.model
    if len(model.labels) > 2:
        raise ZooError(f"--classic frangi segments one foreground class; {ref.label} has labels {model.labels}")
    level, how = choose_frangi_threshold(model, train, why)
    records, stride = [], 1
    for k, item in enumerate(items):
        sample = item.load()
        if sample.mask is None:
            raise ZooError(f"classic frangi: item {item.key} has no mask")
        t0 = time.perf_counter()
        r, fov = vesselness(model, sample)
        t = level if level is not None else float(threshold_otsu(r[fov]))
        labels = (r >= t).astype(np.int64)
        ms = (time.perf_counter() - t0) * 1000.0
        truth = np.asarray(sample.mask).astype(np.int64)
        labels_in, truth_in = np.where(fov, labels, 0), np.where(fov, truth, 0)
        scores: dict[str, float] = {}
        if labels.any() or truth.any():
            d, j, h = _image_scores(labels_in, truth_in, 2, sample.spacing_mm or 1.0)
            scores = {"dice": d, "jaccard": j, "hd95_mm": h}
        if k == 0:
            stride = max(1, int(np.ceil(len(items) * fov.sum() / AUC_MAX_PIXELS)))
        records.append(CaseRecord(item.key, ms, scores=scores, truth_pixels=int((truth_in > 0).sum()),
                                  predicted_pixels=int((labels_in > 0).sum()), auc_scores=r[fov][::stride],
                                  auc_truth=(truth > 0)[fov][::stride], auc_stride=stride))
    grey = "the green channel" if model.channels != 1 else "the grey image (luminance, as the model's 1-channel input)"
    note = (f"frangi: skimage.filters.frangi(black_ridges=True, sigmas 1, 3, 5, 7, 9, alpha = beta = 0.5, gamma auto) "
            f"on {grey} at the mask's size, outside the FOV filled with the FOV mean, response / its maximum "
            f"inside the FOV, {how}; Dice and pixel AUC (of the response) by evaluate's own code inside the FOV.")
    return ClassicRow(CLASSIC["frangi"][1], "frangi", summarise_segment(records),
                      [r.latency_ms for r in records], note)


def run_classics(methods: list[str], ref: Row, items: list[Any], data: str, layout: str, split: str,
                 tune_items: int) -> list[ClassicRow]:
    """One ClassicRow per method (in the order given), on the very items the models scored."""
    out = []
    for method in dict.fromkeys(methods):
        task = CLASSIC[method][0]
        if ref.model.task != task:
            raise ZooError(f"--classic {method} is a baseline for {task} models; {ref.label} is {ref.model.task}")
        print(f"classic {method} on {len(items)} items"
              + (f" (choosing its parameters on up to {tune_items} training items)" if method != "bicubic" else "")
              + " ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        train, why = training_items(ref.model, data, layout, tune_items) if method != "bicubic" else ([], "")
        if split == "train" and train:
            why += "; NB: the scored split is the training split too"
        row = (classic_frangi(ref, items, train, why) if method == "frangi"
               else classic_restore(method, ref, items, train, why))
        row.eval_s = time.perf_counter() - t0
        out.append(row)
    return out


def measure_latency(rows: list[Row], threads: int, rounds: int) -> None:
    """Fill each row's times_ms: after warm-up, `rounds` rounds timing every model in turn (order rotated)."""
    from kdviewer.runtime.segment import flip_averaged, flip_views
    from kdviewer.runtime.session import layout_of, make_runner

    rng = np.random.default_rng(0)
    runners = []
    for r in rows:
        (h, w), c = r.model.input_hw, r.model.channels
        x = rng.standard_normal((1, c, h, w)).astype(np.float32)
        run = make_runner(r.model, threads)
        if r.model.task == "segment" and len(views := flip_views(r.model)) > 1:  # timed with all its views
            run = flip_averaged(run, str(r.model.card.output.get("kind", "logits")), views)
        r.conv_plan = layout_of(r.model, threads)
        warm = []
        for _ in range(WARM_UP_RUNS + 2):  # the fastest of the last runs sets how many runs a round gets
            t0 = time.perf_counter()
            run(x)
            warm.append(time.perf_counter() - t0)
        one = max(min(warm[WARM_UP_RUNS:]), 1e-6)
        runners.append((r, run, x, int(min(MAX_RUNS_PER_ROUND, max(1, math.ceil(TARGET_S_PER_ROUND / one))))))
    for k in range(rounds):
        for r, run, x, n in runners[k % len(runners):] + runners[:k % len(runners)]:
            for _ in range(n):
                t0 = time.perf_counter()
                run(x)
                r.times_ms.append((time.perf_counter() - t0) * 1000.0)


def layouts_note(rows: list[Row]) -> str:
    """", convolutions without onnxruntime's NCHWc rewrite for a, b (faster here)" when the runtime chose that
    plan for some models (`kdviewer.runtime.session.load_session`), else ""."""
    plain = [r.label for r in rows if r.conv_plan == "plain"]
    return f", convolutions without onnxruntime's NCHWc rewrite for {', '.join(plain)} (faster here)" if plain else ""


def _num(v: Any, digits: int = 4) -> str:
    return "nan" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def gap_closed(rows: list[Row], teacher: Row | None, key: str) -> dict[str, str]:
    """label -> share of the teacher - no-KD gap closed on `key`, for every row but the teacher and no-KD."""
    by_label = {r.label: r for r in rows}
    if teacher is None or "kd" not in by_label or "nokd" not in by_label:
        return {}
    t, base = teacher.metrics.get(key), by_label["nokd"].metrics.get(key)
    out = {}
    for r in rows:
        if r is teacher or r.label == "nokd":
            continue
        v = r.metrics.get(key)
        if None in (t, base, v) or not all(math.isfinite(float(z)) for z in (t, base, v)) or not t > base:
            out[r.label] = "n/a"
        else:
            out[r.label] = f"{100.0 * (v - base) / (t - base):.0f}%"
    return out


def table(rows: list[Row], teacher: Row | None, markdown: bool, classics: list[ClassicRow] | None = None
          ) -> tuple[list[str], list[list[str]]]:
    """Headers and cells; `markdown` drops the IQR and the run counts (for the docs). Classic rows come last:
    "—" for id, weights, parameters, MB and speed-up (their latency is per real image), not in the KD gap."""
    group = task_group(rows[0].model.task)
    metrics = METRICS[group]
    gaps = gap_closed(rows, teacher, metrics[0][0])
    t_params = teacher.model.card.architecture.get("parameters") if teacher else None
    t_ms = median_iqr(teacher.times_ms)[0] if teacher else None
    headers = ["model", "id", "architecture", "weights", "parameters", "teacher/model params", "file (MB)",
               "latency (ms)", "speed-up", *[title for _, title in metrics]]
    if gaps:
        headers.append(f"KD gap closed ({metrics[0][1]})")
    def latency(times: list[float]) -> tuple[float, str]:
        ms, iqr = median_iqr(times)
        return ms, f"{ms:.2f}" if markdown else f"{ms:.2f} (IQR {iqr:.2f}, n={len(times)})"

    def scores(m: dict[str, Any]) -> list[str]:
        return [_num(m.get(key), 2 if key.startswith("psnr") else 4) for key, _ in metrics]

    cells = []
    for r in rows:
        card = r.model.card
        params = card.architecture.get("parameters")
        ms, lat = latency(r.times_ms)
        row = [r.label, r.model.id, str(card.architecture.get("name", "?")), str(card.file.get("weights", "float32")),
               f"{params / 1e6:.2f} M" if params else "?",
               f"{t_params / params:.1f}×" if t_params and params else "",
               f"{r.model.onnx_path.stat().st_size / 1e6:.2f}",
               lat, f"{t_ms / ms:.1f}×" if t_ms else "", *scores(r.metrics)]
        if gaps:
            row.append(gaps.get(r.label, "—"))
        cells.append(row)
    for c in classics or []:
        row = [c.label, "—", CLASSIC[c.method][2], "—", "—", "", "—", latency(c.times_ms)[1], "—",
               *scores(c.metrics)]
        if gaps:
            row.append("—")
        cells.append(row)
    return headers, cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="LABEL=MODEL",
                        help="an .onnx with its card beside it (or the card, or a registry id); labels teacher, "
                             "kd and nokd give the speed-up reference and the KD gap")
    parser.add_argument("--data", required=True, help="labelled data set (any layout kdviewer reads)")
    parser.add_argument("--split", help="the split to score (needed when DATA holds several)")
    parser.add_argument("--layout", default="auto", help="force a layout instead of detecting it")
    parser.add_argument("--limit", type=int, help="score only the first N items (quick checks; not for the docs)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="latency rounds over all models (default 7)")
    parser.add_argument("--markdown", action="store_true", help="print only a GitHub table, ready to paste")
    parser.add_argument("--classic", action="append", default=[], choices=list(CLASSIC), metavar="NAME",
                        help="add a classic baseline row scored on the same items (repeatable): nlm (denoise), "
                             "bicubic (super_resolve), frangi (segment)")
    parser.add_argument("--tune-items", type=int, default=TUNE_ITEMS,
                        help=f"training items that choose NLM's h and Frangi's threshold (default {TUNE_ITEMS})")
    args = parser.parse_args(argv)

    from kdviewer.errors import KdviewerError

    try:
        if args.threads < 1 or args.rounds < 1:
            raise ZooError("--threads and --rounds must be at least 1")
        if args.limit is not None and args.limit < 1:
            raise ZooError("--limit must be at least 1")
        if args.tune_items < 1:
            raise ZooError("--tune-items must be at least 1")
        rows = load_rows(parse_pairs(args.models))
        teacher = find_teacher(rows)
        t0 = time.perf_counter()
        sel = evaluate_rows(rows, args.data, args.split, args.layout, args.threads, args.limit, teacher)
        data, split, n = str(sel.ds.path), sel.split, len(sel.items)
        classics = run_classics(args.classic, teacher or rows[0], sel.items, args.data, args.layout, split,
                                args.tune_items)
        eval_s = time.perf_counter() - t0
        print(f"timing {len(rows)} models, {args.rounds} rounds ...", file=sys.stderr, flush=True)
        measure_latency(rows, args.threads, args.rounds)
    except (ZooError, KdviewerError, OSError) as exc:
        print(f"zoo_table: error: {exc}".splitlines()[0], file=sys.stderr)
        return 2

    import onnxruntime

    headers, cells = table(rows, teacher, args.markdown, classics)
    measured = (f"{rows[0].model.task} on {data} split {split!r} ("
                + "".join(f"{line}; " for line in (sel.source, *sel.warnings) if line)
                + f"{n} items" + (f", first {args.limit} only" if args.limit else "") + "); latency: median of batch-1 "
                f"onnxruntime runs on the card's input shape, {args.threads} threads, {args.rounds} rounds "
                f"alternating between the models{layouts_note(rows)}; speed-up and parameter ratio against "
                f"{teacher.label + ' (' + teacher.model.id + ')' if teacher else 'no teacher (none given)'}; "
                f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                f"onnxruntime {onnxruntime.__version__}, load {load_average()}.")
    notes = ""
    if classics:
        notes = ("Classic baselines (scored on the same items with the same metric code; latency: median ms per "
                 "image of the method alone, one process, not comparable with the batch-1 model runs, so no "
                 "speed-up; not in the KD gap): " + " ".join(c.note for c in classics))
    if args.markdown:
        print_table(headers, cells)
        print(f"\n*Measured in one run: {measured}*")
        if notes:
            print(f"\n*{notes}*")
        return 0
    print(f"# Model-zoo table ({time.strftime('%Y-%m-%d %H:%M')})\n\n{measured}\n")
    print_table(headers, cells)
    if notes:
        print(f"\n{notes}")
    print(f"\nEvaluation: {eval_s:.1f} s for all models ("
          + ", ".join(f"{r.label} {r.eval_s:.1f} s" for r in [*rows, *classics]) + "); each evaluated once.")
    if teacher is None:
        print("No teacher among the rows (label one `teacher`): no speed-up, ratio or KD gap.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
