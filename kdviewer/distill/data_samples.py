"""One training or validation sample as numpy arrays, for each task (see `kdviewer.distill.data`)."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from kdviewer.distill.augment import AugmentConfig, augment_arrays, draw_flips
from kdviewer.distill.data_config import DataConfig, DataConfigError
from kdviewer.imaging.degrade import downsample, gaussian_noise, low_dose_pair, low_dose_realizations
from kdviewer.imaging.nodule_cases import simulate_case, validation_rng
from kdviewer.imaging.preprocess import preprocess_image, resize_channels, to_channels
from kdviewer.imaging.resample import class_shares, resize_2d
from kdviewer.study.datasets import Item, Sample


def _raw(item: Item, sample: Sample, cfg: DataConfig) -> np.ndarray:
    return item.load_slices(cfg.slices) if cfg.slices > 1 else sample.image


def _random_crop(arrays: list[np.ndarray | None], patch: tuple[int, int], rng: np.random.Generator,
                 focus: np.ndarray | None = None):
    """The same random (ph, pw) window of every (..., H, W) array (padded with edge values if smaller).

    focus: an (H, W) bool mask; when it has pixels, the window is centred on one of them drawn at random
    (kept inside the image), so crops land on the region of interest (e.g. the lungs)."""
    h, w = next(a for a in arrays if a is not None).shape[-2:]
    ph, pw = patch
    if ph > h or pw > w:
        arrays = [None if a is None else np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, max(0, ph - h)), (0, max(0, pw - w))],
                                                 mode="edge") for a in arrays]
        h, w = max(h, ph), max(w, pw)
        focus = None
    if focus is not None and focus.any():
        cy, cx = np.unravel_index(int(rng.choice(np.flatnonzero(focus))), focus.shape)
        y, x = int(np.clip(cy - ph // 2, 0, h - ph)), int(np.clip(cx - pw // 2, 0, w - pw))
    else:
        y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    return [None if a is None else a[..., y:y + ph, x:x + pw] for a in arrays]


def _aligned_crop(low: np.ndarray, high: np.ndarray, patch: tuple[int, int], f: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A random (ph/f, pw/f) window of the low-res image and the (ph, pw) high-res window it covers.

    The whole slice is downsampled first, so a training patch is degraded exactly as a whole slice is at
    validation and inference (cropping first would give every patch artificial borders, a quarter of a 48-pixel
    patch within reach of a 7×7 filter)."""
    lh, lw = patch[0] // f, patch[1] // f
    if low.shape[-2] < lh or low.shape[-1] < lw:  # smaller than a patch: edge-pad both, as _random_crop does
        pad_h, pad_w = max(0, lh - low.shape[-2]), max(0, lw - low.shape[-1])
        lead = [(0, 0)] * (low.ndim - 2)
        low = np.pad(low, lead + [(0, pad_h), (0, pad_w)], mode="edge")
        high = np.pad(high, lead + [(0, max(0, lh * f - high.shape[-2])), (0, max(0, lw * f - high.shape[-1]))],
                      mode="edge")
    y, x = int(rng.integers(0, low.shape[-2] - lh + 1)), int(rng.integers(0, low.shape[-1] - lw + 1))
    return low[..., y:y + lh, x:x + lw], high[..., y * f:(y + lh) * f, x * f:(x + lw) * f]


def classify_base(item: Item, cfg: DataConfig) -> dict[str, np.ndarray]:
    """The deterministic part of a classification sample: image (C, H, W) float32 decoded and preprocessed
    (resized, normalised), target int64 (); what `ItemDataset` keeps in memory between epochs."""
    sample = item.load()
    if sample.label is None:
        raise DataConfigError(f"item {item.key} has no class label (classification needs labelled data)")
    x = preprocess_image(_raw(item, sample, cfg), cfg.preprocess, cfg.input_size)
    return {"image": x, "target": np.asarray(sample.label, dtype=np.int64)}


def classify_sample(item: Item, cfg: DataConfig, train: bool, aug: AugmentConfig, rng: np.random.Generator,
                    base: dict[str, np.ndarray] | None = None):
    """image (C, H, W) float32, target int64 (); `base`: the item's `classify_base`, if already made."""
    base = classify_base(item, cfg) if base is None else base
    x = base["image"]
    if train:
        x, _ = augment_arrays(x.copy(), [], aug, rng)
    return {"image": x, "target": base["target"]}


