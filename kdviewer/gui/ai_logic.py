"""The AI panel's logic, without Qt: which models fit a series, their cards, running one, its results.

Like a 3D Slicer module's Logic class, everything the AI panel does can be called from a script or a
test: `AiPanelLogic` lists the registry's models for a volume (fitting ones first, the others and the
refused ones on request), runs one through the runtime's task functions (the same ones `kdviewer
infer` calls) with progress and cancel, keeps the last result of each kind and exports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from kdviewer.gui.overlay import LABEL_COLORS
from kdviewer.imaging.components import largest_component_centroid
from kdviewer.runtime import (
    ClassificationResult,
    EnhancementResult,
    Model,
    RegistryScan,
    SegmentationResult,
    classify_image,
    enhance_volume,
    scan_models,
    segment_volume,
)
from kdviewer.runtime.control import CancelFlag, Progress
from kdviewer.runtime.export import (
    ExportError,
    save_classification_json,
    save_dicom_seg,
    save_enhanced_dicom,
    save_nifti,
)
from kdviewer.study.volume import Volume

TASK_TITLES = {"classify": "Classification", "segment": "Segmentation", "denoise": "Denoising",
               "super_resolve": "Super-resolution"}
RESEARCH_ONLY = "Research use only. Not for diagnosis."


@dataclass(frozen=True, eq=False)
class ModelEntry:
    """One line of the model list.

    model: None when the registry refused the card or file (`problem` says why); fits: the model is
    made for this series; problem: why it does not fit, or why it is unavailable ("" when it fits).
    """

    id: str
    task: str
    model: Model | None
    fits: bool
    problem: str = ""
    card_path: Path | None = None

    @property
    def available(self) -> bool:
        return self.model is not None

    def title(self) -> str:
        """The list's text, e.g. "tiny-seg  (segmentation)" or "broken  (unavailable)"."""
        if self.model is None:
            return f"{self.id}  (unavailable)"
        mark = "" if self.fits else "⚠ "
        return f"{mark}{self.id}  ({TASK_TITLES.get(self.task, self.task).lower()})"


@dataclass(frozen=True, eq=False)
class AiRun:
    """A finished run: the model, the volume it ran on, the slice (classification of a volume) and the result."""

    model: Model
    source: Volume
    result: ClassificationResult | SegmentationResult | EnhancementResult
    slice_index: int | None = None

    @property
    def latency_ms(self) -> float:
        return float(self.result.latency_ms)


@dataclass(frozen=True)
class LegendRow:
    """One label of a segmentation: value in the mask, name, volume in mL and its overlay colour (RGB)."""

    value: int
    name: str
    volume_ml: float
    color: tuple[int, int, int]


def fit_problems(model: Model, volume: Volume | None) -> list[str]:
    """Why `model` is not made for `volume` (modality; 2-D image vs volume); empty when it fits."""
    if volume is None:
        return []
    problems = []
    modality = volume.info.modality
    if not model.fits(modality):
        problems.append(f"{model.id} is made for {', '.join(model.modalities)} images; this series is "
                        f"{modality or 'of unknown modality'}")
    if model.task in ("denoise", "super_resolve") and volume.is_color:
        problems.append(f"{model.id} enhances grey images; this series is in colour")
    if model.slices > 1 and volume.shape[0] < model.slices:
        problems.append(f"{model.id} reads {model.slices} neighbouring slices (2.5-D); this series has "
                        f"{volume.shape[0]}")
    return problems


# DICOM modalities of photographs, taken in colour: ophthalmic and external-camera photography, endoscopy,
# general and slide microscopy. A model whose card lists one of them was made for colour pictures.
PHOTO_MODALITIES = frozenset({"OP", "XC", "ES", "GM", "SM"})
GENERIC_MODALITIES = frozenset({"", "OT"})  # no modality, or "other" (picture files): says nothing of the content
ROLE_ORDER = {"student": 0, "baseline": 0, "teacher": 1}  # the zoo's fast model (with or without KD) first


