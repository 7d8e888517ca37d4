"""The recipe's [data] table, checked: every key known, every value of the right kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdviewer.distill.augment import IMAGE_ONLY_KEYS, AugmentConfig
from kdviewer.errors import KdviewerError
from kdviewer.imaging.nodule_cases import SIMULATION_DEFAULTS
from kdviewer.imaging.nodules import NODULE_KINDS
from kdviewer.imaging.preprocess import GREY_MODES, NORMALIZE_MODES, OPTIONAL_DEFAULTS, optional_steps

TASKS = ("classify", "segment", "denoise", "super_resolve")
# How a training mask reaches the input size: label maps by nearest neighbour, or class shares resized as the
# image is (thin structures such as 1-px vessels keep their share instead of breaking where rows are dropped).
MASK_RESIZE_MODES = ("nearest", "soft")
DEGRADE_KINDS = ("low_dose", "gaussian", "downsample")
_DEGRADE_KEYS = {"kind", "photons", "angles", "sigma", "factor", "method", "target", "realizations"}
# Augmentations that interpolate the image: with a fixed pool of low-dose realisations they would blur the
# stored noise (only flips and quarter turns, which commute with its statistics, are applied then).
_POOL_NO_AUGMENT = ("rotate_deg", "scale", "crop")
SIMULATE_KINDS = ("nodules",)
# [data].simulate = {kind = "nodules", ...}: the defaults of every key (see `kdviewer.imaging.nodules`).
# The simulation's keys and defaults (documented in kdviewer.imaging.nodule_cases): one table for training and runtime.
NODULE_DEFAULTS: dict[str, Any] = SIMULATION_DEFAULTS


class DataConfigError(KdviewerError):
    """The recipe's [data] table has an unknown key, a missing key or a bad value (named in the message)."""


def _simulate(value: Any) -> dict:
    """The [data].simulate table checked and filled with `NODULE_DEFAULTS` ({} when absent)."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise DataConfigError(f"data.simulate must be a table like {{kind = \"nodules\"}}, got {value!r}")
    if value.get("kind") not in SIMULATE_KINDS:
        raise DataConfigError(f"data.simulate.kind must be one of {SIMULATE_KINDS}, got {value.get('kind')!r}")
    unknown = set(value) - set(NODULE_DEFAULTS)
    if unknown:
        raise DataConfigError(f"data.simulate: unknown key(s) {sorted(unknown)}; expected {sorted(NODULE_DEFAULTS)}")
    out = {**NODULE_DEFAULTS, **value}
    n_lo, n_hi = _pair(out["per_image"], "simulate.per_image")  # type: ignore[misc]
    d_lo, d_hi = _pair(out["diameter_mm"], "simulate.diameter_mm", float)  # type: ignore[misc]
    if not 0 <= n_lo <= n_hi or not 0 < d_lo <= d_hi:
        raise DataConfigError(f"data.simulate: per_image {out['per_image']} and diameter_mm {out['diameter_mm']} "
                              "must be ranges [lo, hi] with 0 <= lo <= hi (diameters > 0)")
    kinds = [out["kinds"]] if isinstance(out["kinds"], str) else list(out["kinds"])
    if not kinds or set(kinds) - set(NODULE_KINDS):
        raise DataConfigError(f"data.simulate.kinds must be some of {NODULE_KINDS}, got {out['kinds']!r}")
    try:
        fractions = {k: float(out[k]) for k in ("empty_fraction", "juxta_pleural")}
        min_lung = float(out["min_lung_cm2"])
        slice_mm = None if out["slice_spacing_mm"] is None else float(out["slice_spacing_mm"])
    except (TypeError, ValueError) as e:
        raise DataConfigError(f"data.simulate: {e}") from e
    if any(not 0 <= f <= 1 for f in fractions.values()):
        raise DataConfigError(f"data.simulate: empty_fraction and juxta_pleural are fractions in [0, 1], got {fractions}")
    excl = out["exclude_slices"] or []
    ranges = [excl] if excl and not isinstance(excl[0], list | tuple) else list(excl)
    exclude = [list(_pair(r, "simulate.exclude_slices")) for r in ranges]  # type: ignore[arg-type]
    return {"kind": "nodules", "per_image": [n_lo, n_hi], "diameter_mm": [d_lo, d_hi], **fractions,
            "kinds": kinds, "min_lung_cm2": min_lung, "exclude_slices": exclude, "slice_spacing_mm": slice_mm}


def _repeat(value: Any) -> int:
    """data.repeat: how many samples each training item gives per epoch (fresh random patches/augmentations)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataConfigError(f"data.repeat must be an integer >= 1 (samples per training item per epoch), "
                              f"got {value!r}")
    return value


def _pair(value: Any, key: str, kind: type = int) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (kind(value), kind(value))
    try:
        a, b = value
        return (kind(a), kind(b))
    except (TypeError, ValueError) as e:
        raise DataConfigError(f"data.{key} must be a pair [a, b], got {value!r}") from e