def simulated_nodules(item: Item, sample: Sample, cfg: DataConfig, train: bool,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32 HU with simulated nodules: (H, W), or (S, H, W) for 2.5-D; mask uint8 (H, W) of the
    (centre) slice, 0 background / 1 nodule; lungs bool (H, W)): `kdviewer.imaging.nodule_cases.simulate_case`.

    Training draws from `rng` (seeded by (seed, epoch, index): fresh nodules each epoch); validation from
    `validation_rng(seed, item key)`, so a held-out slice always carries the same nodules whatever the
    list it is in (and `kdviewer evaluate` rebuilds them with `validation_case`). A slice whose lungs are
    smaller than `min_lung_cm2`, and a share `empty_fraction` of the others, get none. For 2.5-D the
    nodules are drawn in 3-D across the slice stack (`slice_spacing_mm` apart), so they show in the
    neighbouring slices as a real nodule would.
    """
    img = np.asarray(item.load_slices(cfg.slices) if cfg.slices > 1 else sample.image, dtype=np.float32)
    if img.ndim != (3 if cfg.slices > 1 else 2):
        raise DataConfigError(f"item {item.key}: simulated nodules need grey CT slices in HU, got {img.shape}")
    if not train:
        rng = validation_rng(cfg.seed, item.key)
    return simulate_case(img, sample.spacing_mm, cfg.simulate, rng)


def segment_base(item: Item, cfg: DataConfig, train: bool, rng: np.random.Generator,
                 n_classes: int = 2) -> dict[str, np.ndarray]:
    """A whole segmentation sample before cropping and augmentation: image (C, H, W) float32 preprocessed,
    mask (H, W) at the input size (training with `data.mask_resize = "soft"`: `class_shares`, (K, H, W) float32,
    K = `n_classes`), fov bool (H, W), and "focus" (lungs, bool (H, W)) when nodules are simulated.
    Without simulation it is deterministic (`rng` unused): what `ItemDataset` keeps in memory between epochs."""
    sample = item.load()
    focus = None
    if cfg.simulate:
        raw, mask, focus = simulated_nodules(item, sample, cfg, train, rng)
    elif sample.mask is None:
        raise DataConfigError(f"item {item.key} has no mask (segmentation needs masks)")
    else:
        raw, mask = _raw(item, sample, cfg), sample.mask
    x = preprocess_image(raw, cfg.preprocess, cfg.input_size)
    fov = sample.fov if sample.fov is not None else np.ones(mask.shape, dtype=bool)
    if cfg.input_size is not None:
        if train and cfg.mask_resize == "soft":
            mask = class_shares(mask, cfg.input_size, n_classes)
        else:
            mask = resize_2d(mask, cfg.input_size, order=0)
        fov = resize_2d(fov.astype(np.uint8), cfg.input_size, order=0).astype(bool)
        if focus is not None:
            focus = resize_2d(focus.astype(np.uint8), cfg.input_size, order=0).astype(bool)
    base = {"image": x, "mask": mask, "fov": fov}
    return base if focus is None else {**base, "focus": focus}


def segment_sample(item: Item, cfg: DataConfig, train: bool, aug: AugmentConfig, rng: np.random.Generator,
                   base: dict[str, np.ndarray] | None = None, n_classes: int = 2):
    """image (C, H, W) float32, target int64 (H, W) (soft training masks: float32 (K, H, W) class shares), fov
    bool (H, W); training crops `patch_size` windows (centred in the lungs when nodules are simulated). `base`:
    the item's `segment_base`, if already made."""
    base = segment_base(item, cfg, train, rng, n_classes) if base is None else base
    x, mask, fov = base["image"], base["mask"], base["fov"]
    if train:
        if cfg.patch_size:
            x, mask, fov = _random_crop([x, mask, fov], cfg.patch_size, rng, base.get("focus"))
        x, (mask, fov) = augment_arrays(x, [mask, fov.astype(np.uint8)], aug, rng)
    target = mask.astype(np.float32) if mask.ndim == 3 else mask.astype(np.int64)
    return {"image": x, "target": target, "fov": np.asarray(fov, dtype=bool)}