def fit_rank(model: Model, volume: Volume | None) -> tuple[int, int, str]:
    """Sort key of a fitting model for `volume`: the likeliest model first.

    A card that names the series' own modality (MR for an MR series) comes first. A picture file (modality OT)
    or a series without one says nothing of its content, so there the kind of picture decides: a colour picture
    goes first to models made for photographs (OP, XC, ...: a fundus photograph to the vessel models), a grey
    one to models made for grey images (MR, US, CR, ...). Then students before teachers, then by id.
    """
    modality = (volume.info.modality or "").upper() if volume is not None else ""
    listed = set(model.modalities)
    if modality not in GENERIC_MODALITIES and modality in listed:
        match = 0
    elif volume is None or not listed - GENERIC_MODALITIES:
        match = 1  # no series, or a model that names no specific modality: no evidence either way
    else:
        photo = bool(listed & PHOTO_MODALITIES)
        match = 1 if photo == volume.is_color else 2
    return match, ROLE_ORDER.get(model.card.role, 2), model.id


def model_entries(scan: RegistryScan, volume: Volume | None, show_all: bool = False) -> list[ModelEntry]:
    """The list for `volume`: fitting models first, likeliest first (`fit_rank`); with `show_all` also the
    others and the refused ones."""
    fitting, others = [], []
    for model in sorted(scan.models, key=lambda m: fit_rank(m, volume)):
        problems = fit_problems(model, volume)
        entry = ModelEntry(model.id, model.task, model, not problems, "; ".join(problems), model.card_path)
        (others if problems else fitting).append(entry)
    refused = [ModelEntry(path.stem, "", None, False, reason, path) for path, reason in scan.refused]
    if not show_all:
        return fitting + refused  # a refused model is listed (greyed) so the user learns why it is missing
    return fitting + others + refused


def _metrics_html(metrics: dict) -> str:
    items = []
    for split, values in metrics.items():
        if isinstance(values, dict):
            text = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
            items.append(f"{escape(str(split))}: {escape(text)}")
        else:
            items.append(f"{escape(str(split))}: {escape(str(values))}")
    return "; ".join(items) or "none reported"


@dataclass(frozen=True)
class Caveat:
    """What a shown result must carry in plain words: the intended use, the card's limits, the data and licence."""

    use: str
    limits: tuple[str, ...]
    data: str
    misfit: str = ""  # why the model was not made for the series it ran on ("" when it was)


CAVEAT_FULL_CHARS = 400  # limits up to this many characters in all are shown in full under a result
CAVEAT_SHORT_ITEMS = 3  # longer lists show this many limits, each shortened, until the user asks for all
CAVEAT_SHORT_CHARS = 90


def intended_use(card) -> str:
    """The card's intended-use line, with "Research use only. Not for diagnosis." always in it."""
    use = (card.intended_use or "").strip() or RESEARCH_ONLY
    return use if RESEARCH_ONLY.lower() in use.lower() else f"{use} {RESEARCH_ONLY}"


def model_caveat(model: Model, source: Volume | None = None) -> Caveat:
    """The caveat shown under a result of `model` on `source` (the limits of its card, as in docs/MODEL_ZOO.md)."""
    card = model.card
    training = card.training or {}
    limits = tuple(str(limit).strip() for limit in card.limits if str(limit).strip()) or ("none stated",)
    data = (f"Data: {training.get('dataset', 'not stated')}; "
            f"licence: {training.get('licence', 'not stated')}")
    return Caveat(intended_use(card), limits, data, "; ".join(fit_problems(model, source)))


