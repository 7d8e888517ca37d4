"""Score a model on a labelled data set in any layout `kdviewer.study.datasets` reads.

Keys of the result (besides model, task, data, split, n, latency_ms_median):
classify: accuracy, balanced_accuracy, precision, recall, f1 (macro), auc (one-vs-rest macro for more
than two classes), confusion. segment: dice, jaccard, hd95_mm (means over the images where the truth
or the prediction is non-empty, inside the field of view when the layout has one), auc of the pixel
probabilities. restoration: psnr, ssim of the output and psnr_input, ssim_input of the degraded input,
both against the clean image (see `evaluate_restore`).

Simulated nodules: a segmentation model whose card recipe has ``[data].simulate = {kind = "nodules"}`` is
scored on the recipe's data (or any data without masks) with the nodules training's validation drew:
`simulated_items` (`kdviewer.imaging.nodule_cases.validation_case`, seeded by the recipe's data.seed and
the item key, 3-D across the 2.5-D stack), so ``--split val`` scores exactly training's validation cases.

Two steps, so a teacher-student comparison scores exactly what `kdviewer evaluate` scores:
`evaluate_items` yields one `CaseRecord` per item, `summarise_records` turns the records into the metrics.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdviewer.imaging.metrics import classification_metrics, dice, hd95_mm, jaccard, roc_auc
from kdviewer.imaging.nodule_cases import simulation_settings, validation_case
from kdviewer.runtime.classify import classify_image
from kdviewer.runtime.control import CancelFlag, Progress, check_cancel, report
from kdviewer.runtime.errors import ModelInputError
from kdviewer.runtime.registry import Model
from kdviewer.runtime.segment import SlicePredictor, postprocess_labels, probabilities_to_labels, to_grid
from kdviewer.study.datasets import (
    DatasetLayoutError,
    Item,
    LabelledDataset,
    Sample,
    limit_items,
    open_dataset,
    recipe_split,
    training_pool,
)

AUC_MAX_PIXELS = 4_000_000  # pixels pooled for the segmentation AUC (sampled evenly beyond that)


@dataclass(frozen=True, eq=False)
class CaseRecord:
    """One item scored by one model.

    key: the item's key; latency_ms: preprocessing and inference of this item.
    classify: label (true class), probabilities (K,) float32.
    segment: scores {dice, jaccard, hd95_mm} (empty when truth and prediction are both empty: not
    scored), truth_pixels / predicted_pixels (foreground inside the field of view), auc_scores /
    auc_truth (the pixel samples pooled for the AUC, every auc_stride-th pixel).
    restore: scores {psnr, ssim, psnr_input, ssim_input}.
    prediction / target (only with ``keep_arrays``): segment (H, W) uint8 labels and truth inside the field
    of view; restore the output and the clean image (H, W) float32 in model units.
    """

    key: str
    latency_ms: float
    label: int | None = None
    probabilities: np.ndarray | None = field(default=None, repr=False)
    scores: dict[str, float] = field(default_factory=dict)
    truth_pixels: int | None = None
    predicted_pixels: int | None = None
    auc_scores: np.ndarray | None = field(default=None, repr=False)
    auc_truth: np.ndarray | None = field(default=None, repr=False)
    auc_stride: int = 1
    prediction: np.ndarray | None = field(default=None, repr=False)
    target: np.ndarray | None = field(default=None, repr=False)


def choose_split(ds: LabelledDataset, split: str | None) -> str:
    """The split to score: the one asked for, or the only one; several and none asked: an error listing them."""
    if split is not None:
        if split not in ds.splits:
            raise DatasetLayoutError(ds.path, f"no split {split!r}; present: {', '.join(ds.splits)}")
        return split
    if len(ds.splits) == 1:
        return ds.splits[0]
    raise DatasetLayoutError(ds.path, f"holds several splits ({', '.join(ds.splits)}); choose one with --split")


RECIPE_SPLITS = ("train", "val")  # the splits a training recipe makes itself when the data has no "val"


@dataclass(frozen=True, eq=False)
class DataSelection:
    """The items `dataset_items` chose; unpacks as ``ds, split, items``.

    source: how the split was made when it was rebuilt from the model card's training recipe ("" for a split
    of the data's own); warnings: lines for the user (the data holds the model's training images, or the
    split was rebuilt for another folder than the recipe's); simulation: how the masks were made when the
    items carry simulated nodules ("" for the data's own masks).
    """

    ds: LabelledDataset
    split: str
    items: list[Item]
    source: str = ""
    warnings: tuple[str, ...] = ()
    simulation: str = ""

    def __iter__(self) -> Iterator[Any]:
        return iter((self.ds, self.split, self.items))

    def result_keys(self) -> dict[str, Any]:
        """The result's keys about the selection: split_source (rebuilt splits), simulation (simulated
        masks) and warnings (when any)."""
        out: dict[str, Any] = {"split_source": self.source} if self.source else {}
        if self.simulation:
            out["simulation"] = self.simulation
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def recipe_data(model: Model) -> dict[str, Any] | None:
    """The [data] table of the model card's ``training.recipe`` (TOML), or None when the card has no recipe.

    Raises `ModelInputError` for a recipe that is not TOML or has no [data] table with a path.
    """
    text = (model.card.training or {}).get("recipe")
    if not text:
        return None
    try:
        data = tomllib.loads(str(text)).get("data")
    except tomllib.TOMLDecodeError as e:
        raise ModelInputError(model.card_path, f"the card's training.recipe is not valid TOML ({e})") from e
    if not isinstance(data, dict) or not data.get("path"):
        raise ModelInputError(model.card_path, "the card's training.recipe has no [data] table with a path")
    return data


def _recipe_path(data: dict[str, Any], model: Model) -> Path:
    path = Path(str(data["path"])).expanduser()
    return (path if path.is_absolute() else Path(model.card_path).parent / path).resolve()


def _same_data(data_path: str | Path, recipe_path: Path) -> bool:
    """DATA is the recipe's folder (or a file in it, e.g. a MedMNIST .npz, or the folder of the recipe's file)."""
    p = Path(data_path).expanduser().resolve()
    return p == recipe_path or (p.is_file() and p.parent == recipe_path) or \
        (recipe_path.is_file() and recipe_path.parent == p)


def _recipe_items(ds: LabelledDataset, split: str, data: dict[str, Any], model: Model) -> tuple[list[Item], str]:
    """The recipe's `split` ("train" | "val") of `ds`, exactly as training made it, and how it was made."""
    try:
        seed = int(data.get("seed", 0))
        block = data.get("block_size")
        train, val, _dropped, how = recipe_split(
            ds, float(data.get("val_fraction", 0.1)), seed, stratify=bool(data.get("stratify", True)),
            block_size=None if block is None else int(block),
            exclude_slices=(data.get("simulate") or {}).get("exclude_slices"))
    except (TypeError, ValueError) as e:
        raise ModelInputError(model.card_path, f"the card's training.recipe [data] cannot split the data ({e})") from e
    max_items = data.get("max_items")
    limit = None if max_items is None else int(max_items)
    items = limit_items(val, limit, seed + 1) if split == "val" else limit_items(train, limit, seed)
    return items, f"rebuilt from the model's training recipe: {how}"


