"""The Compare tab's logic, without Qt: which teacher/student pairs the registry holds, running a
comparison on the open study or on a labelled folder, the numbers as table rows, and the cases.

Like a 3D Slicer Logic class, every step the tab takes can be called from a script or a test; the runs
go through the same runtime functions as `kdviewer compare` (`compare_on_study`, `compare_on_dataset`)
and the export through `write_report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdviewer.runtime import Model, RegistryScan, scan_models
from kdviewer.runtime.compare import (
    DatasetComparison,
    ModelPairError,
    StudyComparison,
    compare_on_dataset,
    compare_on_study,
)
from kdviewer.runtime.compare_pair import check_pair
from kdviewer.runtime.control import CancelFlag, Progress
from kdviewer.runtime.report import write_report
from kdviewer.study.datasets import DatasetLayoutError, Item, LabelledDataset, open_dataset
from kdviewer.study.volume import SeriesInfo, Volume

PREFERRED_SPLITS = ("val", "test", "all", "train")  # the split offered first when a data set has several


@dataclass(frozen=True, eq=False)
class PairEntry:
    """One line of the pair list: a student and the teacher its card names.

    teacher / student: None when missing or refused; problem: why the pair cannot be compared ("" when it can).
    """

    student_id: str
    teacher_id: str
    student: Model | None
    teacher: Model | None
    problem: str = ""

    @property
    def available(self) -> bool:
        return not self.problem and self.student is not None and self.teacher is not None

    @property
    def task(self) -> str:
        return self.student.task if self.student is not None else ""

    def title(self) -> str:
        """The list's text, e.g. "seg-student  ←  seg-teacher  (segment)"."""
        teacher = self.teacher_id or "?"
        if self.available:
            return f"{self.student_id}  vs  {teacher}  ({self.task})"
        return f"{self.student_id}  vs  {teacher}  (unavailable)"


def pair_entries(scan: RegistryScan) -> list[PairEntry]:
    """Every student of the registry with its teacher: comparable pairs first, then the others with a reason.

    A student is a model whose role is "student" or whose card names a teacher; a refused student card is
    listed with the registry's reason.
    """
    by_id = {m.id: m for m in scan.models}
    good: list[PairEntry] = []
    bad: list[PairEntry] = []
    for m in scan.models:
        named = m.card.teacher or ""
        if m.role != "student" and not named:
            continue
        if not named:
            bad.append(PairEntry(m.id, "", m, None, "its card names no teacher"))
            continue
        teacher = by_id.get(named)
        if teacher is None:
            refused = [reason for path, reason in scan.refused if path.stem == named]
            why = f"teacher {named!r} was refused: {refused[0]}" if refused else \
                f"teacher {named!r} is not in the registry"
            bad.append(PairEntry(m.id, named, m, None, why))
            continue
        try:
            check_pair(teacher, m)
        except ModelPairError as exc:
            bad.append(PairEntry(m.id, named, m, teacher, str(exc)))
            continue
        good.append(PairEntry(m.id, named, m, teacher))
    for path, reason in scan.refused:
        if _refused_role(path) == "student":
            bad.append(PairEntry(path.stem, "", None, None, reason))
    return good + bad


def _refused_role(card_path: Path) -> str:
    """The role a refused card claims (read as plain JSON), "" when unreadable."""
    import json

    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return "student" if isinstance(card, dict) and (card.get("role") == "student" or card.get("teacher")) else ""


@dataclass(frozen=True)
class DataPreview:
    """What a folder holds, before evaluating: its summary line, layout, splits and the split offered."""

    path: Path
    layout: str
    summary: str
    splits: tuple[str, ...]
    default_split: str


def preview_dataset(path: str | Path, task: str | None = None) -> DataPreview:
    """Open a labelled folder (or .npz) and describe it; raises `DatasetLayoutError` when it fits no layout
    (or not the task)."""
    ds = open_dataset(path, task=task)
    splits = ds.splits
    default = next((s for s in PREFERRED_SPLITS if s in splits), splits[0] if splits else "")
    return DataPreview(Path(path), ds.layout, ds.summary(), splits, default)


