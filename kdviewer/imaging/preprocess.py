"""The one preprocessing of a 2-D model input, shared by training (`distill.data`) and inference (runtime).

A model card's ``input.preprocess`` dict says what to do; `preprocess_image` does exactly that, so training
and inference cannot differ:

    {"normalize": "minmax" | "window" | "zscore" | "none", "window": [center, width] or None,
     "resize": "bilinear" | "nearest", "channels": 1 | 3, "slices": 1 | 3,
     "grey": "luma" | "green" (absent: luma), "clahe": clip limit in (0, 1] (absent or 0: off)}

Order: channels (colour → grey by luminance or, with ``grey = "green"``, by the green channel, where retinal
vessels have the most contrast; grey → repeated RGB), CLAHE when asked (each channel scaled to [0, 1] by its
min and max, then `skimage.exposure.equalize_adapthist` with tiles of 1/8 of the image), resize to the input
size, normalise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from kdviewer.imaging.normalize import minmax, window_normalize, zscore
from kdviewer.imaging.resample import resize_2d

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"
_ORDERS = {"bilinear": 1, "nearest": 0, "bicubic": 3}
NORMALIZE_MODES = ("minmax", "window", "zscore", "none")
GREY_MODES = ("luma", "green")
OPTIONAL_DEFAULTS: dict[str, str | float] = {"grey": "luma", "clahe": 0.0}  # card keys written only when not these


def optional_steps(preprocess: Mapping[str, object]) -> dict[str, str | float]:
    """The optional steps of a preprocess dict (`grey`, `clahe`) that differ from their defaults, typed as a card
    writes them: what a card carries, what a recipe's data makes, and what two of them must agree on."""
    out: dict[str, str | float] = {}
    for key, default in OPTIONAL_DEFAULTS.items():
        value = type(default)(preprocess.get(key) or default)
        if value != default:
            out[key] = value
    return out


def to_channels(img: np.ndarray, channels: int, slices: int = 1, grey: str = "luma") -> np.ndarray:
    """(C, H, W) float32 from an (H, W), (H, W, 3) colour or, when `slices` > 1, an (S, H, W) slice stack.

    Colour to one channel by luminance (`grey` "luma") or its green channel ("green"); grey to three
    channels by repetition; a slice stack keeps its S slices as channels (then `channels` must equal `slices`).
    """
    if grey not in GREY_MODES:
        raise ValueError(f"unknown grey mode {grey!r}; expected one of {GREY_MODES}")
    x = np.asarray(img, dtype=np.float32)
    if slices > 1:
        if x.ndim != 3 or x.shape[0] != slices:
            raise ValueError(f"expected a stack of {slices} slices (S, H, W), got {x.shape}")
        if channels != slices:
            raise ValueError(f"a stack of {slices} slices gives {slices} channels, not {channels}")
        return x
    if x.ndim == 3 and x.shape[-1] in (3, 4):
        if channels == 1:
            x = x[..., 1] if grey == "green" else x[..., :3] @ _LUMA
        else:
            x = np.moveaxis(x[..., :3], -1, 0)
        return x[None] if x.ndim == 2 else x
    if x.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got {x.shape}")
    return np.repeat(x[None], channels, axis=0)


def normalize_image(x: np.ndarray, mode: str, window: Sequence[float] | None = None) -> np.ndarray:
    """Normalise a (C, H, W) float32 array as a whole: minmax → [0, 1], window (HU) → [0, 1] clipped,
    zscore → mean 0 / std 1, none → unchanged."""
    if mode == "window":
        if window is None:
            raise ValueError("normalize 'window' needs a window [center, width]")
        return window_normalize(x, float(window[0]), float(window[1]))
    if mode == "minmax":
        return minmax(x)
    if mode == "zscore":
        return zscore(x)
    if mode in ("none", None):
        return np.asarray(x, dtype=np.float32)
    raise ValueError(f"unknown normalize mode {mode!r}; expected one of {NORMALIZE_MODES}")


def clahe(x: np.ndarray, clip: float) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of each channel of a (C, H, W) array, in [0, 1].

    Each channel is first scaled to [0, 1] by its own min and max (a constant channel gives zeros); tiles
    are 1/8 of the image each way (`skimage.exposure.equalize_adapthist`), `clip` its clip limit in (0, 1].
    """
    if not 0 < clip <= 1:
        raise ValueError(f"CLAHE clip limit must be in (0, 1], got {clip}")
    from skimage.exposure import equalize_adapthist

    out = np.empty(x.shape, dtype=np.float32)
    for c, channel in enumerate(np.asarray(x, dtype=np.float32)):
        scaled = minmax(channel)
        out[c] = equalize_adapthist(scaled, clip_limit=float(clip)) if scaled.any() else scaled
    return out


def resize_channels(x: np.ndarray, size_hw: Sequence[int] | None, method: str = "bilinear") -> np.ndarray:
    """Resize every channel of a (C, H, W) array to `size_hw` (None: unchanged)."""
    if size_hw is None or tuple(x.shape[1:]) == tuple(int(s) for s in size_hw):
        return x
    return np.moveaxis(resize_2d(np.moveaxis(x, 0, -1), tuple(size_hw), order=_ORDERS[method]), -1, 0)


def preprocess_image(img: np.ndarray, preprocess: Mapping, input_size: Sequence[int] | None) -> np.ndarray:
    """The model input (C, H, W) float32 for one image, as the card's `preprocess` dict says.

    img: (H, W) grey, (H, W, 3) colour, or (S, H, W) neighbouring slices when ``preprocess["slices"]`` > 1;
    in its stored units (HU for CT). input_size: (H, W) of the model input, or None to keep the size.
    """
    slices = int(preprocess.get("slices", 1) or 1)
    channels = int(preprocess.get("channels", 1) or 1)
    x = to_channels(img, channels if slices == 1 else slices, slices, str(preprocess.get("grey") or OPTIONAL_DEFAULTS["grey"]))
    if preprocess.get("clahe"):
        x = clahe(x, float(preprocess["clahe"]))
    x = resize_channels(x, input_size, preprocess.get("resize", "bilinear") or "bilinear")
    return normalize_image(x, preprocess.get("normalize", "minmax") or "none", preprocess.get("window"))