@dataclass(frozen=True)
class DataConfig:
    """The [data] table. input_size: (H, W) of the (high-res) image; window: (center, width) HU;
    simulate: {} or the checked `NODULE_DEFAULTS`-like table of simulated nodules (segment task); grey: colour to
    one channel by "luma" or the "green" channel; clahe: CLAHE clip limit (0: off; see `kdviewer.imaging.preprocess`);
    mask_resize: how training masks reach `input_size`, "nearest" (label maps) or "soft" (each class's share of a
    pixel, resized as the image is: the training targets become class probabilities; validation keeps labels)."""

    path: Path
    layout: str = "auto"
    input_size: tuple[int, int] | None = None
    channels: int = 1
    val_fraction: float = 0.1
    seed: int = 0
    augment: dict = field(default_factory=dict)
    degrade: dict = field(default_factory=dict)
    window: tuple[float, float] | None = None
    normalize: str = "minmax"
    slices: int = 1
    patch_size: tuple[int, int] | None = None
    max_items: int | None = None
    stratify: bool = True
    block_size: int | None = None
    simulate: dict = field(default_factory=dict)
    repeat: int = 1
    grey: str = "luma"
    clahe: float = 0.0
    mask_resize: str = "nearest"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], task: str, recipe_dir: Path | None) -> DataConfig:
        """Check and resolve the table; the path is taken relative to `recipe_dir` unless absolute."""
        if task not in TASKS:
            raise DataConfigError(f"task must be one of {TASKS}, got {task!r}")
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise DataConfigError(f"data: unknown key(s) {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}")
        if not d.get("path"):
            raise DataConfigError("data.path is missing: the data folder, relative to the recipe file")
        path = Path(d["path"]).expanduser()
        if not path.is_absolute() and recipe_dir is not None:
            path = Path(recipe_dir) / path
        window = _pair(d.get("window"), "window", float)
        degrade = dict(d.get("degrade") or {})
        if set(degrade) - _DEGRADE_KEYS:
            raise DataConfigError(f"data.degrade: unknown key(s) {sorted(set(degrade) - _DEGRADE_KEYS)}")
        try:
            cfg = cls(
                path=path.resolve(), layout=str(d.get("layout", "auto")),
                input_size=_pair(d.get("input_size"), "input_size"), channels=int(d.get("channels", 1)),
                val_fraction=float(d.get("val_fraction", 0.1)), seed=int(d.get("seed", 0)),
                augment=dict(d.get("augment") or {}), degrade=degrade, window=window,
                normalize=str(d.get("normalize") or ("window" if window else "minmax")),
                slices=int(d.get("slices", 1)), patch_size=_pair(d.get("patch_size"), "patch_size"),
                max_items=None if d.get("max_items") is None else int(d["max_items"]),
                stratify=bool(d.get("stratify", True)),
                block_size=None if d.get("block_size") is None else int(d["block_size"]),
                simulate=_simulate(d.get("simulate")),
                repeat=_repeat(d.get("repeat", 1)),
                grey=str(d.get("grey", OPTIONAL_DEFAULTS["grey"])), clahe=float(d.get("clahe", OPTIONAL_DEFAULTS["clahe"])),
                mask_resize=str(d.get("mask_resize", "nearest")),
            )
        except (TypeError, ValueError) as e:
            raise DataConfigError(f"data: {e}") from e
        cfg._check(task)
        out = cfg.with_task_defaults(task)
        out._check_realizations()
        return out

    def _check(self, task: str) -> None:
        if self.channels not in (1, 3):
            raise DataConfigError(f"data.channels must be 1 or 3, got {self.channels}")
        if self.slices < 1 or self.slices % 2 == 0:
            raise DataConfigError(f"data.slices must be odd (1 or 3 ...), got {self.slices}")
        if self.slices > 1 and task in ("denoise", "super_resolve"):
            raise DataConfigError("data.slices > 1 is for classify and segment only")
        if task in ("denoise", "super_resolve") and any(self.augment.get(k) for k in IMAGE_ONLY_KEYS):
            raise DataConfigError(f"data.augment {' / '.join(IMAGE_ONLY_KEYS)} are for classify and segment: for {task} "
                                  "they would change the degradation the model learns to undo (data.degrade does that)")
        if self.grey not in GREY_MODES:
            raise DataConfigError(f"data.grey must be one of {GREY_MODES} (colour to one channel), got {self.grey!r}")
        if self.grey != "luma" and self.channels != 1:
            raise DataConfigError(f"data.grey = {self.grey!r} makes one channel of a colour image: data.channels "
                                  "must be 1")
        if not 0 <= self.clahe <= 1:
            raise DataConfigError(f"data.clahe is CLAHE's clip limit in (0, 1] (0: off), got {self.clahe}")
        if self.clahe and task in ("denoise", "super_resolve"):
            raise DataConfigError(f"data.clahe is for classify and segment: for {task} it would change the "
                                  "intensities the model must restore")
        if self.mask_resize not in MASK_RESIZE_MODES:
            raise DataConfigError(f"data.mask_resize must be one of {MASK_RESIZE_MODES}, got {self.mask_resize!r}")
        if self.mask_resize != "nearest" and task != "segment":
            raise DataConfigError(f"data.mask_resize is for segment recipes (their masks), not {task!r}")
        if self.normalize not in NORMALIZE_MODES:
            raise DataConfigError(f"data.normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        if self.normalize == "window" and self.window is None:
            raise DataConfigError("data.normalize = 'window' needs data.window = [center, width] (HU)")
        if not 0 <= self.val_fraction < 1:
            raise DataConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        kind = self.degrade.get("kind")
        if kind is not None and kind not in DEGRADE_KINDS:
            raise DataConfigError(f"data.degrade.kind must be one of {DEGRADE_KINDS}, got {kind!r}")
        if kind == "low_dose" and self.window is None:
            raise DataConfigError("data.degrade.kind = 'low_dose' needs data.window = [center, width] in HU")
        if self.simulate and task != "segment":
            raise DataConfigError(f"data.simulate (nodules) makes segmentation masks: task must be 'segment', not {task!r}")
        if self.simulate and self.channels != 1:
            raise DataConfigError("data.simulate draws nodules on grey CT slices: data.channels must be 1")
        if self.simulate and self.slices > 1 and not self.simulate["slice_spacing_mm"]:
            raise DataConfigError("data.slices > 1 with simulated nodules needs data.simulate.slice_spacing_mm "
                                  "(the distance between neighbouring slices, mm) to draw them in 3-D")

    def _check_realizations(self) -> None:
        """degrade.realizations: an integer >= 0 (0: fresh noise every draw), K > 0 for low_dose only."""
        k = self.degrade.get("realizations", 0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise DataConfigError(f"data.degrade.realizations must be an integer >= 0 (0: fresh noise every "
                                  f"draw; K: a fixed pool of K noisy realisations per slice), got {k!r}")
        if k and self.degrade.get("kind") != "low_dose":
            raise DataConfigError(f"data.degrade.realizations is for kind = 'low_dose' only, "
                                  f"not {self.degrade.get('kind')!r}")
        if k:
            aug, none = AugmentConfig.from_dict(self.augment), AugmentConfig()
            bad = [key for key in _POOL_NO_AUGMENT if getattr(aug, key) != getattr(none, key)]
            if bad:
                raise DataConfigError(f"data.degrade.realizations = {k} keeps fixed noisy images, which "
                                      f"data.augment {bad} would interpolate (and blur the noise); drop them "
                                      "(flips and quarter turns are applied to the pool anyway)")

    @property
    def realizations(self) -> int:
        """K of a fixed pool of low-dose realisations per slice; 0: fresh noise every training draw."""
        return int(self.degrade.get("realizations", 0)) if self.degrade.get("kind") == "low_dose" else 0

    def with_task_defaults(self, task: str) -> DataConfig:
        """Fill the degradation a restoration task needs when the recipe gave none."""
        from dataclasses import replace

        if task == "super_resolve":
            deg = {"kind": "downsample", "factor": 2, "method": "bicubic", **self.degrade}
            if deg["kind"] != "downsample":
                raise DataConfigError("super_resolve needs data.degrade.kind = 'downsample'")
            f = int(deg["factor"])
            for key, size in (("input_size", self.input_size), ("patch_size", self.patch_size)):
                if size and (size[0] % f or size[1] % f):
                    raise DataConfigError(f"data.{key} {list(size)} must be a multiple of degrade.factor {f}")
            return replace(self, degrade=deg)
        if task == "denoise":
            default = {"kind": "low_dose", "photons": 1e4, "angles": 360} if self.window else \
                {"kind": "gaussian", "sigma": 0.05}
            deg = {**default, **self.degrade}
            if deg["kind"] == "downsample":
                raise DataConfigError("denoise needs data.degrade.kind = 'low_dose' or 'gaussian'")
            return replace(self, degrade=deg)
        return self

    @property
    def in_channels(self) -> int:
        """Channels of the model input: the slices of a 2.5-D stack, else `channels`."""
        return self.slices if self.slices > 1 else self.channels

    @property
    def scale(self) -> int:
        """Super-resolution factor (1 for other tasks)."""
        return int(self.degrade.get("factor", 1)) if self.degrade.get("kind") == "downsample" else 1

    @property
    def model_input_size(self) -> tuple[int, int] | None:
        """(H, W) the model sees: `input_size`, divided by the SR factor for super-resolution."""
        if self.input_size is None:
            return None
        return (self.input_size[0] // self.scale, self.input_size[1] // self.scale)

    @property
    def preprocess(self) -> dict[str, Any]:
        """What the runtime must do to one image at inference (`kdviewer.imaging.preprocess`)."""
        out = {"normalize": self.normalize, "window": list(self.window) if self.window else None,
               "resize": "bilinear", "channels": self.in_channels, "slices": self.slices}
        out.update(optional_steps({"grey": self.grey, "clahe": self.clahe}))
        return out
