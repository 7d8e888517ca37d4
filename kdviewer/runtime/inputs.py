"""The images a task receives: a 2-D array, or a `Volume` and a slice, turned into model inputs.

Every model input goes through `kdviewer.imaging.preprocess.preprocess_image`, the function the
trainer uses, with the card's ``input.preprocess`` dict: training and inference cannot differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdviewer.imaging.preprocess import preprocess_image
from kdviewer.runtime.errors import ModelInputError
from kdviewer.runtime.registry import Model
from kdviewer.study.volume import Volume


def slice_stack(array: np.ndarray, z: int, n: int) -> np.ndarray:
    """(n, y, x) slices centred on `z` of a (z, y, x) array (odd n; edges repeat), as the trainer stacks them."""
    half = n // 2
    idx = np.clip(np.arange(z - half, z + half + 1), 0, array.shape[0] - 1)
    return array[idx]


def model_image(model: Model, image: np.ndarray | Volume, slice_index: int | None = None) -> np.ndarray:
    """The raw image one model input is made from.

    A 2-D array (H, W) / (H, W, 3) is taken as is; for a `Volume`, slice `slice_index` (default: the
    middle one), with its neighbours as (S, H, W) when the card asks for S > 1 slices. Stored units (HU).
    """
    if isinstance(image, Volume):
        z = image.shape[0] // 2 if slice_index is None else int(slice_index)
        if not 0 <= z < image.shape[0]:
            raise ModelInputError(image.info.source or None, f"slice {z} is outside 0..{image.shape[0] - 1}")
        if model.slices > 1 and not image.is_color:
            return slice_stack(image.array, z, model.slices)
        return image.array[z]
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.size == 0 or arr.ndim not in (2, 3):
        raise ModelInputError(None, f"expected an (H, W) or (H, W, 3) image, got shape {arr.shape}")
    if model.slices > 1 and arr.ndim == 2:
        arr = np.repeat(arr[None], model.slices, axis=0)  # a lone 2-D image stands for its own neighbours
    return arr


def model_input(model: Model, img: np.ndarray, size_hw: Sequence[int] | None) -> np.ndarray:
    """(C, H, W) float32 from `model_image`'s output, resized to `size_hw` (None: kept) and normalised."""
    try:
        x = preprocess_image(img, model.preprocess, size_hw)
    except ValueError as exc:
        raise ModelInputError(model.onnx_path, f"image of shape {np.shape(img)} does not fit: {exc}") from exc
    if x.shape[0] != model.channels:
        raise ModelInputError(model.onnx_path, f"preprocessing gave {x.shape[0]} channels, the model takes "
                              f"{model.channels}")
    return x
