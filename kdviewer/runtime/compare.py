"""A student next to its teacher on one study: both outputs, how far they agree, and what each costs.

`compare_on_study` runs both models on the same image (the whole volume, or one slice) in one run and
computes the task's numbers: teacher↔student Dice per label and a disagreement label map
(segmentation), both probability sets, top-1 agreement and KL(teacher‖student) (classification),
PSNR and SSIM between the outputs and their difference image (enhancement); and for each model its
latency (ms, median of a few repeats for one 2-D image), parameters and file size, and the speed-up.
`compare_on_dataset` (re-exported from `compare_dataset`) does the same on a labelled folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdviewer.imaging.metrics import dice, psnr, ssim
from kdviewer.runtime.classify import classify_image
from kdviewer.runtime.compare_dataset import CaseComparison, DatasetComparison, compare_on_dataset
from kdviewer.runtime.compare_pair import (
    ModelPairError,
    ModelSummary,
    check_pair,
    kl_divergence,
    model_summary,
)
from kdviewer.runtime.control import CancelFlag, Progress, check_cancel, report
from kdviewer.runtime.enhance import enhance_volume
from kdviewer.runtime.errors import ModelInputError
from kdviewer.runtime.registry import Model
from kdviewer.runtime.segment import segment_volume
from kdviewer.runtime.session import make_runner
from kdviewer.study.volume import SeriesInfo, Volume

__all__ = ["CaseComparison", "DatasetComparison", "ModelPairError", "ModelSummary", "StudyComparison",
           "compare_on_dataset", "compare_on_study", "data_kind", "disagreement_map", "kl_divergence"]

# Values of the disagreement map.
AGREE, TEACHER_ONLY, STUDENT_ONLY, LABELS_DIFFER = 0, 1, 2, 3      # without a reference mask
BOTH_RIGHT, TEACHER_RIGHT, STUDENT_RIGHT, BOTH_WRONG = 0, 1, 2, 3  # with a reference mask


@dataclass(frozen=True, eq=False)
class StudyComparison:
    """Teacher and student on one study.

    task: the pair's task; teacher / student: `ModelSummary` with the latency measured here (ms);
    metrics: JSON-ready numbers (see `compare_on_study`); warnings: e.g. an unpaired student;
    slice_index: the slice compared (None: the whole volume).
    teacher_output / student_output: label `Volume`s (segment, uint8) or enhanced `Volume`s (input units);
    None for classification. probabilities: (2, K) float32, teacher then student (classification).
    overlay: segment: the disagreement map (uint8, values in `disagreement_map`); enhance: student − teacher
    (float32, the input's units); None for classification.
    """

    task: str
    teacher: ModelSummary
    student: ModelSummary
    metrics: dict[str, Any]
    warnings: tuple[str, ...] = ()
    slice_index: int | None = None
    labels: tuple[str, ...] = ()
    probabilities: np.ndarray | None = None
    teacher_output: Volume | None = None
    student_output: Volume | None = None
    overlay: Volume | None = None

    @property
    def speed_up(self) -> float:
        """Teacher latency / student latency (> 1: the student is faster)."""
        return _ratio(self.teacher.latency_ms, self.student.latency_ms)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {"kind": "study", "task": self.task, "teacher": self.teacher.to_dict(),
                "student": self.student.to_dict(), "speed_up": self.speed_up, "slice_index": self.slice_index,
                "metrics": self.metrics, "warnings": list(self.warnings)}


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 and np.isfinite(a) and np.isfinite(b) else float("nan")


def disagreement_map(teacher: np.ndarray, student: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """uint8 map of where two label maps differ, same shape as they.

    Without a reference: 0 agree, 1 teacher only (teacher foreground, student background), 2 student only,
    3 both foreground with different labels. With a reference label map: 0 both right, 1 only the teacher
    right, 2 only the student right, 3 both wrong.
    """
    t, s = np.asarray(teacher), np.asarray(student)
    if t.shape != s.shape:
        raise ValueError(f"label maps differ in shape: {t.shape} vs {s.shape}")
    out = np.zeros(t.shape, np.uint8)
    if reference is None:
        differ = t != s
        out[differ & (t > 0) & (s == 0)] = TEACHER_ONLY
        out[differ & (t == 0) & (s > 0)] = STUDENT_ONLY
        out[differ & (t > 0) & (s > 0)] = LABELS_DIFFER
        return out
    ref = np.asarray(reference)
    if ref.shape != t.shape:
        raise ValueError(f"reference mask of shape {ref.shape} does not fit the labels {t.shape}")
    t_ok, s_ok = t == ref, s == ref
    out[t_ok & ~s_ok] = TEACHER_RIGHT
    out[~t_ok & s_ok] = STUDENT_RIGHT
    out[~t_ok & ~s_ok] = BOTH_WRONG
    return out


def compare_on_study(teacher: Model, student: Model, image: Volume | np.ndarray, slice_index: int | None = None,
                     progress: Progress = None, cancel: CancelFlag = None, *, reference: Volume | np.ndarray | None = None,
                     allow_unpaired: bool = False, threads: int | None = None, repeats: int = 3) -> StudyComparison:
    """Run `teacher` and `student` on one study (a `Volume` or a 2-D image) and compare them.

    slice_index: compare on that slice only (classification always uses one slice: default the middle);
    None: segmentation and enhancement run on the whole volume. One 2-D image (or a slice) is run
    `repeats` times per model, alternating, and the median latency is kept; a volume once each (sessions
    are created before timing). reference: an optional label map on the study's grid (or the slice's) that
    colours the segmentation disagreement by who is right. progress(done, total) over both models;
    `cancel` raises `Cancelled`. Raises `ModelPairError` for a pair that cannot be compared.

    metrics, by task: classify: teacher_probabilities / student_probabilities (per class name),
    teacher_label, student_label, top1_agreement (1.0 or 0.0), kl_teacher_student (nats).
    segment: dice_per_label (teacher↔student, per foreground label name), dice_mean, disagreement_pixels
    (per map value name), volumes_ml_teacher / volumes_ml_student, and with a reference:
    dice_teacher_reference / dice_student_reference per label. enhance: psnr_db and ssim of the student's
    output against the teacher's (data range: the teacher card's window width, else the teacher output's
    span; inf when identical), max_abs_difference, mean_abs_difference (input units).
    """
    warnings = check_pair(teacher, student, allow_unpaired)
    volume = _as_volume(image)
    for m in (teacher, student):  # sessions first, so the first timed run does not pay for loading
        make_runner(m, threads)
    if teacher.task == "classify":
        run = _compare_classify(teacher, student, volume, slice_index, threads, repeats, progress, cancel)
    elif teacher.task == "segment":
        run = _compare_segment(teacher, student, volume, slice_index, reference, threads, repeats, progress, cancel)
    else:
        run = _compare_enhance(teacher, student, volume, slice_index, threads, repeats, progress, cancel)
    t_ms, s_ms = run.pop("latency_ms")
    metrics = run.pop("metrics")
    return StudyComparison(teacher.task, model_summary(teacher, t_ms), model_summary(student, s_ms), metrics,
                           warnings, None if run.get("whole") else _slice_of(volume, slice_index),
                           **{k: v for k, v in run.items() if k != "whole"})


def _as_volume(image: Volume | np.ndarray) -> Volume:
    if isinstance(image, Volume):
        return image
    arr = np.asarray(image)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4)):
        arr = arr[None]  # one 2-D image, grey or colour (as `segment_volume` reads it)
    return Volume(arr)


def _slice_of(volume: Volume, slice_index: int | None) -> int:
    z = volume.shape[0] // 2 if slice_index is None else int(slice_index)
    if not 0 <= z < volume.shape[0]:
        raise ModelInputError(volume.info.source or None, f"slice {z} is outside 0..{volume.shape[0] - 1}")
    return z


def _sub_volume(volume: Volume, z: int, slices: int) -> tuple[Volume, int]:
    """(the slabs z ± slices // 2 as a Volume with its own origin, index of slice z in it)."""
    half = slices // 2
    z0, z1 = max(0, z - half), min(volume.shape[0], z + half + 1)
    origin = tuple(float(v) for v in volume.index_to_lps((0.0, 0.0, float(z0))))
    return volume.with_array(volume.array[z0:z1], origin=origin), z - z0


def _one_slice(volume: Volume, array: np.ndarray, z_in: int, info: SeriesInfo | None = None) -> Volume:
    origin = tuple(float(v) for v in volume.index_to_lps((0.0, 0.0, float(z_in))))
    changes: dict[str, Any] = {"origin": origin}
    if info is not None:
        changes["info"] = info
    return volume.with_array(array[z_in:z_in + 1], **changes)


def _halves(progress: Progress, first: bool) -> Callable[[int, int], None] | None:
    """progress of one model mapped onto the first or second half of the whole."""
    if progress is None:
        return None
    return lambda done, total: report(progress, done + (0 if first else total), 2 * total)


def _timed_pair(run_teacher: Callable[[], Any], run_student: Callable[[], Any], latency: Callable[[Any], float],
                repeats: int, progress: Progress, cancel: CancelFlag) -> tuple[Any, Any, float, float]:
    """Run both `repeats` times, alternating; (last teacher result, last student result, median ms of each)."""
    t_ms, s_ms, t_out, s_out = [], [], None, None
    n = max(1, int(repeats))
    for k in range(n):
        check_cancel(cancel, "comparison")
        t_out = run_teacher()
        t_ms.append(latency(t_out))
        check_cancel(cancel, "comparison")
        s_out = run_student()
        s_ms.append(latency(s_out))
        report(progress, k + 1, n)
    return t_out, s_out, float(np.median(t_ms)), float(np.median(s_ms))


def _compare_classify(teacher: Model, student: Model, volume: Volume, slice_index: int | None,
                      threads: int | None, repeats: int, progress: Progress, cancel: CancelFlag) -> dict[str, Any]:
    z = _slice_of(volume, slice_index)
    t, s, t_ms, s_ms = _timed_pair(lambda: classify_image(teacher, volume, z, threads=threads),
                                   lambda: classify_image(student, volume, z, threads=threads),
                                   lambda r: r.latency_ms, repeats, progress, cancel)
    names = t.labels
    metrics = {
        "teacher_probabilities": {n: float(p) for n, p in zip(names, t.probabilities, strict=True)},
        "student_probabilities": {n: float(p) for n, p in zip(names, s.probabilities, strict=True)},
        "teacher_label": t.top_label, "student_label": names[int(np.argmax(s.probabilities))],
        "top1_agreement": float(int(np.argmax(t.probabilities)) == int(np.argmax(s.probabilities))),
        "kl_teacher_student": kl_divergence(t.probabilities, s.probabilities),
    }
    return {"metrics": metrics, "latency_ms": (t_ms, s_ms), "labels": tuple(names),
            "probabilities": np.stack([t.probabilities, s.probabilities]).astype(np.float32)}


def _reference_array(reference: Volume | np.ndarray | None, volume: Volume, z: int | None) -> np.ndarray | None:
    """The reference labels on the compared grid: the whole volume, or slice z of it (a lone slice is taken as is)."""
    if reference is None:
        return None
    ref = np.asarray(reference.array if isinstance(reference, Volume) else reference)
    if ref.ndim == 2:
        ref = ref[None]
    if z is not None and ref.shape[0] == volume.shape[0] and volume.shape[0] > 1:
        ref = ref[z:z + 1]
    want = (1, *volume.shape[1:3]) if z is not None else volume.shape
    if ref.shape != tuple(want):
        raise ModelInputError(None, f"reference mask of shape {ref.shape} does not fit the study's {tuple(want)}")
    return ref.astype(np.int64)


def _compare_segment(teacher: Model, student: Model, volume: Volume, slice_index: int | None,
                     reference: Volume | np.ndarray | None, threads: int | None, repeats: int,
                     progress: Progress, cancel: CancelFlag) -> dict[str, Any]:
    whole = slice_index is None and not volume.is_2d
    if whole:
        t = segment_volume(teacher, volume, _halves(progress, True), cancel, threads=threads)
        s = segment_volume(student, volume, _halves(progress, False), cancel, threads=threads)
        t_ms, s_ms, t_lab, s_lab = t.latency_ms, s.latency_ms, t.labels, s.labels
        z = None
    else:
        z = _slice_of(volume, slice_index)
        subs = {m.id: _sub_volume(volume, z, m.slices) for m in (teacher, student)}

        def run(m: Model):
            sub, _ = subs[m.id]
            return segment_volume(m, sub, None, cancel, threads=threads)

        t, s, t_ms, s_ms = _timed_pair(lambda: run(teacher), lambda: run(student), lambda r: r.latency_ms,
                                       repeats, progress, cancel)
        t_lab = _one_slice(subs[teacher.id][0], t.labels.array, subs[teacher.id][1], t.labels.info)
        s_lab = _one_slice(subs[student.id][0], s.labels.array, subs[student.id][1], s.labels.info)
    ta, sa = t_lab.array.astype(np.int64), s_lab.array.astype(np.int64)
    ref = _reference_array(reference, volume, z)
    names = list(t.label_names)
    n_labels = max(len(names), len(s.label_names), int(max(ta.max(initial=0), sa.max(initial=0))) + 1)
    names += [f"label {k}" for k in range(len(names), n_labels)]
    per_label = {names[c]: dice(ta == c, sa == c) for c in range(1, n_labels)}
    dmap = disagreement_map(ta, sa, ref)
    codes = (("both_right", "teacher_right", "student_right", "both_wrong") if ref is not None
             else ("agree", "teacher_only", "student_only", "labels_differ"))
    metrics: dict[str, Any] = {
        "dice_per_label": per_label,
        "dice_mean": float(np.mean(list(per_label.values()))) if per_label else float("nan"),
        "disagreement_pixels": {name: int((dmap == k).sum()) for k, name in enumerate(codes)},
    }
    if whole:
        metrics["volumes_ml_teacher"], metrics["volumes_ml_student"] = t.volumes_ml, s.volumes_ml
    if ref is not None:
        metrics["dice_teacher_reference"] = {names[c]: dice(ta == c, ref == c) for c in range(1, n_labels)}
        metrics["dice_student_reference"] = {names[c]: dice(sa == c, ref == c) for c in range(1, n_labels)}
    info = SeriesInfo(uid="", modality="SEG", description=f"{teacher.id} vs {student.id} disagreement",
                      source=volume.info.source)
    return {"metrics": metrics, "latency_ms": (t_ms, s_ms), "whole": whole, "labels": tuple(names),
            "teacher_output": t_lab, "student_output": s_lab, "overlay": t_lab.with_array(dmap, info=info)}


def _compare_enhance(teacher: Model, student: Model, volume: Volume, slice_index: int | None,
                     threads: int | None, repeats: int, progress: Progress, cancel: CancelFlag) -> dict[str, Any]:
    whole = slice_index is None and not volume.is_2d
    if whole:
        t = enhance_volume(teacher, volume, _halves(progress, True), cancel, threads=threads)
        s = enhance_volume(student, volume, _halves(progress, False), cancel, threads=threads)
        t_ms, s_ms, t_out, s_out = t.latency_ms, s.latency_ms, t.volume, s.volume
    else:
        z = _slice_of(volume, slice_index)
        subs = {m.id: _sub_volume(volume, z, m.slices) for m in (teacher, student)}

        def run(m: Model):
            return enhance_volume(m, subs[m.id][0], None, cancel, threads=threads)

        t, s, t_ms, s_ms = _timed_pair(lambda: run(teacher), lambda: run(student), lambda r: r.latency_ms,
                                       repeats, progress, cancel)
        t_out = _one_slice(t.volume, t.volume.array, subs[teacher.id][1])
        s_out = _one_slice(s.volume, s.volume.array, subs[student.id][1])
    if t_out.shape != s_out.shape:
        raise ModelPairError(student.card_path, f"outputs differ in shape: {teacher.id} gives {t_out.shape}, "
                             f"{student.id} {s_out.shape} (different scale factors?)")
    ta, sa = t_out.array.astype(np.float32), s_out.array.astype(np.float32)
    prep = teacher.preprocess
    if prep.get("normalize") == "window" and prep.get("window"):
        span = float(prep["window"][1])
    else:
        span = float(ta.max() - ta.min()) or 1.0
    diff = sa - ta
    metrics = {"psnr_db": psnr(sa, ta, span), "ssim": _ssim_slices(sa, ta, span), "data_range": span,
               "max_abs_difference": float(np.abs(diff).max()), "mean_abs_difference": float(np.abs(diff).mean())}
    info = SeriesInfo(uid="", modality=t_out.info.modality, description=f"{student.id} - {teacher.id}",
                      source=volume.info.source)
    return {"metrics": metrics, "latency_ms": (t_ms, s_ms), "whole": whole, "teacher_output": t_out,
            "student_output": s_out, "overlay": t_out.with_array(diff, info=info)}


def _ssim_slices(x: np.ndarray, ref: np.ndarray, span: float) -> float:
    """Mean 2-D SSIM over slices (z, y, x); 1.0 for identical arrays, nan for slices under 7 pixels."""
    if np.array_equal(x, ref):
        return 1.0
    if min(x.shape[1:]) < 7:
        return float("nan")
    return float(np.mean([ssim(a, b, span) for a, b in zip(x, ref, strict=True)]))


def data_kind(path: str | Path, task: str) -> str:
    """"dataset" when `path` is labelled data a comparison for `task` can score, else "study".

    A labelled layout (MedMNIST, class folders, mask pairs, DRIVE, volume + labels) is a data set. A single
    file is a study. A folder of plain images is a data set for restoration when it holds several series, a
    study when it holds one. Raises `DatasetLayoutError` (naming what was looked for) when the path fits no
    layout and holds no study, or when a folder of unlabelled images is given for classification or
    segmentation.
    """
    from kdviewer.study import open_path
    from kdviewer.study.datasets import DatasetLayoutError, detect_layout
    from kdviewer.study.errors import StudyError

    p = Path(path)
    try:
        layout = detect_layout(p)
    except DatasetLayoutError:
        if p.is_file():
            return "study"
        raise
    if layout != "plain_images":
        return "dataset"
    if p.is_file():
        return "study"
    try:
        n_series = len(open_path(p).series)
    except StudyError:
        n_series = 0
    if n_series == 1:
        return "study"
    if task in ("classify", "segment"):
        raise DatasetLayoutError(p, f"holds {n_series} unlabelled images or series: a {task} comparison needs "
                                 "labelled data (class folders, a MedMNIST .npz, image + mask pairs, ...) or one study")
    return "dataset"