def shorten(text: str, chars: int = CAVEAT_SHORT_CHARS) -> str:
    """`text` cut at a word boundary to at most `chars` characters, with "…" when cut."""
    if len(text) <= chars:
        return text
    cut = text[:chars - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return f"{cut or text[:chars - 1]}…"


def caveat_is_long(caveat: Caveat) -> bool:
    """Too long to show in full by default (the panel then shows a shortened list and a toggle)."""
    return sum(len(limit) for limit in caveat.limits) > CAVEAT_FULL_CHARS


def caveat_limits(caveat: Caveat, full: bool) -> list[str]:
    """The limits as shown: all in full, or the first few shortened when the list is long and not expanded."""
    if full or not caveat_is_long(caveat):
        return list(caveat.limits)
    return [shorten(limit) for limit in caveat.limits[:CAVEAT_SHORT_ITEMS]]


FLIP_WORDS = {"h": "each image also run flipped left-right, the two averaged",
              "v": "each image also run flipped up-down, the two averaged",
              "hv": "each image also run flipped left-right, up-down and both, the four averaged"}


def postprocess_text(postprocess: dict) -> str:
    """A segmentation card's post-processing in words, in the order it runs ("" when there is none)."""
    pp = postprocess or {}
    parts = [FLIP_WORDS.get(str(pp.get("flip_average") or ""), "")]
    parts.append(f"class 1 where p ≥ {pp['threshold']:g}" if pp.get("threshold") is not None else "")
    parts.append("field-of-view gate" if pp.get("fov_gate") else "")
    if pp.get("lung_gate_mm"):
        floor = f", none on slices with < {pp['lung_gate_min_cm2']:g} cm² of lung" if pp.get("lung_gate_min_cm2") else ""
        parts.append(f"lung gate ({pp['lung_gate_mm']:g} mm{floor})")
    parts.append(f"regions under {pp['min_diameter_mm']:g} mm removed" if pp.get("min_diameter_mm") else "")
    parts.append("largest region only" if pp.get("largest_component") else "")
    parts.append("holes filled" if pp.get("fill_holes") else "")
    return "; ".join(part for part in parts if part)


def card_html(entry: ModelEntry) -> str:
    """The card of a list entry as HTML: task, data, licence, metrics, parameters, intended use, limits."""
    if entry.model is None:
        return (f"<h3>{escape(entry.id)}</h3><p style='color:#c0392b'><b>Unavailable.</b> "
                f"{escape(entry.problem)}</p><p>{escape(str(entry.card_path or ''))}</p>")
    card = entry.model.card
    training, arch, inp = card.training or {}, card.architecture or {}, card.input or {}
    params = arch.get("parameters")
    params_text = f"{params:,}" if isinstance(params, int) and params > 0 else "not stated"
    teacher = f" of teacher {escape(str(card.teacher))}" if card.teacher else ""
    rows = [
        ("Task", f"{TASK_TITLES.get(card.task, card.task)} ({escape(card.role)}{teacher})"),
        ("Architecture", f"{escape(str(arch.get('name', '?')))}, {params_text} parameters, "
                         f"{escape(str(card.file.get('weights', 'float32')))} weights"),
        ("Input", f"{escape(str(inp.get('shape')))}; modalities {escape(', '.join(entry.model.modalities) or 'any')}"),
        ("Labels", escape(", ".join(entry.model.labels)) or "—"),
        *([("Post-processing", escape(text))] if (text := postprocess_text(card.postprocess)) else []),
        ("Data", escape(str(training.get("dataset", "not stated")))),
        ("Licence", escape(str(training.get("licence", "not stated")))),
        ("Metrics", _metrics_html(card.metrics or {})),
        ("File", f"{escape(entry.model.onnx_path.name)} ({escape(entry.model.origin)})"),
    ]
    table = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    limits = "".join(f"<li>{escape(str(limit))}</li>" for limit in card.limits) or "<li>none stated</li>"
    warning = (f"<p style='color:#d35400'>⚠ {escape(entry.problem)}. You may still run it.</p>"
               if not entry.fits else "")
    use = intended_use(card)
    return (f"<h3>{escape(entry.id)}</h3><p style='color:#c0392b'><b>{escape(use)}</b></p>{warning}"
            f"<table cellspacing='2'>{table}</table><p><b>Limits</b></p><ul>{limits}</ul>")


def run_model(model: Model, volume: Volume, slice_index: int | None = None, progress: Progress = None,
              cancel: CancelFlag = None, saliency: bool = True, threads: int | None = None) -> AiRun:
    """Run `model` on `volume` by its task; classification takes slice `slice_index` (file order).

    Raises the runtime's errors (`ModelLoadError`, `ModelInputError`, `Cancelled`, ...) unchanged.
    """
    if model.task == "classify":
        index = slice_index if volume.shape[0] > 1 else None
        result = classify_image(model, volume, index, saliency=saliency, threads=threads,
                                progress=progress, cancel=cancel)
        return AiRun(model, volume, result, index)
    if model.task == "segment":
        return AiRun(model, volume, segment_volume(model, volume, progress, cancel, threads=threads))
    return AiRun(model, volume, enhance_volume(model, volume, progress, cancel, threads=threads))


def legend_rows(result: SegmentationResult) -> list[LegendRow]:
    """The foreground labels of a segmentation with their mL and overlay colours (as the views draw them)."""
    rows = []
    for value, name in enumerate(result.label_names):
        if value == 0:
            continue
        color = LABEL_COLORS[(value - 1) % len(LABEL_COLORS)]
        rows.append(LegendRow(value, name, float(result.volumes_ml.get(name, 0.0)), color))
    return rows


def largest_lesion_index(labels: Volume, value: int) -> tuple[int, int, int] | None:
    """(z, y, x) file voxel index of the centre of the largest connected region of label `value`, or None."""
    centroid = largest_component_centroid(labels.array, value)
    if centroid is None:
        return None
    z, y, x = (int(round(c)) for c in centroid)
    mask = labels.array == value
    if not mask[z, y, x]:  # a curved region's centroid may fall outside it: take its nearest voxel
        points = np.argwhere(mask)
        z, y, x = (int(v) for v in points[np.argmin(((points - (z, y, x)) ** 2).sum(axis=1))])
    return z, y, x


def saliency_volume(source: Volume, saliency: np.ndarray, slice_index: int | None) -> np.ndarray:
    """(z, y, x) uint8 heat map on `source`'s grid: the (y, x) saliency in [0, 1] on its slice, 0 elsewhere."""
    heat = np.zeros(source.shape, np.uint8)
    heat[slice_index or 0] = np.clip(np.rint(np.asarray(saliency) * 255), 0, 255).astype(np.uint8)
    return heat


def is_dicom_source(volume: Volume) -> bool:
    """True when `volume` was read from DICOM files (a DICOM export can reference them)."""
    return bool(volume.info.sop_instance_uids) and len(volume.info.sop_instance_uids) == volume.shape[0]


class AiPanelLogic:
    """The registry as the AI panel sees it, and the last result of each kind with its exports."""

    def __init__(self, user_dir: str | Path | None = None) -> None:
        self.user_dir = user_dir
        self.scan: RegistryScan | None = None
        self.classification: AiRun | None = None
        self.segmentation: AiRun | None = None
        self.enhancement: AiRun | None = None

    def refresh(self) -> RegistryScan:
        """Read the registry again (shipped models, then the user's: $KDVIEWER_HOME/models)."""
        self.scan = scan_models(user_dir=self.user_dir)
        return self.scan

    def entries(self, volume: Volume | None, show_all: bool = False) -> list[ModelEntry]:
        """The model list for `volume` (see `model_entries`); scans the registry the first time."""
        if self.scan is None:
            self.refresh()
        return model_entries(self.scan, volume, show_all)

    def run(self, model: Model, volume: Volume, slice_index: int | None = None, progress: Progress = None,
            cancel: CancelFlag = None) -> AiRun:
        """Run `model` (see `run_model`); the caller hands the finished run to `accept`."""
        return run_model(model, volume, slice_index, progress, cancel)

    def accept(self, run: AiRun) -> None:
        """Keep `run` as the current result of its kind."""
        kind = {"classify": "classification", "segment": "segmentation"}.get(run.model.task, "enhancement")
        setattr(self, kind, run)

    def clear(self) -> None:
        """Forget every result (another series is shown)."""
        self.classification = self.segmentation = self.enhancement = None

    # -- exports -----------------------------------------------------------------------------
    def _need(self, run: AiRun | None, what: str) -> AiRun:
        if run is None:
            raise ExportError(None, f"there is no {what} to export; run a model first")
        return run

    def export_mask_nifti(self, path: str | Path) -> Path:
        """The segmentation mask as NIfTI (or NRRD/MHA by extension) on the study's grid."""
        return save_nifti(self._need(self.segmentation, "segmentation").result.labels, path)

    def export_mask_dicom_seg(self, path: str | Path) -> Path:
        """The segmentation mask as a DICOM SEG referencing the source series (DICOM sources only)."""
        run = self._need(self.segmentation, "segmentation")
        return save_dicom_seg(run.result.labels, run.source, path, run.result.label_names, run.model.id)

    def export_enhanced_nifti(self, path: str | Path) -> Path:
        """The enhanced series as NIfTI (or NRRD/MHA by extension)."""
        return save_nifti(self._need(self.enhancement, "enhanced series").result.volume, path)

    def export_enhanced_dicom(self, folder: str | Path) -> Sequence[Path]:
        """The enhanced series as a new DICOM series in `folder` (DICOM sources only)."""
        run = self._need(self.enhancement, "enhanced series")
        return save_enhanced_dicom(run.result.volume, run.source, folder, run.model.id)

    def export_classification_json(self, path: str | Path) -> Path:
        """The classification (label, probabilities, latency, model, source) as JSON."""
        run = self._need(self.classification, "classification")
        return save_classification_json(run.result, path, run.source, run.slice_index)