def recipe_simulation(data: dict[str, Any] | None, model: Model) -> dict[str, Any] | None:
    """The card recipe's simulated-nodule settings (`simulation_settings`) for a segmentation model whose
    recipe has ``[data].simulate = {kind = "nodules", ...}``; None otherwise."""
    table = (data or {}).get("simulate")
    if model.task != "segment" or not isinstance(table, dict) or table.get("kind") != "nodules":
        return None
    try:
        return simulation_settings(table)
    except ValueError as e:
        raise ModelInputError(model.card_path, f"the card's training.recipe [data].{e}") from e


def simulated_items(items: Sequence[Item], sim: dict[str, Any], seed: int, slices: int) -> list[Item]:
    """The items with training's validation nodules drawn in: each loads as a `Sample` whose image is the
    (centre) slice with the nodules and whose mask is theirs, and stacks (`Item.load_slices(slices)`) as the
    2.5-D stack with the nodules drawn in 3-D across it, exactly the arrays training's validation set
    preprocesses (`kdviewer.imaging.nodule_cases.validation_case` with the recipe's data.seed and the item's
    key: the same nodules whatever the item's position in the list). The last case is kept, so loading an
    item and then stacking it (or two models in turn, as `compare` does) draws it once.
    """
    last: dict[str, tuple[Sample, np.ndarray]] = {}

    def case(item: Item) -> tuple[Sample, np.ndarray]:
        if item.key not in last:
            last.clear()
            sample = item.load()
            raw = np.asarray(item.load_slices(slices) if slices > 1 else sample.image, dtype=np.float32)
            if raw.ndim != (3 if slices > 1 else 2):
                raise ModelInputError(None, f"item {item.key}: simulated nodules need grey CT slices in HU, "
                                            f"got {raw.shape}")
            image, mask, _lungs = validation_case(raw, sample.spacing_mm, sim, seed, item.key)
            centre = image[slices // 2] if slices > 1 else image
            last[item.key] = (Sample(centre, label=sample.label, mask=mask, fov=sample.fov,
                                     spacing_mm=sample.spacing_mm), image)
        return last[item.key]

    def stack(item: Item, n: int) -> np.ndarray:
        if n != slices:
            raise ModelInputError(None, f"item {item.key}: the simulated cases are stacks of {slices} slices "
                                        f"(the recipe's data.slices), not {n}")
        return case(item)[1]

    return [Item(it.key, loader=lambda it=it: case(it)[0], label=it.label, group=it.group,
                 slice_index=it.slice_index, stacker=lambda n, it=it: stack(it, n)) for it in items]


def dataset_items(data_path: str | Path, task: str, split: str | None = None, *, layout: str = "auto",
                  limit: int | None = None, model: Model | None = None) -> DataSelection:
    """The data set, split name and first `limit` items to score for a model of `task`; an empty split is
    an error. Unpacks as ``ds, split, items``.

    With `model` (its card's training recipe): "val" or "train" on data without a "val" split of its own
    (class folders, volumes, DRIVE, plain images: data that training split itself) is the recipe's split,
    rebuilt with `recipe_split` (same items, same order; the recipe's layout, slice exclusion and max_items),
    with a warning when DATA is not the recipe's data.path. No split asked on the recipe's own single-split
    data scores every item, with a warning that these include the training images. A recipe with simulated
    nodules (`recipe_simulation`): on its own data, or on data without masks, the items are
    `simulated_items` (training's validation nodules and masks); other data with masks is scored on those.
    """
    data = recipe_data(model) if model is not None else None
    recipe_path = _recipe_path(data, model) if data is not None and model is not None else None
    same = recipe_path is not None and _same_data(data_path, recipe_path)
    if same and layout == "auto" and data is not None:
        layout = str(data.get("layout") or "auto")
    sim = recipe_simulation(data, model) if data is not None and model is not None else None
    ds = open_dataset(data_path, layout, None if sim is not None else task)  # masks may come from the simulation
    if sim is not None and not same and ds.task_hint == "segment":
        sim = None  # other data with masks of its own: scored on them
    warnings: list[str] = []
    source = ""
    if split in RECIPE_SPLITS and "val" not in ds.splits and (data is not None or split not in ds.splits):
        if data is None or model is None:
            who = f"model {model.id}'s card has no training recipe" if model is not None else "no model recipe given"
            raise DatasetLayoutError(ds.path, f"no split {split!r} (present: {', '.join(ds.splits)}) and {who} "
                                              "to rebuild it from; score a split the data has, or omit --split")
        items, source = _recipe_items(ds, split, data, model)
        name = split
        if not same:
            warnings.append(f"split {split!r} rebuilt from the model's training recipe, which split "
                            f"{recipe_path}, not {ds.path}: these items may not be the model's {split} items")
    else:
        name = choose_split(ds, split)
        items = ds.items(name)
        if same and "val" not in ds.splits and name == training_pool(ds):
            warnings.append("these images include the model's training images; use --split val")
    items = items[: limit or None]
    if not items:
        raise DatasetLayoutError(ds.path, f"split {name!r} is empty")
    simulation = ""
    if sim is not None and data is not None:
        seed, slices = int(data.get("seed", 0)), int(data.get("slices", 1))
        items = simulated_items(items, sim, seed, slices)
        simulation = (f"simulated nodules drawn as in training's validation (kdviewer.imaging.nodule_cases, "
                      f"data.seed {seed} and the item key{f', 3-D across {slices} slices' if slices > 1 else ''})")
    return DataSelection(ds, name, items, source, tuple(warnings), simulation)


def evaluate_model(model: Model, data_path: str | Path, split: str | None = None, *, layout: str = "auto",
                   threads: int | None = None, limit: int | None = None, progress: Progress = None,
                   cancel: CancelFlag = None) -> dict[str, Any]:
    """The task's metrics of `model` on one split of a labelled data set, as one JSON-ready dict.

    limit: score only the first N items of the split (stable order). split "val" / "train" on data that
    training split itself: the split rebuilt from the model card's recipe (see `dataset_items`); the result
    then has ``split_source``, and ``warnings`` (a list of lines) when there is something to warn about.
    Raises `DatasetLayoutError` for data that does not fit, `ModelInputError` when the data's images do not
    fit the model.
    """
    sel = dataset_items(data_path, model.task, split, layout=layout, limit=limit, model=model)
    records = list(evaluate_items(model, sel.items, threads, progress, cancel))
    return {**result_head(model, sel.ds, sel.split), **summarise_records(model, records), **sel.result_keys()}


def result_head(model: Model, ds: LabelledDataset, split: str) -> dict[str, Any]:
    """The first keys of `evaluate_model`'s result: model, task, data, layout, split."""
    return {"model": model.id, "task": model.task, "data": str(ds.path), "layout": ds.layout, "split": split}


def evaluate_items(model: Model, items: Sequence[Item], threads: int | None = None, progress: Progress = None,
                   cancel: CancelFlag = None, *, keep_arrays: bool = False) -> Iterator[CaseRecord]:
    """One `CaseRecord` per item, in order, for the model's task; progress(done, total) after each."""
    if model.task == "classify":
        return _classify_records(model, items, threads, progress, cancel)
    if model.task == "segment":
        return _segment_records(model, items, threads, progress, cancel, keep_arrays)
    from kdviewer.runtime.evaluate_restore import restore_records

    return restore_records(model, items, threads, progress, cancel, keep_arrays=keep_arrays)


def summarise_records(model: Model, records: Sequence[CaseRecord]) -> dict[str, Any]:
    """The metrics dict of `evaluate_model` (without its head) from the records of `evaluate_items`."""
    if model.task == "classify":
        return summarise_classify(model, records)
    if model.task == "segment":
        return summarise_segment(records)
    from kdviewer.runtime.evaluate_restore import summarise_restore

    return summarise_restore(model, records)


def _median(latencies: Sequence[float]) -> float:
    return float(np.median(latencies)) if latencies else float("nan")


def _image_of(model: Model, item: Item, sample) -> np.ndarray:
    return item.load_slices(model.slices) if model.slices > 1 and item.slice_index is not None else sample.image


def _classify_records(model: Model, items: Sequence[Item], threads: int | None, progress: Progress,
                      cancel: CancelFlag) -> Iterator[CaseRecord]:
    for k, item in enumerate(items):
        check_cancel(cancel, "evaluation")
        sample = item.load()
        if sample.label is None:
            raise ModelInputError(None, f"item {item.key} has no class label")
        result = classify_image(model, _image_of(model, item, sample), threads=threads)
        yield CaseRecord(item.key, result.latency_ms, label=int(sample.label), probabilities=result.probabilities)
        report(progress, k + 1, len(items))


def summarise_classify(model: Model, records: Sequence[CaseRecord]) -> dict[str, Any]:
    """classification_metrics over the records (class 1's probability for two classes), plus latency."""
    p = np.stack([r.probabilities for r in records])
    labels = [int(r.label) for r in records]
    if int(max(labels)) >= p.shape[1]:
        raise ModelInputError(model.onnx_path, f"the data has class {max(labels)}, the model only {p.shape[1]} classes")
    out = classification_metrics(np.asarray(labels), p[:, 1] if p.shape[1] == 2 else p)
    out["latency_ms_median"] = _median([r.latency_ms for r in records])
    return out


def evaluate_classify(model: Model, items: Sequence[Item], threads: int | None = None,
                      progress: Progress = None, cancel: CancelFlag = None) -> dict[str, Any]:
    """classification_metrics over the items (class 1's probability for two classes), plus latency."""
    return summarise_classify(model, list(_classify_records(model, items, threads, progress, cancel)))


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


def _segment_records(model: Model, items: Sequence[Item], threads: int | None, progress: Progress,
                     cancel: CancelFlag, keep_arrays: bool) -> Iterator[CaseRecord]:
    pred = SlicePredictor(model, threads)
    n_labels = max(len(model.labels), 2)
    stride = 1
    for k, item in enumerate(items):
        check_cancel(cancel, "evaluation")
        sample = item.load()
        if sample.mask is None:
            raise ModelInputError(None, f"item {item.key} has no mask")
        img = _image_of(model, item, sample)
        t0 = time.perf_counter()
        hw = sample.mask.shape
        probs = to_grid(pred.probabilities([img], sample.spacing_mm)[0], hw)
        labels = postprocess_labels(probabilities_to_labels(probs[None], model.postprocess)[0],
                                    model.postprocess, n_labels, spacing=sample.spacing_mm, image=sample.image)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        truth = np.asarray(sample.mask).astype(np.int64)
        fov = np.ones(hw, bool) if sample.fov is None else np.asarray(sample.fov, bool)
        labels_in, truth_in = np.where(fov, labels, 0), np.where(fov, truth, 0)
        scores: dict[str, float] = {}
        if labels.any() or truth.any():
            d, j, h = _image_scores(labels_in, truth_in, n_labels, sample.spacing_mm or 1.0)
            scores = {"dice": d, "jaccard": j, "hd95_mm": h}
        if k == 0:
            stride = max(1, int(np.ceil(len(items) * fov.sum() / AUC_MAX_PIXELS)))
        yield CaseRecord(item.key, latency_ms, scores=scores, truth_pixels=int((truth_in > 0).sum()),
                         predicted_pixels=int((labels_in > 0).sum()),
                         auc_scores=(1.0 - probs[0])[fov][::stride], auc_truth=(truth > 0)[fov][::stride],
                         auc_stride=stride,
                         prediction=labels_in.astype(np.uint8) if keep_arrays else None,
                         target=truth_in if keep_arrays else None)
        report(progress, k + 1, len(items))


def summarise_segment(records: Sequence[CaseRecord]) -> dict[str, Any]:
    """Per-image dice, jaccard, hd95 (mm when the data gives a spacing, else pixels), pooled pixel AUC."""
    scored = [r.scores for r in records if r.scores]
    arr = np.asarray([(s["dice"], s["jaccard"], s["hd95_mm"]) for s in scored], dtype=float).reshape(-1, 3)
    hd = arr[:, 2][np.isfinite(arr[:, 2])]
    return {
        "n": len(records),
        "n_scored": int(arr.shape[0]),
        "dice": float(arr[:, 0].mean()) if arr.size else float("nan"),
        "jaccard": float(arr[:, 1].mean()) if arr.size else float("nan"),
        "hd95_mm": float(hd.mean()) if hd.size else float("nan"),
        "hd95_missed": int(arr.shape[0] - hd.size),
        "auc": roc_auc(np.concatenate([r.auc_truth for r in records]),
                       np.concatenate([r.auc_scores for r in records])),
        "auc_pixel_stride": records[0].auc_stride if records else 1,
        "latency_ms_median": _median([r.latency_ms for r in records]),
    }


def evaluate_segment(model: Model, items: Sequence[Item], threads: int | None = None,
                     progress: Progress = None, cancel: CancelFlag = None) -> dict[str, Any]:
    """Per-image dice, jaccard, hd95 (mm when the data gives a spacing, else pixels), pooled pixel AUC."""
    return summarise_segment(list(_segment_records(model, items, threads, progress, cancel, False)))
