"""lung_gate_mm post-processing: the lung region of a CT slice (imaging.nodules.lung_region), the gate in
postprocess_labels (2-D and 3-D), its smallest lung section (lung_gate_min_cm2), and the recipe's check of
the keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdviewer.distill.recipe import RecipeError, load_recipe
from kdviewer.imaging.components import components_touching
from kdviewer.imaging.nodules import lung_region
from kdviewer.runtime.segment import postprocess_labels, postprocess_limits

RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"


def chest_slice() -> np.ndarray:
    """(128, 128) HU at 1 mm: air outside (-1000), a body of soft tissue (40), two lungs (-850, 30 x 40 mm
    = 12 cm² each), a trachea (-1000, 3 x 3 mm), and a solid nodule (40 HU) on the right lung's outer wall:
    it cuts a 6 mm deep, 8 mm wide notch into the lung."""
    hu = np.full((128, 128), -1000.0, np.float32)
    hu[14:114, 10:118] = 40.0                 # body
    hu[30:70, 20:50] = -850.0                 # right lung (image left)
    hu[30:70, 78:108] = -850.0                # left lung
    hu[20:23, 62:65] = -1000.0                # trachea: inside the body, 9 mm²
    hu[46:54, 20:26] = 40.0                   # juxta-pleural nodule, on the wall
    return hu


def test_lung_region_keeps_both_lungs_drops_the_trachea_and_gas_and_fills_a_pleural_notch() -> None:
    hu = chest_slice()
    region = lung_region(hu, (1.0, 1.0), closing_mm=0.0)
    assert region[50, 35] and region[50, 90]                # both lungs
    assert not region[21, 63]                              # trachea: below 10 cm²
    assert not region[5, 5] and not region[80, 60]         # outside air, soft tissue
    assert not region[50, 23]                              # the nodule's notch, without a closing
    closed = lung_region(hu, (1.0, 1.0), closing_mm=6.0)
    assert closed[50, 25]                                   # the notch's inner part is filled by the closing
    assert not closed[80, 60] and not closed[21, 63]
    # the same in mm at another pixel size: 2 mm pixels make each lung 4x fewer pixels, still 12 cm²
    coarse = lung_region(hu[::2, ::2], (2.0, 2.0), closing_mm=0.0)
    assert coarse[25, 17] and coarse[25, 45]
    # the two largest air components stay whatever their size (small lung bases), a third only from min_area_cm2
    gas = hu.copy()
    gas[90:100, 40:60] = -1000.0                           # 2 cm² of bowel gas: third largest
    assert not lung_region(gas, (1.0, 1.0), closing_mm=0.0)[95, 50]
    assert lung_region(gas, (1.0, 1.0), closing_mm=0.0, min_area_cm2=1.5)[95, 50]
    tiny = lung_region(gas, (1.0, 1.0), closing_mm=0.0, min_area_cm2=50.0)
    assert tiny[50, 35] and tiny[50, 90] and not tiny[95, 50]
    stack = lung_region(np.stack([hu, np.full_like(hu, 40.0)]), (1.0, 1.0), closing_mm=6.0)
    assert np.array_equal(stack[0], closed) and not stack[1].any()


def test_components_touching_keeps_whole_components() -> None:
    mask = np.zeros((10, 10), bool)
    mask[1:4, 1:6] = True      # overlaps the region in one pixel: kept whole
    mask[7:9, 7:9] = True      # does not: dropped
    region = np.zeros_like(mask)
    region[3, 5] = True
    out = components_touching(mask, region)
    assert out[1:4, 1:6].all() and not out[7:9, 7:9].any()


def test_gate_keeps_findings_in_and_on_the_lungs_and_drops_the_rest() -> None:
    hu = chest_slice()
    labels = np.zeros(hu.shape, np.uint8)
    labels[40:44, 35:39] = 1        # inside the right lung
    labels[46:54, 20:26] = 1        # the juxta-pleural nodule itself (none of it is air)
    labels[85:90, 60:65] = 1        # in the soft tissue below the lungs
    labels[20:24, 61:66] = 1        # on the trachea
    out = postprocess_labels(labels.copy(), {"lung_gate_mm": 6.0}, 2, spacing=(1.0, 1.0), image=hu)
    assert out[40:44, 35:39].all() and out[46:54, 20:26].all()
    assert not out[85:90, 60:65].any() and not out[20:24, 61:66].any()
    # without the closing, the nodule on the wall would be lost: that is what the radius is for
    bare = postprocess_labels(labels.copy(), {"lung_gate_mm": 0.5}, 2, spacing=(1.0, 1.0), image=hu)
    assert not bare[46:54, 20:26].any() and bare[40:44, 35:39].all()
    # off (absent or 0): nothing changes, and no image is needed
    assert np.array_equal(postprocess_labels(labels.copy(), {"lung_gate_mm": 0}, 2), labels)


def test_gate_on_a_stack_keeps_a_3d_component_that_touches_the_lungs_in_any_slice() -> None:
    hu = np.stack([chest_slice(), np.full((128, 128), 40.0, np.float32)])   # slice 1: below the lungs
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 40:44, 35:39] = 1        # in the lung on slice 0, continuing into slice 1
    labels[1, 85:90, 60:65] = 1        # only below the lungs
    out = postprocess_labels(labels.copy(), {"lung_gate_mm": 6.0}, 2, spacing=(1.0, 1.0, 2.5), image=hu)
    assert out[:, 40:44, 35:39].all() and not out[1, 85:90, 60:65].any()


def abdomen_slice() -> np.ndarray:
    """(128, 128) HU at 1 mm below the lung bases: a body of soft tissue and two pockets of bowel gas,
    2 x 2 cm (4 cm²) and 1 x 1 cm (1 cm²): the two largest internal air sections, and no lung."""
    hu = np.full((128, 128), -1000.0, np.float32)
    hu[14:114, 10:118] = 40.0
    hu[40:60, 30:50] = -1000.0
    hu[70:80, 80:90] = -1000.0
    return hu


def test_a_slice_with_too_little_lung_has_no_region_and_its_findings_go() -> None:
    gas = abdomen_slice()
    assert lung_region(gas, (1.0, 1.0), 0.0)[50, 40]                        # the gas passes as "lung"
    assert not lung_region(gas, (1.0, 1.0), 0.0, min_lung_cm2=5.1).any()   # 4 + 1 = 5 cm² of air: under 5.1
    assert lung_region(gas, (1.0, 1.0), 0.0, min_lung_cm2=4.9).any()       # and not under 4.9
    # in mm: the same slice at 2 mm pixels has a quarter of the pixels and the same 5 cm²
    assert lung_region(gas[::2, ::2], (2.0, 2.0), 0.0, min_lung_cm2=4.9).any()
    assert not lung_region(gas[::2, ::2], (2.0, 2.0), 0.0, min_lung_cm2=5.1).any()
    # the chest slice (two lungs of 12 cm², less the nodule's notch) keeps its region with a 6 cm² floor
    chest = chest_slice()
    assert np.array_equal(lung_region(chest, (1.0, 1.0), 6.0, min_lung_cm2=6.0), lung_region(chest, (1.0, 1.0), 6.0))
    # a stack: the floor applies per slice
    both = lung_region(np.stack([chest, gas]), (1.0, 1.0), 6.0, min_lung_cm2=6.0)
    assert both[0].any() and not both[1].any()
    # in postprocess_labels: a finding in the gas goes with the floor, stays without it; the lung's stays
    labels = np.zeros(gas.shape, np.uint8)
    labels[48:52, 38:42] = 1
    pp = {"lung_gate_mm": 6.0, "lung_gate_min_cm2": 6.0}
    assert not postprocess_labels(labels.copy(), pp, 2, spacing=(1.0, 1.0), image=gas).any()
    assert postprocess_labels(labels.copy(), {"lung_gate_mm": 6.0}, 2, spacing=(1.0, 1.0), image=gas).any()
    in_lung = np.zeros(chest.shape, np.uint8)
    in_lung[40:44, 35:39] = 1
    assert postprocess_labels(in_lung.copy(), pp, 2, spacing=(1.0, 1.0), image=chest)[40:44, 35:39].all()


def test_gate_without_the_image_is_an_error_not_a_silent_no_op() -> None:
    with pytest.raises(ValueError, match="lung_gate_mm needs the input image"):
        postprocess_labels(np.ones((8, 8), np.uint8), {"lung_gate_mm": 6.0}, 2, spacing=(1.0, 1.0))


@pytest.mark.parametrize(("value", "words"), [("{lung_gate_mm = -1}", "at least 0"),
                                              ("{lung_gate_mm = 'six'}", "should be a number"),
                                              ("{lung_gate = 6}", "did you mean 'export.postprocess.lung_gate_mm'"),
                                              ("{lung_gate_mm = 6, lung_gate_min_cm2 = -1}", "at least 0 cm²"),
                                              ("{lung_gate_min_cm2 = 5}", "needs a lung gate"),
                                              ("{lung_gate_min = 5}", "did you mean")])
def test_recipe_checks_the_key(value: str, words: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(RECIPES / "lung-nodule-ct.toml", [f"export.postprocess={value}"])
    assert words in str(info.value)
    recipe = load_recipe(RECIPES / "lung-nodule-ct.toml",
                         ["export.postprocess={lung_gate_mm = 6.0, lung_gate_min_cm2 = 5.0}"])
    assert recipe.export.postprocess == {"lung_gate_mm": 6.0, "lung_gate_min_cm2": 5.0}


def test_the_card_says_what_the_gate_hides() -> None:
    assert postprocess_limits({}) == [] and postprocess_limits({"fov_gate": True, "lung_gate_mm": 0}) == []
    (gate,) = postprocess_limits({"lung_gate_mm": 9.0})
    assert "touch the lungs" in gate and "9 mm" in gate and "cm²" not in gate
    (floor,) = postprocess_limits({"lung_gate_mm": 9.0, "lung_gate_min_cm2": 5.0})
    assert floor.startswith(gate) and "less than 5 cm² of lung gets none" in floor
    recipe = load_recipe(RECIPES / "lung-nodule-ct.toml")
    assert recipe.export.postprocess == {"lung_gate_mm": 9.0, "lung_gate_min_cm2": 5.0}
