"""min_diameter_mm post-processing: in postprocess_labels (2-D images, volumes), in the recipe's
[export].postprocess, and on the exported card of a segmentation model."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from kdviewer.distill.recipe import RecipeError, dump_recipe, load_recipe, recipe_from_dict
from kdviewer.runtime.segment import postprocess_labels

RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"
TINY_SEGMENT = ["data.max_items=4", "data.input_size=[64, 64]", "data.patch_size=[32, 32]", "teacher_net.base=4",
                "teacher_net.depth=2", "student_net.base=4", "student_net.depth=2", "train.batch_size=2",
                "train.max_steps=1"]


def stack_with_a_speck() -> np.ndarray:
    """(3, 16, 16) labels: a one-slice 3x3 speck of label 1, a 3x6x6 block of label 1, a 3x3x3 cube of 2."""
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[1, 1:4, 1:4] = 1       # 9 voxels
    labels[:, 8:14, 8:14] = 1     # 108 voxels
    labels[:, 1:4, 10:13] = 2     # 27 voxels
    return labels


def test_volume_uses_the_sphere_and_a_2d_map_the_disc() -> None:
    pp = {"argmax": True, "min_diameter_mm": 3.0}  # sphere 14.1 mm³, disc 7.1 mm²
    out = postprocess_labels(stack_with_a_speck(), pp, 3, spacing=(1.0, 1.0, 1.0))
    assert not out[1, 1:4, 1:4].any()             # 9 mm³ < 14.1 mm³
    assert (out[:, 8:14, 8:14] == 1).all() and (out[:, 1:4, 10:13] == 2).all()
    two_d = stack_with_a_speck()[1]
    out2 = postprocess_labels(two_d.copy(), pp, 3, spacing=(1.0, 1.0))
    assert np.array_equal(out2, two_d)            # 9 mm² >= 7.1 mm²: kept
    assert not postprocess_labels(two_d.copy(), {"min_diameter_mm": 4.0}, 3)[1:4, 1:4].any()  # < 12.6 mm²
    one_slice = postprocess_labels(two_d[None].copy(), pp, 3, spacing=(1.0, 1.0, 1.0))
    assert np.array_equal(one_slice[0], two_d)    # a single slice is an image: the disc rule


def test_anisotropic_volume_spacing_and_no_op_without_the_key() -> None:
    # 0.5 x 0.5 x 2 mm voxels: the cube of 2 is 13.5 mm³, the block of 1 54 mm³; sphere of 3.5 mm: 22.4 mm³
    out = postprocess_labels(stack_with_a_speck(), {"min_diameter_mm": 3.5}, 3, spacing=(0.5, 0.5, 2.0))
    assert not (out == 2).any() and out[1, 1:4, 1:4].sum() == 0 and (out[:, 8:14, 8:14] == 1).all()
    labels = stack_with_a_speck()
    for pp in ({}, {"argmax": True}, {"min_diameter_mm": 0}):
        assert np.array_equal(postprocess_labels(labels.copy(), pp, 3), labels)
    with pytest.raises(ValueError, match="spacing of 3 values"):
        postprocess_labels(labels.copy(), {"min_diameter_mm": 3.0}, 3, spacing=(1.0, 1.0))


def test_small_components_go_before_hole_filling_and_largest_component() -> None:
    ring = np.zeros((12, 12), np.uint8)
    ring[1:4, 1:4] = 1
    ring[2, 2] = 0                 # 8 px with a hole; filled it would be 9 px
    ring[6:11, 6:11] = 1           # 25 px
    pp = {"min_diameter_mm": 3.3, "fill_holes": True, "largest_component": True}  # disc: 8.55 mm²
    out = postprocess_labels(ring.copy(), pp, 2)
    assert not out[1:4, 1:4].any() and out[6:11, 6:11].all()
    speck_only = np.zeros((8, 8), np.uint8)
    speck_only[2:4, 2:4] = 1
    assert not postprocess_labels(speck_only, pp, 2).any()  # nothing left: largest of nothing is nothing


def test_recipe_accepts_the_postprocess_table_of_a_segment_recipe(tmp_path: Path) -> None:
    text = (RECIPES / "liver-ct.toml").read_text(encoding="utf-8")  # a segment recipe without a postprocess table
    path = tmp_path / "seg.toml"
    path.write_text(text.replace("[export]\n", "[export]\npostprocess = {threshold = 0.6, min_diameter_mm = 4}\n"),
                    encoding="utf-8")
    recipe = load_recipe(path)
    assert recipe.export.postprocess == {"threshold": 0.6, "min_diameter_mm": 4}
    again = recipe_from_dict(tomllib.loads(dump_recipe(recipe)), recipe.source)
    assert again == recipe
    over = load_recipe(RECIPES / "retina-vessels.toml",
                       ["export.postprocess={min_diameter_mm = 2.5, largest_component = true, fill_holes = false}"])
    assert over.export.postprocess["min_diameter_mm"] == 2.5
    assert load_recipe(RECIPES / "liver-ct.toml").export.postprocess == {}
    assert load_recipe(RECIPES / "retina-vessels.toml").export.postprocess == {"fov_gate": True, "flip_average": "hv"}


@pytest.mark.parametrize(("recipe", "value", "key", "words"), [
    ("retina-vessels", "{min_diameter = 4}", "export.postprocess.min_diameter", "did you mean 'export.postprocess."
     "min_diameter_mm'"),
    ("retina-vessels", "{argmax = true}", "export.postprocess.argmax", "unknown key"),
    ("retina-vessels", "{threshold = 1.0}", "export.postprocess.threshold", "between 0 and 1"),
    ("retina-vessels", "{threshold = 0}", "export.postprocess.threshold", "between 0 and 1"),
    ("retina-vessels", "{threshold = true}", "export.postprocess.threshold", "should be a number"),
    ("retina-vessels", "{min_diameter_mm = -1}", "export.postprocess.min_diameter_mm", "at least 0"),
    ("retina-vessels", "{min_diameter_mm = '4'}", "export.postprocess.min_diameter_mm", "should be a number"),
    ("retina-vessels", "{min_diameter_mm = nan}", "export.postprocess.min_diameter_mm", "should be a number"),
    ("retina-vessels", "{fill_holes = 1}", "export.postprocess.fill_holes", "true or false"),
    ("retina-vessels", "4", "export.postprocess", "should be a table"),
    ("pneumonia-cxr", "{min_diameter_mm = 4}", "export.postprocess", "only applies to task 'segment'"),
])
def test_recipe_refuses_bad_postprocess(recipe: str, value: str, key: str, words: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(RECIPES / f"{recipe}.toml", [f"export.postprocess={value}"])
    assert info.value.key == key and words in str(info.value) and key in str(info.value)


def test_exported_card_carries_the_recipe_postprocess(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from kdviewer.distill.export import export_run
    from kdviewer.distill.trainer import train_teacher
    from kdviewer.runtime import load_model

    torch.set_num_threads(1)
    recipe = load_recipe(RECIPES / "retina-vessels.toml",
                         [*TINY_SEGMENT, "export.postprocess={threshold = 0.6, min_diameter_mm = 4}"])
    run = train_teacher(recipe, tmp_path / "run", progress="none")
    card_path = next(run.glob("*-teacher.json"))
    card = json.loads(card_path.read_text(encoding="utf-8"))
    assert card["postprocess"] == {"threshold": 0.6, "min_diameter_mm": 4}  # a threshold replaces argmax
    assert load_model(card_path).postprocess["min_diameter_mm"] == 4
    # without a threshold the card keeps argmax (re-export the same run with another [export].postprocess)
    stored = tomllib.loads((run / "recipe.toml").read_text(encoding="utf-8"))
    stored["export"]["postprocess"] = {"min_diameter_mm": 2.5, "fill_holes": True}
    (run / "recipe.toml").write_text(tomli_w.dumps(stored), encoding="utf-8")
    _, card_path = export_run(run)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    assert card["postprocess"] == {"argmax": True, "min_diameter_mm": 2.5, "fill_holes": True}