class CompareLogic:
    """Lists the pairs and runs comparisons; keeps the last result of each kind for the export."""

    def __init__(self, user_dir: str | Path | None = None) -> None:
        self.user_dir = user_dir
        self.scan: RegistryScan | None = None
        self.study_result: StudyComparison | None = None
        self.dataset_result: DatasetComparison | None = None

    def pairs(self, rescan: bool = False) -> list[PairEntry]:
        """The registry's pairs (read once; `rescan`: read the model folders again)."""
        if self.scan is None or rescan:
            self.scan = scan_models(user_dir=self.user_dir)
        return pair_entries(self.scan)

    def run_study(self, pair: PairEntry, volume: Volume, slice_index: int | None, reference: Volume | None,
                  progress: Progress = None, cancel: CancelFlag = None) -> StudyComparison:
        """`compare_on_study` of the pair on `volume` (None slice: the whole volume)."""
        return compare_on_study(pair.teacher, pair.student, volume, slice_index, progress, cancel,
                                reference=reference)

    def run_dataset(self, pair: PairEntry, path: str | Path, split: str | None, limit: int | None = None,
                    progress: Progress = None, cancel: CancelFlag = None) -> DatasetComparison:
        """`compare_on_dataset` of the pair on one split of a labelled folder."""
        return compare_on_dataset(pair.teacher, pair.student, path, split, limit=limit or None,
                                  progress=progress, cancel=cancel)

    def export(self, comparison: StudyComparison | DatasetComparison, out_dir: str | Path,
               plot_pngs: dict[str, bytes] | None = None) -> dict[str, Path]:
        """Write report.html (plots as PNG when given) and cases.csv into `out_dir`."""
        return write_report(comparison, out_dir, plot_pngs)


# -- numbers as table rows -------------------------------------------------------------------------
Row = tuple[str, str, str]  # (quantity, teacher, student); a value shared by both: (quantity, value, "")


