"""Segment a 2-D image or a volume, slice by slice, into a label `Volume` on the study's grid.

Per slice: the card's neighbours (2-D or 2.5-D), resampled in-plane to the card's spacing when it
gives one, normalised as in training, then either resized whole to the model input (the card's
``preprocess.resize`` names a method and there is no spacing) or run at its own resolution with
sliding-window tiles. The class probabilities go back to the study grid by bilinear interpolation and are
labelled there (as nnU-Net does, and as `kdviewer evaluate` scores: labels made on the model grid and resized by
nearest neighbour gave thin vessels stair-stepped edges, 1.2 Dice points below the evaluated mask); post-processing
(threshold, a field-of-view or lung gate, removal of components below ``min_diameter_mm``, largest component,
hole filling) follows the card. Slices are processed in chunks, so only one chunk's float32 probabilities
exist at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdviewer.imaging.components import (
    components_touching,
    field_of_view,
    fill_holes,
    label_volumes_ml,
    largest_component,
    remove_small_components,
)
from kdviewer.imaging.nodules import lung_region
from kdviewer.imaging.resample import resize_channels_linear
from kdviewer.modelcard import FLIP_AVERAGES
from kdviewer.runtime.control import CancelFlag, Progress, check_cancel, report
from kdviewer.runtime.errors import ModelInputError
from kdviewer.runtime.inputs import model_image, model_input, slice_stack
from kdviewer.runtime.registry import Model
from kdviewer.runtime.session import make_runner
from kdviewer.runtime.tiling import predict_tiled
from kdviewer.study.image2d import spacing_assumed
from kdviewer.study.volume import SeriesInfo, Volume


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """labels: (z, y, x) uint8 `Volume` on the study grid (0 = background); label_names: the card's
    names by label value; volumes_ml: mL per foreground label name (absent labels: 0.0); latency_ms:
    wall time of the whole run."""

    labels: Volume
    label_names: tuple[str, ...]
    volumes_ml: dict[str, float]
    latency_ms: float
    model_id: str = ""


def _image_hw(model: Model, img: np.ndarray) -> tuple[int, int]:
    if model.slices > 1 and img.ndim == 3 and img.shape[0] == model.slices:
        return int(img.shape[1]), int(img.shape[2])
    return int(img.shape[0]), int(img.shape[1])


def model_grid_hw(model: Model, hw: Sequence[int], spacing_xy: Sequence[float] | None) -> tuple[int, int] | None:
    """(h, w) the slice is resized to before the model, or None to keep it (and tile).

    The card's spacing wins; else ``preprocess.image_size`` (a whole-image size for a model trained on
    patches of it); else a ``preprocess.resize`` method means "resize to the model input".
    """
    target = model.spacing_mm
    size = model.preprocess.get("image_size")
    if target is not None and spacing_xy is not None:
        return (max(1, int(round(hw[0] * spacing_xy[1] / target[1]))),
                max(1, int(round(hw[1] * spacing_xy[0] / target[0]))))
    if size:
        return int(size[0]), int(size[1])
    if model.preprocess.get("resize"):
        return model.input_hw
    return None


def to_probabilities(out: np.ndarray, kind: str) -> np.ndarray:
    """(N, K, H, W) probabilities from logits (softmax; one channel: sigmoid as [1 - p, p]) or as given."""
    if kind != "logits":
        return out if out.shape[1] > 1 else np.concatenate([1 - out, out], axis=1)
    if out.shape[1] <= 2:  # sigmoid, or the softmax of two classes: p(1) = sigmoid(l1 - l0), in place
        p = -out if out.shape[1] == 1 else out[:, :1] - out[:, 1:]
        np.exp(p, out=p)
        p += 1.0
        np.reciprocal(p, out=p)
        return np.concatenate([1 - p, p], axis=1)
    e = np.exp(out - out.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def probabilities_to_labels(probs: np.ndarray, postprocess: dict[str, Any]) -> np.ndarray:
    """(N, H, W) uint8 labels from (N, K, H, W) probabilities: argmax, or p(1) >= threshold for two classes."""
    threshold = postprocess.get("threshold")
    if threshold is not None and probs.shape[1] == 2:
        return (probs[:, 1] >= float(threshold)).astype(np.uint8)
    return np.argmax(probs, axis=1).astype(np.uint8)


# The card's ``postprocess.flip_average``: the flipped views a batch is also run on (test-time augmentation, as
# nnU-Net's mirroring): "h" left-right, "v" up-down, "hv" both and both at once (4 views).
FLIP_VIEWS: dict[str, tuple[tuple[int, ...], ...]] = {
    "": ((),), "h": ((), (-1,)), "v": ((), (-2,)), "hv": ((), (-1,), (-2,), (-2, -1))}
assert tuple(FLIP_VIEWS) == FLIP_AVERAGES  # the values a card may carry (kdviewer.modelcard)


def flip_views(model: Model, flips: str | None = None) -> tuple[tuple[int, ...], ...]:
    """The array axes of each view to average (() = as is): `flips`, by default the card's
    ``postprocess.flip_average``."""
    flips = (model.postprocess.get("flip_average") if flips is None else flips) or ""
    if flips not in FLIP_VIEWS:
        raise ModelInputError(model.onnx_path, f"card key postprocess.flip_average is {flips!r}; "
                                               f"expected one of {sorted(k for k in FLIP_VIEWS if k)}")
    return FLIP_VIEWS[flips]


def flip_averaged(run, kind: str, views: Sequence[tuple[int, ...]]):
    """`run` on each flipped view of a batch (all views in one call): the class probabilities of the views
    (`to_probabilities`), flipped back and averaged."""

    def averaged(batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        out = run(np.concatenate([np.flip(batch, axes) if axes else batch for axes in views]))
        total = np.zeros((n, max(out.shape[1], 2), *out.shape[2:]), np.float32)
        for k, axes in enumerate(views):
            probs = to_probabilities(out[k * n:(k + 1) * n], kind)
            total += np.flip(probs, axes) if axes else probs
        total /= len(views)
        return total

    return averaged


class SlicePredictor:
    """Runs one segmentation model on chunks of same-sized slices; holds the session and the options."""

    def __init__(self, model: Model, threads: int | None = None, overlap: float = 0.25,
                 batch_size: int = 4, blend: str = "gaussian", flips: str | None = None):
        """flips: the flipped views to average ("", "h", "v", "hv"; None: the card's ``flip_average``)."""
        if model.task != "segment":
            raise ModelInputError(model.onnx_path, f"model {model.id} is a {model.task} model, not segment")
        self.model, self.overlap, self.batch_size, self.blend = model, overlap, batch_size, blend
        self.run = make_runner(model, threads)
        self.kind = str(model.card.output.get("kind", "logits"))
        views = flip_views(model, flips)
        if len(views) > 1:  # the tiles blend the averaged probabilities
            self.run, self.kind = flip_averaged(self.run, self.kind, views), "probabilities"

    def probabilities(self, imgs: Sequence[np.ndarray], spacing_xy: Sequence[float] | None,
                      cancel: CancelFlag = None) -> np.ndarray:
        """(N, K, h, w) float32 on the model's grid for N raw slices of one size (see `model_grid_hw`)."""
        hw = _image_hw(self.model, imgs[0])
        grid = model_grid_hw(self.model, hw, spacing_xy)
        x = np.stack([model_input(self.model, img, grid) for img in imgs])
        out = predict_tiled(self.run, x, self.model.input_hw, overlap=self.overlap,
                            batch_size=self.batch_size, blend=self.blend, cancel=cancel)
        return to_probabilities(out, self.kind)

    def labels(self, imgs: Sequence[np.ndarray], spacing_xy: Sequence[float] | None,
               cancel: CancelFlag = None) -> np.ndarray:
        """(N, H, W) uint8 labels on the slices' own grid: the probabilities resized there (`to_grid`),
        then argmax or the card's threshold."""
        hw = _image_hw(self.model, imgs[0])
        probs = np.stack([to_grid(p, hw) for p in self.probabilities(imgs, spacing_xy, cancel)])
        return probabilities_to_labels(probs, self.model.postprocess)


def to_grid(probs: np.ndarray, hw: Sequence[int]) -> np.ndarray:
    """(K, H, W) class probabilities of one slice resized bilinearly to `hw` (as given when already there)."""
    return probs if probs.shape[1:] == tuple(hw) else resize_channels_linear(probs, hw)


def segment_probabilities(model: Model, image: np.ndarray, spacing_xy: Sequence[float] | None = None,
                          threads: int | None = None) -> np.ndarray:
    """(K, H, W) float32 class probabilities of one 2-D image (H, W) / (H, W, 3) on its own grid."""
    pred = SlicePredictor(model, threads)
    img = model_image(model, image)
    return to_grid(pred.probabilities([img], spacing_xy)[0], _image_hw(model, img))


def _without_small_components(mask: np.ndarray, min_diameter_mm: float,
                              spacing: Sequence[float] | None) -> np.ndarray:
    """`remove_small_components` by the 3-D (sphere) rule for a stack of slices, the 2-D (disc) rule
    for one image, (H, W) or a single-slice (1, H, W)."""
    if mask.ndim == 3 and mask.shape[0] == 1:
        plane = None if spacing is None else tuple(spacing)[:2]
        return remove_small_components(mask[0], min_diameter_mm, plane)[None]
    return remove_small_components(mask, min_diameter_mm, spacing)


def postprocess_labels(labels: np.ndarray, postprocess: dict[str, Any], n_labels: int,
                       spacing: Sequence[float] | None = None, image: np.ndarray | None = None) -> np.ndarray:
    """Apply the card's ``fov_gate``, ``lung_gate_mm``, ``min_diameter_mm``, ``largest_component`` and
    ``fill_holes`` to each foreground label, in that order (in place; `labels` is returned).

    ``fov_gate`` (true) clears the labels outside the photograph's field of view, found in `image` (the input as
    read, grey or colour, the labels' shape; `kdviewer.imaging.components.field_of_view`): a fundus model's
    "vessels" along the edge of the camera's disc and in the dark surround go.

    ``lung_gate_mm`` > 0 keeps only the components that overlap the lungs of `image` (the input in HU, the
    labels' shape; `kdviewer.imaging.nodules.lung_region`, closed by a disc of that radius so that nodules on
    the pleura stay in): a lung-nodule model's findings in the abdomen, chest wall or mediastinum go;
    ``lung_gate_min_cm2`` > 0 (with the gate) gives a slice showing less lung than that no region at all (below
    the lung bases the largest air sections are bowel gas).
    Components are 3-D in an (N, H, W) stack. ``min_diameter_mm`` > 0 drops the components of a label smaller
    than a lesion that wide: in a stack of N > 1 slices, below a sphere's volume (`spacing` (x, y, z) mm); in
    one image, (H, W) or (1, H, W), below a disc's area (`spacing` (x, y) mm). None: 1 mm pixels.
    """
    gate_mm = float(postprocess.get("lung_gate_mm") or 0.0)
    min_diameter = float(postprocess.get("min_diameter_mm") or 0.0)
    keep_largest = bool(postprocess.get("largest_component"))
    fill = bool(postprocess.get("fill_holes"))
    if postprocess.get("fov_gate"):
        if image is None or np.shape(image)[:labels.ndim] != labels.shape:
            raise ValueError(f"fov_gate needs the input image, shaped as the labels {labels.shape}")
        labels[~field_of_view(image)] = 0
    if not (gate_mm > 0 or min_diameter > 0 or keep_largest or fill):
        return labels
    lungs = None
    if gate_mm > 0:
        if image is None or np.shape(image) != labels.shape:
            raise ValueError(f"lung_gate_mm needs the input image in HU, shaped as the labels {labels.shape}")
        lungs = lung_region(image, None if spacing is None else tuple(spacing)[:2], gate_mm,
                            min_lung_cm2=float(postprocess.get("lung_gate_min_cm2") or 0.0))
    for value in range(1, max(n_labels, int(labels.max(initial=0)) + 1)):
        mask = labels == value
        if not mask.any():
            continue
        new = mask if lungs is None else components_touching(mask, lungs)
        new = _without_small_components(new, min_diameter, spacing) if min_diameter > 0 else new
        if keep_largest:
            new = largest_component(new)
        if fill:
            new = fill_holes(new, per_slice=labels.ndim == 3)
        labels[mask & ~new] = 0
        labels[new & (labels == 0)] = value
    return labels


def postprocess_limits(postprocess: dict[str, Any]) -> list[str]:
    """The card limits that `postprocess_labels` with this `postprocess` implies (a reader should know what a gate
    hides): written into a card at export and by `benchmarks/tune_postprocess.py --write`."""
    gate = float(postprocess.get("lung_gate_mm") or 0.0)
    if gate <= 0:
        return []
    floor = float(postprocess.get("lung_gate_min_cm2") or 0.0)
    line = f"findings are kept only where they touch the lungs (lung gate, closed by {gate:g} mm)"
    if floor > 0:
        line += (f"; a slice showing less than {floor:g} cm² of lung gets none (below the lung bases the "
                 "largest air is bowel gas; the last slices of a lung apex or base are skipped too)")
    return [line]

def extent_text(volume_ml: float, volume: Volume) -> str:
    """How big a label is, in the unit the study can carry: mL in a volume, cm² in a single image with a
    known pixel spacing, pixels in a picture file (its 1 mm spacing is only assumed), e.g. "12.34 mL"."""
    sx, sy, sz = volume.spacing
    if volume.shape[0] > 1:
        return f"{volume_ml:.2f} mL"
    if spacing_assumed(volume):
        return f"{round(volume_ml * 1000.0 / (sx * sy * sz)):,} px"
    return f"{volume_ml * 10.0 / sz:.2f} cm²"


def reads_image(postprocess: dict[str, Any]) -> bool:
    """Whether a card's post-processing reads the input image (a lung gate or a field-of-view gate)."""
    return bool(postprocess.get("lung_gate_mm") or postprocess.get("fov_gate"))


def segment_volume(model: Model, volume: Volume | np.ndarray, progress: Progress = None,
                   cancel: CancelFlag = None, *, threads: int | None = None, chunk_slices: int = 4,
                   overlap: float = 0.25, blend: str = "gaussian") -> SegmentationResult:
    """Segment every slice of `volume` (or one 2-D image) into a uint8 label `Volume` on its grid.

    progress(done, total) after each chunk of slices; `cancel` (Event or callable) stops between
    batches with `Cancelled`, and nothing is returned. Colour volumes go through the card's channel rule.
    """
    if not isinstance(volume, Volume):
        volume = Volume(np.asarray(volume)[None] if np.ndim(volume) == 2 or (
            np.ndim(volume) == 3 and np.shape(volume)[-1] in (3, 4)) else np.asarray(volume))
    t0 = time.perf_counter()
    pred = SlicePredictor(model, threads, overlap=overlap, blend=blend)
    arr = volume.array
    nz = arr.shape[0]
    out = np.zeros(volume.shape, np.uint8)
    spacing_xy = volume.spacing[:2]
    for start in range(0, nz, chunk_slices):
        check_cancel(cancel, "segmentation")
        zs = range(start, min(nz, start + chunk_slices))
        if model.slices > 1 and not volume.is_color:
            imgs = [slice_stack(arr, z, model.slices) for z in zs]
        else:
            imgs = [model_image(model, arr[z]) for z in zs]
        out[start:start + len(zs)] = pred.labels(imgs, spacing_xy, cancel)
        report(progress, start + len(zs), nz)
    names = model.labels or ("background", "foreground")
    postprocess_labels(out, model.postprocess, len(names), volume.spacing,
                       image=arr if reads_image(model.postprocess) else None)
    ml = label_volumes_ml(out, volume.spacing)
    volumes_ml = {name: float(ml.get(i, 0.0)) for i, name in enumerate(names) if i > 0}
    info = SeriesInfo(uid="", modality="SEG", description=f"{model.id} segmentation",
                      source=volume.info.source, study_uid=volume.info.study_uid,
                      frame_of_reference_uid=volume.info.frame_of_reference_uid)
    labels = volume.with_array(out, info=info)
    return SegmentationResult(labels, tuple(names), volumes_ml, (time.perf_counter() - t0) * 1000.0, model.id)