def _normalise_pair(degraded: np.ndarray, clean: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Both through the same intensity map: the window, else the clean image's min/max or mean/std."""
    if cfg.normalize == "window":
        c, w = cfg.window  # type: ignore[misc]
        lo, span, clip = c - w / 2, w, True
    elif cfg.normalize == "zscore":
        lo, span, clip = float(clean.mean()), float(clean.std() or 1.0), False
    elif cfg.normalize == "minmax":
        lo, span, clip = float(clean.min()), float(clean.max() - clean.min() or 1.0), False
    else:
        lo, span, clip = 0.0, 1.0, False

    def f(a: np.ndarray) -> np.ndarray:
        out = ((a - lo) / span).astype(np.float32)
        return np.clip(out, 0, 1, out=out) if clip else out
    return f(degraded), f(clean)


def _channels_out(a: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(a[None], channels, axis=0).astype(np.float32)


# --- a fixed pool of low-dose realisations ([data].degrade.realizations = K > 0) ---------------------------
#
# Slice -> (target, (noisy_0, ..., noisy_K-1)): the whole un-cropped normalised 2-D pair at input_size,
# float32, read-only; the target (noise-free FBP, or the clean slice) is shared by the K noisy images. The
# cache lives in the process (a DataLoader worker keeps its own copy, lost when the worker ends: use
# num_workers = 0) and is never evicted. Memory: (K + 1) * H * W * 4 bytes per training slice, e.g.
# 256 x 256, K = 4: 1.25 MiB a slice, 100 MiB for 80 slices. `clear_realization_cache()` empties it.
_REALIZATIONS: dict[tuple, tuple[np.ndarray, tuple[np.ndarray, ...]]] = {}


def clear_realization_cache() -> None:
    """Forget every cached low-dose realisation (tests; freeing memory after a run)."""
    _REALIZATIONS.clear()


def realization_seed(cfg: DataConfig, item: Item, k: int) -> list[int]:
    """The seed of realisation `k` of `item`: (data seed, the item's key, k), apart from the seeds of the
    training draws (seed, epoch, index) and of validation (seed, 2**31 - 1, index) by a fourth entry."""
    return [cfg.seed, zlib.crc32(item.key.encode()), int(k), 0x10D05E]


def _pool_key(item: Item, cfg: DataConfig) -> tuple:
    """Everything a realisation depends on, so two data sets or recipes never share an entry."""
    deg = cfg.degrade
    return (str(cfg.path), item.key, cfg.seed, cfg.input_size, cfg.normalize, cfg.window,
            float(deg.get("photons", 1e4)), int(deg.get("angles", 360)), str(deg.get("target", "fbp")),
            cfg.realizations)


def low_dose_pool(item: Item, cfg: DataConfig) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(target (H, W), K noisy images (H, W)) of a slice, normalised, float32, computed on first use.

    All K are made at once from one projection of the slice (and one noise-free FBP), so a pool costs one
    radon transform and K + 1 FBPs instead of K * (1 radon + 2 FBPs). Realisation k is exactly
    `low_dose_pair(clean, photons, angles, default_rng(realization_seed(cfg, item, k)), pixel_mm)`.
    """
    key = _pool_key(item, cfg)
    hit = _REALIZATIONS.get(key)
    if hit is not None:
        return hit
    clean, pixel_mm = _clean_slice(item, cfg)
    clean2d = clean[0]
    deg = cfg.degrade
    photons, angles = float(deg.get("photons", 1e4)), int(deg.get("angles", 360))
    rngs = [np.random.default_rng(realization_seed(cfg, item, k)) for k in range(cfg.realizations)]
    fbp, noisy_hu = low_dose_realizations(clean2d, photons, angles, rngs, pixel_mm)
    target_hu = fbp if deg.get("target", "fbp") == "fbp" else clean2d
    _, target = _normalise_pair(target_hu, target_hu, cfg)
    target.flags.writeable = False
    noisy = []
    for image_hu in noisy_hu:
        image = _normalise_pair(image_hu, target_hu, cfg)[0]
        image.flags.writeable = False
        noisy.append(image)
    entry = (target, tuple(noisy))
    _REALIZATIONS[key] = entry
    return entry


def _dihedral(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flips (left-right, up-down) and quarter turns of (..., H, W) arrays (quarter turns
    only when H == W, so the shape stays): they move pixels without interpolating, so the noise keeps its
    statistics (up to the orientation of its streaks)."""
    if rng.random() < 0.5:
        arrays = [a[..., ::-1] for a in arrays]
    if rng.random() < 0.5:
        arrays = [a[..., ::-1, :] for a in arrays]
    turns = int(rng.integers(4))
    if turns % 2 and arrays[0].shape[-2] != arrays[0].shape[-1]:
        turns = 0
    return [np.rot90(a, turns, axes=(-2, -1)) for a in arrays] if turns else arrays


# A teacher's outputs for a pool: (K, C, H, W) noisy images in, (K, C_out, H, W) outputs out (numpy, float32).
PoolTeacher = Callable[[np.ndarray], np.ndarray]


def pooled_teacher_base(item: Item, cfg: DataConfig, teacher: PoolTeacher) -> dict[str, np.ndarray]:
    """The teacher's outputs on whole slices, computed once, so a KD student's training draw gets its teacher
    target by the same flips and crop as its input (the teacher then sees the whole slice around a patch).

    Denoising from a pool: {"teacher": (K, C_out, H, W)}, its output on each of the item's K noisy slices.
    Super-resolution: {"teacher": (C_out, H, W)}, its output on the whole low-res slice in its stored
    orientation; a flipped draw gets it flipped alike, which is exact for the degradation (the anti-aliased
    downsampling commutes with flips) and is the teacher's output in the slice's own frame."""
    if cfg.degrade.get("kind") == "downsample":
        clean, _ = _clean_slice(item, cfg)
        low, target = _sr_pair(clean[0], cfg)
        expect = (1, target.shape[-2], target.shape[-1])
        out = np.asarray(teacher(_channels_out(low, cfg.channels)[None]), dtype=np.float32)
        if out.ndim != 4 or out.shape[0] != 1 or out.shape[-2:] != expect[1:]:
            raise ValueError(f"the teacher gave {out.shape} for a low-res slice of {low.shape} (expected "
                             f"(1, C, {expect[1]}, {expect[2]}))")
        out = out[0]
    else:
        _, noisy = low_dose_pool(item, cfg)
        out = np.asarray(teacher(np.stack([_channels_out(a, cfg.channels) for a in noisy])), dtype=np.float32)
        if out.ndim != 4 or out.shape[0] != len(noisy) or out.shape[-2:] != noisy[0].shape:
            raise ValueError(f"the teacher gave {out.shape} for {len(noisy)} slices of {noisy[0].shape}")
    out.flags.writeable = False
    return {"teacher": out}


def _clean_slice(item: Item, cfg: DataConfig) -> tuple[np.ndarray, float]:
    """The item's slice as (1, H, W) at input_size in stored units (HU for CT), and its pixel size in mm."""
    sample = item.load()
    grey = to_channels(sample.image, 1)
    clean = resize_channels(grey, cfg.input_size)
    pixel_mm = sample.spacing_mm[0] * grey.shape[-1] / clean.shape[-1] if sample.spacing_mm else 1.0
    return clean, pixel_mm


def _sr_pair(clean2d: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(low-res input, high-res target) of a whole slice, normalised alike."""
    deg = cfg.degrade
    f = int(deg.get("factor", 2))
    return _normalise_pair(downsample(clean2d, f, str(deg.get("method", "bicubic"))), clean2d, cfg)


def _flipped(a: np.ndarray, hflip: bool, vflip: bool) -> np.ndarray:
    a = a[..., ::-1] if hflip else a
    return a[..., ::-1, :] if vflip else a


def _pooled_low_dose_sample(item: Item, cfg: DataConfig, rng: np.random.Generator,
                            base: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """A training draw from the fixed pool: one of the K realisations at random, flipped / turned, cropped;
    with `base` (`pooled_teacher_base`), also "teacher": the teacher's output on that realisation, cut alike
    (the random draws are the same with or without it)."""
    target, noisy = low_dose_pool(item, cfg)
    k = int(rng.integers(len(noisy)))
    arrays = [noisy[k], target] + ([base["teacher"][k]] if base is not None else [])
    arrays = _dihedral(arrays, rng)
    if cfg.patch_size:
        arrays = _random_crop(arrays, cfg.patch_size, rng)
    out = {"image": _channels_out(arrays[0], cfg.channels), "target": _channels_out(arrays[1], cfg.channels)}
    if base is not None:
        out["teacher"] = arrays[2]
    return out


def restore_sample(item: Item, cfg: DataConfig, task: str, train: bool, aug: AugmentConfig,
                   rng: np.random.Generator, base: dict[str, np.ndarray] | None = None):
    """denoise: image = degraded, target = clean, (C, H, W); super_resolve: image (C, H/f, W/f),
    target (C, H, W). Intensities through the recipe's window (or the clean image's range).

    Low dose with `degrade.realizations` K > 0: training draws come from a fixed pool of K noisy
    realisations per slice (`low_dose_pool`), then random flips / quarter turns and the crop (the recipe's
    other augmentations are refused by `DataConfig`), with the teacher's output cut alike when `base` holds
    it (`pooled_teacher_base`); validation is as with K = 0 (noise seeded by (seed, index), the same every
    epoch, and cached by `ItemDataset`).

    Super-resolution with `base` (the teacher's output on the whole low-res slice): the flips are drawn as
    `augment_arrays` draws them (the augmentation must be flips only), the teacher's output is flipped and
    cropped with the target, and the sample gets "teacher" (C_out, H, W)."""
    if train and cfg.realizations > 0:
        return _pooled_low_dose_sample(item, cfg, rng, base)
    clean, pixel_mm = _clean_slice(item, cfg)  # (1, H, W) in stored units (HU for CT)
    teacher = None
    if train and base is not None:  # super-resolution with the teacher's whole-slice output (flips only)
        hflip, vflip = draw_flips(aug, rng)  # the draws augment_arrays makes: the same data with or without
        clean, teacher = _flipped(clean, hflip, vflip), _flipped(base["teacher"], hflip, vflip)
    elif train:
        clean, _ = augment_arrays(clean, [], aug, rng, intensity=False)
    deg = cfg.degrade
    kind = deg["kind"]
    if train and cfg.patch_size and kind == "gaussian":  # low dose and downsampling work on the whole slice
        (clean,) = _random_crop([clean], cfg.patch_size, rng)
    clean2d = clean[0]
    if kind == "low_dose":
        noisy, fbp = low_dose_pair(clean2d, float(deg.get("photons", 1e4)), int(deg.get("angles", 360)), rng,
                                   pixel_mm)
        target = fbp if deg.get("target", "fbp") == "fbp" else clean2d
        image, target = _normalise_pair(noisy, target, cfg)
        if train and cfg.patch_size:
            image, target = _random_crop([image, target], cfg.patch_size, rng)
    elif kind == "gaussian":
        _, target = _normalise_pair(clean2d, clean2d, cfg)
        image = gaussian_noise(target, float(deg.get("sigma", 0.05)), rng)  # sigma in normalised units
    else:
        f = int(deg.get("factor", 2))
        image, target = _sr_pair(np.ascontiguousarray(clean2d), cfg)
        if train and cfg.patch_size and teacher is not None:
            image, both = _aligned_crop(image, np.concatenate([target[None], teacher]), cfg.patch_size, f, rng)
            target, teacher = both[0], both[1:]
        elif train and cfg.patch_size:
            image, target = _aligned_crop(image, target, cfg.patch_size, f, rng)
    out = {"image": _channels_out(image, cfg.channels), "target": _channels_out(target, cfg.channels)}
    if teacher is not None:
        out["teacher"] = np.ascontiguousarray(teacher)
    return out


def make_sample(item: Item, cfg: DataConfig, task: str, train: bool, aug: AugmentConfig,
                rng: np.random.Generator, base: dict[str, np.ndarray] | None = None,
                n_classes: int = 2) -> dict[str, np.ndarray]:
    """The arrays of one sample for `task` (dict keys "image", "target", "fov" for segment, "teacher" for a
    pooled denoising draw with a teacher); `base`: the item's `classify_base` / `segment_base` /
    `pooled_teacher_base` when the caller keeps them; `n_classes`: a segmenter's classes (soft masks)."""
    if task == "classify":
        return classify_sample(item, cfg, train, aug, rng, base)
    if task == "segment":
        return segment_sample(item, cfg, train, aug, rng, base, n_classes)
    return restore_sample(item, cfg, task, train, aug, rng, base)