def fmt(v: Any) -> str:
    """A number as the tables show it (4 significant digits, inf, nan, thousands for big integers)."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        v = float(v)
        if np.isnan(v):
            return "nan"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(v)


def size_text(n_bytes: int) -> str:
    """File size in kB or MB."""
    return f"{n_bytes / 1e6:.2f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} kB"


def model_rows(c: StudyComparison | DatasetComparison) -> list[Row]:
    """Latency, speed-up, parameters and file size of both models."""
    t, s = c.teacher, c.student
    return [("model", t.id, s.id), ("latency (ms)", f"{t.latency_ms:.2f}", f"{s.latency_ms:.2f}"),
            ("speed-up (teacher / student latency)", f"{c.speed_up:.2f}×", ""),
            ("parameters", fmt(t.parameters), fmt(s.parameters)),
            ("file size", size_text(t.file_bytes), size_text(s.file_bytes))]


def study_rows(c: StudyComparison) -> list[Row]:
    """The study comparison's numbers: models, then the task's (shared values in the teacher column)."""
    m = c.metrics
    rows = model_rows(c)
    if c.task == "classify":
        for name in m["teacher_probabilities"]:
            rows.append((f"p({name})", fmt(m["teacher_probabilities"][name]), fmt(m["student_probabilities"][name])))
        rows += [("top-1 label", m["teacher_label"], m["student_label"]),
                 ("top-1 agreement", "yes" if m["top1_agreement"] == 1.0 else "no", ""),
                 ("KL(teacher ‖ student), nats", fmt(m["kl_teacher_student"]), "")]
    elif c.task == "segment":
        rows += [(f"Dice teacher↔student: {name}", fmt(v), "") for name, v in m["dice_per_label"].items()]
        rows.append(("Dice mean", fmt(m["dice_mean"]), ""))
        if "dice_teacher_reference" in m:  # a reference mask was given
            for name in m["dice_teacher_reference"]:
                rows.append((f"Dice vs reference: {name}", fmt(m["dice_teacher_reference"][name]),
                             fmt(m["dice_student_reference"][name])))
        if "volumes_ml_teacher" in m:
            for name in m["volumes_ml_teacher"]:
                rows.append((f"volume (ml): {name}", fmt(m["volumes_ml_teacher"][name]),
                             fmt(m["volumes_ml_student"].get(name))))
        rows += [(f"pixels: {k.replace('_', ' ')}", fmt(v), "") for k, v in m["disagreement_pixels"].items()]
    else:
        rows += [("PSNR student vs teacher (dB)", fmt(m["psnr_db"]), ""), ("SSIM student vs teacher", fmt(m["ssim"]), ""),
                 ("max |student − teacher|", fmt(m["max_abs_difference"]), ""),
                 ("mean |student − teacher|", fmt(m["mean_abs_difference"]), "")]
    return rows


def dataset_rows(c: DatasetComparison) -> list[Row]:
    """Models, each metric of `kdviewer evaluate` side by side, then the teacher↔student agreement."""
    rows = model_rows(c)
    rows += [(k, fmt(t), fmt(s)) for k, t, s in c.metrics_table()]
    rows += [(f"agreement: {k.replace('_', ' ')}", fmt(v), "") for k, v in c.agreement.items()]
    return rows


def case_text(case) -> str:
    """One line of the disagreement list, e.g. "val/3  truth ul: teacher ul, student br"."""
    t, s = case.teacher, case.student
    if "prediction" in t:
        return (f"{case.key}   truth {case.truth}: teacher {t['prediction']} ({t['p']:.2f}), "
                f"student {s['prediction']} ({s['p']:.2f})")
    if "dice" in t:
        return (f"{case.key}   Dice teacher {fmt(t['dice'])}, student {fmt(s['dice'])}, "
                f"between {fmt(case.between['dice_ts'])}")
    return f"{case.key}   PSNR teacher {fmt(t['psnr'])} dB, student {fmt(s['psnr'])} dB"


# -- opening a case ---------------------------------------------------------------------------------
def find_item(path: str | Path, split: str, key: str) -> tuple[LabelledDataset, Item]:
    """The data set at `path` and its item `key` of `split`; raises `DatasetLayoutError` when it is gone."""
    ds = open_dataset(path)
    for item in ds.items(split):
        if item.key == key:
            return ds, item
    raise DatasetLayoutError(path, f"no item {key!r} in split {split!r} any more")


def item_file(item: Item) -> Path | None:
    """The image file an item was read from, when it is one file of its own (None: inside an .npz or a
    volume). The readers hash such items by their file: that file is the item's image."""
    from functools import partial

    from kdviewer.study.datasets_base import file_hash

    h = item.hasher
    if isinstance(h, partial) and h.func is file_hash and h.args and Path(h.args[0]).is_file() \
            and item.slice_index is None:
        return Path(h.args[0])
    return None


def case_volume(item: Item, data_name: str) -> tuple[Volume, Volume | None]:
    """The item's image as a one-slice `Volume` (a new series of the session) and its truth mask, if any."""
    sample = item.load()
    img = np.asarray(sample.image)
    sx, sy = sample.spacing_mm or (1.0, 1.0)
    info = SeriesInfo(uid="", modality="OT", description=f"{data_name} {item.key}")
    volume = Volume(img[None], spacing=(float(sx), float(sy), 1.0), info=info)
    mask = None
    if sample.mask is not None:
        mask = volume.with_array(np.asarray(sample.mask, np.uint8)[None],
                                 info=SeriesInfo(uid="", modality="SEG", description="truth"))
    return volume, mask


AGREED = 4  # label value (yellow in the overlay LUT) of a side's own foreground where both models agree


def disagreement_overlay(own: Volume, dmap: Volume) -> Volume:
    """One side's view of the disagreement: the disagreement map's values (1..3) where the models differ,
    `AGREED` where this side's mask is foreground and both agree, 0 elsewhere; on `dmap`'s grid."""
    d = np.asarray(dmap.array)
    out = np.where(d > 0, d, np.where(np.asarray(own.array) > 0, AGREED, 0)).astype(np.uint8)
    return dmap.with_array(out)
