"""A student next to its teacher on a labelled folder: the same items, the same metrics, case by case.

Both models go through `kdviewer.runtime.evaluate`'s per-item records (`evaluate_items`), side by side,
so each model's metrics are exactly what `kdviewer evaluate` prints for it on those items. Per case the
comparison keeps what a report needs (truth, each prediction or score, teacher↔student agreement) and a
disagreement score that sorts the cases where the two differ most.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdviewer.imaging.metrics import dice, psnr, roc_curve, ssim
from kdviewer.runtime.compare_pair import ModelSummary, check_pair, kl_divergence, model_summary
from kdviewer.runtime.control import CancelFlag, Progress, check_cancel, report
from kdviewer.runtime.evaluate import (
    CaseRecord,
    dataset_items,
    evaluate_items,
    recipe_data,
    result_head,
    summarise_records,
)
from kdviewer.runtime.registry import Model

HEAD_KEYS = ("model", "task", "data", "layout", "split")


@dataclass(frozen=True)
class CaseComparison:
    """One item, scored by both models.

    truth: classify: the true class name; segment: truth foreground pixels; restore: None.
    teacher / student: per-model values: classify `prediction` (class name) and `p` (probability of class 1
    for two classes, else of the predicted class); segment `dice`, `jaccard`, `hd95_mm` (nan when truth and
    prediction are both empty: not scored) and `pixels` (predicted foreground); restore `psnr` (dB), `ssim`,
    `psnr_input`, `ssim_input`. between (teacher↔student): classify `top1_agree` (1/0), `max_abs_dp`
    (largest |p_t − p_s| over classes), `kl` (KL(teacher‖student), nats); segment `dice_ts`; restore
    `psnr_ts`, `ssim_ts` (the student's output against the teacher's). disagreement: the sort key (larger:
    they differ more): classify (1 − top1_agree) + max_abs_dp; segment max(|Dice_t − Dice_s|, 1 − dice_ts);
    restore |PSNR_t − PSNR_s| (inf when exactly one output equals the clean image).
    """

    key: str
    truth: Any
    teacher: dict[str, Any]
    student: dict[str, Any]
    between: dict[str, Any]
    disagreement: float

    def row(self) -> dict[str, Any]:
        """One flat row (key, truth, teacher_*, student_*, the between values, disagreement) for a CSV."""
        out: dict[str, Any] = {"key": self.key, "truth": self.truth}
        out.update({f"teacher_{k}": v for k, v in self.teacher.items()})
        out.update({f"student_{k}": v for k, v in self.student.items()})
        out.update(self.between)
        out["disagreement"] = self.disagreement
        return out


@dataclass(frozen=True, eq=False)
class DatasetComparison:
    """Teacher and student on one split of a labelled data set.

    teacher_metrics / student_metrics: each exactly `evaluate_model`'s dict for that model on these items;
    teacher / student: `ModelSummary` (latency: the median per item, ms); cases: one `CaseComparison`
    per item, in the data set's order; agreement: teacher↔student summary (classify top1_agreement and
    kl_mean; segment dice_ts_mean; restore psnr_ts_median and ssim_ts_mean); roc (classification):
    role ("teacher" / "student") -> [(class name, fpr, tpr)], one curve for two classes (class 1), one per
    class (one-vs-rest) for more; class_names: the data's classes (classification; the teacher card's labels
    when the data only numbers them); warnings: lines for the user; split_source: how the split was rebuilt from
    a training recipe ("" for a split of the data's own; see `dataset_items`).
    """

    task: str
    data: str
    layout: str
    split: str
    teacher: ModelSummary
    student: ModelSummary
    teacher_metrics: dict[str, Any]
    student_metrics: dict[str, Any]
    cases: tuple[CaseComparison, ...]
    agreement: dict[str, Any]
    roc: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = dataclasses.field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    split_source: str = ""

    @property
    def speed_up(self) -> float:
        """Teacher latency / student latency (> 1: the student is faster)."""
        t, s = self.teacher.latency_ms, self.student.latency_ms
        return float(t / s) if s > 0 and np.isfinite(t) and np.isfinite(s) else float("nan")

    def disagreements(self, n: int = 10) -> list[CaseComparison]:
        """The `n` cases where teacher and student differ most (largest disagreement first; stable)."""
        order = sorted(range(len(self.cases)), key=lambda i: -_sortable(self.cases[i].disagreement))
        return [self.cases[i] for i in order[:n]]

    def metrics_table(self) -> list[tuple[str, Any, Any]]:
        """(metric, teacher value, student value) for each scalar metric of `kdviewer evaluate` (its order)."""
        keys = [k for k in self.teacher_metrics if k not in HEAD_KEYS and k not in ("confusion", "degradation")]
        keys += [k for k in self.student_metrics if k not in keys and k not in HEAD_KEYS
                 and k not in ("confusion", "degradation")]
        return [(k, self.teacher_metrics.get(k), self.student_metrics.get(k)) for k in keys]

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        """JSON-ready summary: both metric dicts, the agreement, the `top` disagreements (not every case)."""
        return {"kind": "dataset", "task": self.task, "data": self.data, "layout": self.layout, "split": self.split,
                "n": len(self.cases), "teacher": self.teacher.to_dict(), "student": self.student.to_dict(),
                "speed_up": self.speed_up, "metrics": {"teacher": self.teacher_metrics,
                                                       "student": self.student_metrics},
                "agreement": self.agreement, "disagreements": [c.row() for c in self.disagreements(top)],
                "warnings": list(self.warnings), **({"split_source": self.split_source} if self.split_source else {})}


def _sortable(v: float) -> float:
    return -1.0 if v is None or np.isnan(v) else float(v)


def compare_on_dataset(teacher: Model, student: Model, data_path: str | Path, split: str | None = None, *,
                       layout: str = "auto", limit: int | None = None, progress: Progress = None,
                       cancel: CancelFlag = None, allow_unpaired: bool = False,
                       threads: int | None = None) -> DatasetComparison:
    """Evaluate `teacher` and `student` on the same items of one split and compare them case by case.

    split / layout / limit as `evaluate_model` ("val" / "train" on data training split itself: rebuilt from the
    student's training recipe, else the teacher's). progress(done, total) per item (both models);
    `cancel` raises `Cancelled`. Raises `ModelPairError` for a pair that cannot be compared,
    `DatasetLayoutError` for data that fits no layout or not the task.
    """
    warnings = list(check_pair(teacher, student, allow_unpaired))
    # The student's training recipe (else the teacher's) rebuilds "val"/"train" on data training split itself.
    recipe_model = student if recipe_data(student) is not None else teacher
    sel = dataset_items(data_path, teacher.task, split, layout=layout, limit=limit, model=recipe_model)
    ds, name, items = sel
    warnings += sel.warnings
    restore = teacher.task not in ("classify", "segment")
    if restore:
        from kdviewer.runtime.evaluate_restore import degradation

        if degradation(teacher) != degradation(student) or teacher.preprocess.get("normalize") != \
                student.preprocess.get("normalize"):
            warnings.append("the models were trained against different degradations or intensity maps: each is "
                            "scored on its own degraded inputs")
    names = _class_names(ds.class_names, teacher.labels)
    keep = teacher.task != "classify"
    t_iter = evaluate_items(teacher, items, threads, None, cancel, keep_arrays=keep)
    s_iter = evaluate_items(student, items, threads, None, cancel, keep_arrays=keep)
    t_recs: list[CaseRecord] = []
    s_recs: list[CaseRecord] = []
    cases: list[CaseComparison] = []
    for k, (t, s) in enumerate(zip(t_iter, s_iter, strict=True)):
        check_cancel(cancel, "comparison")
        cases.append(_case(teacher, t, s, names))
        t_recs.append(dataclasses.replace(t, prediction=None, target=None))  # keep no image per case
        s_recs.append(dataclasses.replace(s, prediction=None, target=None))
        report(progress, k + 1, len(items))
    t_metrics = {**result_head(teacher, ds, name), **summarise_records(teacher, t_recs)}
    s_metrics = {**result_head(student, ds, name), **summarise_records(student, s_recs)}
    roc = _roc_curves(t_recs, s_recs, names) if teacher.task == "classify" else {}
    return DatasetComparison(
        teacher.task, str(ds.path), ds.layout, name,
        model_summary(teacher, t_metrics["latency_ms_median"]), model_summary(student, s_metrics["latency_ms_median"]),
        t_metrics, s_metrics, tuple(cases), _agreement(teacher.task, cases), roc, tuple(names),
        tuple(warnings), sel.source)


def _class_names(data_names: tuple[str, ...], model_labels: tuple[str, ...]) -> tuple[str, ...]:
    """The data's class names, unless they are bare indices ("0", "1", ...) and the teacher's card names them."""
    if model_labels and (not data_names or all(n.isdigit() for n in data_names)):
        return tuple(model_labels)
    return tuple(data_names)


def _class_name(names: tuple[str, ...] | list[str], k: int) -> str:
    return names[k] if 0 <= k < len(names) else str(k)


def _case(model: Model, t: CaseRecord, s: CaseRecord, class_names) -> CaseComparison:
    if model.task == "classify":
        return _classify_case(t, s, class_names)
    if model.task == "segment":
        return _segment_case(t, s)
    return _restore_case(model, t, s)


def _classify_case(t: CaseRecord, s: CaseRecord, class_names) -> CaseComparison:
    pt, ps = np.asarray(t.probabilities, float), np.asarray(s.probabilities, float)

    def side(p: np.ndarray) -> dict[str, Any]:
        top = int(np.argmax(p))
        return {"prediction": _class_name(class_names, top), "p": float(p[1] if p.size == 2 else p[top])}

    agree = float(int(np.argmax(pt)) == int(np.argmax(ps)))
    dp = float(np.abs(pt - ps).max())
    between = {"top1_agree": agree, "max_abs_dp": dp, "kl": kl_divergence(pt, ps)}
    return CaseComparison(t.key, _class_name(class_names, int(t.label)), side(pt), side(ps), between,
                          (1.0 - agree) + dp)


def _segment_case(t: CaseRecord, s: CaseRecord) -> CaseComparison:
    def side(r: CaseRecord) -> dict[str, Any]:
        nan = float("nan")
        return {"dice": r.scores.get("dice", nan), "jaccard": r.scores.get("jaccard", nan),
                "hd95_mm": r.scores.get("hd95_mm", nan), "pixels": r.predicted_pixels}

    a, b = np.asarray(t.prediction), np.asarray(s.prediction)
    values = [v for v in np.union1d(np.unique(a), np.unique(b)) if v > 0]
    dice_ts = float(np.mean([dice(a == v, b == v) for v in values])) if values else 1.0
    dt, ds_ = t.scores.get("dice", 1.0), s.scores.get("dice", 1.0)  # not scored: both empty, nothing missed
    return CaseComparison(t.key, t.truth_pixels, side(t), side(s), {"dice_ts": dice_ts},
                          max(abs(dt - ds_), 1.0 - dice_ts))


def _restore_case(model: Model, t: CaseRecord, s: CaseRecord) -> CaseComparison:
    keys = ("psnr", "ssim", "psnr_input", "ssim_input")
    out_t, out_s = np.asarray(t.prediction), np.asarray(s.prediction)
    if out_t.shape == out_s.shape:
        target = np.asarray(t.target)
        span = 1.0 if model.preprocess.get("normalize") == "window" else float(target.max() - target.min()) or 1.0
        same = np.array_equal(out_t, out_s)
        between = {"psnr_ts": psnr(out_s, out_t, span),
                   "ssim_ts": 1.0 if same else _ssim_or_nan(out_s, out_t, span)}
    else:
        between = {"psnr_ts": float("nan"), "ssim_ts": float("nan")}
    pt, ps = t.scores["psnr"], s.scores["psnr"]
    if np.isinf(pt) and np.isinf(ps):
        gap = 0.0
    else:
        gap = float(abs(pt - ps))
    return CaseComparison(t.key, None, {k: t.scores[k] for k in keys}, {k: s.scores[k] for k in keys}, between, gap)


def _ssim_or_nan(x: np.ndarray, ref: np.ndarray, span: float) -> float:
    return float("nan") if min(x.shape) < 7 else ssim(x, ref, span)


def _agreement(task: str, cases: list[CaseComparison]) -> dict[str, Any]:
    def col(name: str) -> np.ndarray:
        return np.asarray([c.between[name] for c in cases], dtype=float)

    if task == "classify":
        return {"top1_agreement": float(col("top1_agree").mean()), "kl_mean": float(col("kl").mean()),
                "max_abs_dp_mean": float(col("max_abs_dp").mean())}
    if task == "segment":
        return {"dice_ts_mean": float(col("dice_ts").mean()), "dice_ts_min": float(col("dice_ts").min())}
    p, q = col("psnr_ts"), col("ssim_ts")
    return {"psnr_ts_median": float(np.median(p)) if not np.isnan(p).all() else float("nan"),
            "ssim_ts_mean": float(np.nanmean(q)) if not np.isnan(q).all() else float("nan")}


def _roc_curves(t_recs: list[CaseRecord], s_recs: list[CaseRecord], class_names
                ) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    y = np.asarray([r.label for r in t_recs])
    out: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for role, recs in (("teacher", t_recs), ("student", s_recs)):
        p = np.stack([r.probabilities for r in recs])
        classes = [1] if p.shape[1] == 2 else range(p.shape[1])
        curves = []
        for c in classes:
            if (y == c).any() and (y != c).any():
                fpr, tpr, _ = roc_curve(y == c, p[:, c])
                curves.append((_class_name(class_names, c), fpr, tpr))
        out[role] = curves
    return out
