"""The field-of-view gate of fundus segmenters: the disc found in the photograph, the labels outside it cleared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdviewer.distill.recipe import RecipeError, load_recipe
from kdviewer.imaging.components import field_of_view
from kdviewer.runtime.segment import postprocess_labels

RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"


def fundus_like() -> tuple[np.ndarray, np.ndarray]:
    """(64, 64, 3) uint8: a bright disc (radius 25) with a dark vessel across it on a near-black surround with a
    small bright speck in a corner; and the disc as a mask."""
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 <= 25 ** 2
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0] = np.where(disc, 180, 4)
    img[..., 1] = np.where(disc, 90, 3)
    img[30:33, 10:54, :] = (20, 10, 5)  # a dark vessel: a hole in the bright area, to be filled
    img[1:3, 1:3, 0] = 200  # a speck outside the disc: not the largest component
    return img, disc


def test_field_of_view_is_the_bright_disc_with_its_holes_filled() -> None:
    img, disc = fundus_like()
    fov = field_of_view(img)
    np.testing.assert_array_equal(fov, disc)
    np.testing.assert_array_equal(field_of_view(img[..., 0]), disc)  # grey images: the level itself
    stack = field_of_view(np.stack([img, img[::-1]]))
    assert stack.shape == (2, 64, 64)
    np.testing.assert_array_equal(stack[1], disc[::-1])
    assert not field_of_view(np.zeros((8, 8), np.uint8)).any()
    with pytest.raises(ValueError):
        field_of_view(np.zeros(5))


def test_labels_outside_the_field_of_view_are_cleared() -> None:
    img, disc = fundus_like()
    labels = np.ones((64, 64), np.uint8)
    out = postprocess_labels(labels.copy(), {"argmax": True, "fov_gate": True}, 2, image=img)
    np.testing.assert_array_equal(out, disc.astype(np.uint8))
    untouched = postprocess_labels(labels.copy(), {"argmax": True}, 2, image=img)
    assert untouched.all()
    with pytest.raises(ValueError, match="fov_gate"):
        postprocess_labels(labels.copy(), {"fov_gate": True}, 2)


@pytest.mark.parametrize("name", ["21", "26", "40"])
def test_drive_photographs_give_their_own_fov_masks(datasets_dir: Path, name: str) -> None:
    folder = datasets_dir / "drive" / "training"
    photo = np.asarray(Image.open(folder / "images" / f"{name}_training.tif"))
    truth = np.asarray(Image.open(folder / "mask" / f"{name}_training_mask.gif")) > 0
    fov = field_of_view(photo)
    assert (fov & truth).sum() / (fov | truth).sum() > 0.98


def test_the_recipe_key_takes_true_or_false() -> None:
    load_recipe(RECIPES / "retina-vessels.toml", ["export.postprocess={fov_gate = false}"])
    with pytest.raises(RecipeError, match="fov_gate"):
        load_recipe(RECIPES / "retina-vessels.toml", ["export.postprocess={fov_gate = 1}"])
