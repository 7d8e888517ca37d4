"""Simulated lung nodules on a real chest CT (TCIA LIDC-IDRI-0001): lung mask, nodules, training data."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from kdviewer.distill.data import DataConfigError, build_datasets
from kdviewer.distill.recipe import load_recipe
from kdviewer.imaging.nodules import insert_nodules, lung_mask
from kdviewer.study.datasets import Sample, open_dataset

torch.set_num_threads(1)

RECIPE = Path(__file__).resolve().parents[1] / "resources" / "recipes" / "lung-nodule-ct.toml"
MID_SLICE = 45  # of 100, mid-chest: both lungs, heart, no real nodule


@pytest.fixture(scope="module")
def ct_slice(datasets_dir: Path) -> Sample:
    return open_dataset(datasets_dir / "tcia-lung-ct").items("all")[MID_SLICE].load()


@pytest.fixture(scope="module")
def lungs(ct_slice: Sample) -> np.ndarray:
    return lung_mask(ct_slice.image)


def outside_air(img_hu: np.ndarray) -> np.ndarray:
    """Air connected to the image border: around the body and the scanner's padding."""
    labels, _ = ndimage.label(img_hu < -400)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, border[border > 0])


def test_lung_mask_of_a_real_slice_is_two_lungs_without_outside_air(ct_slice: Sample, lungs: np.ndarray):
    assert lungs.dtype == bool and lungs.shape == ct_slice.image.shape
    assert 0.10 <= lungs.mean() <= 0.40
    assert not (lungs & outside_air(ct_slice.image)).any()
    labels, n = ndimage.label(lungs)
    assert n <= 2
    # one lung on each side of the midline, each at least a fifth of the pair
    half = lungs.shape[1] // 2
    assert lungs[:, :half].sum() > 0.2 * lungs.sum() and lungs[:, half:].sum() > 0.2 * lungs.sum()
    # the lungs are mostly air: the mask's median is lung parenchyma
    assert -950 < np.median(ct_slice.image[lungs]) < -700


def test_nodules_lie_in_the_lungs_with_plausible_hu_and_diameters(ct_slice: Sample, lungs: np.ndarray):
    img, spacing = ct_slice.image, ct_slice.spacing_mm
    pixel_mm2 = spacing[0] * spacing[1]
    medians: dict[str, list[float]] = {"solid": [], "ground_glass": []}
    drawn = 0
    for seed in range(6):
        out, mask, nodules = insert_nodules(img, lungs, np.random.default_rng(seed), n=(1, 3), diameter_mm=(4, 20),
                                            spacing_mm=spacing, kind=("solid", "ground_glass"), return_nodules=True)
        assert out.shape == img.shape and out.dtype == np.float32 and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1} and mask.any()
        assert not (mask.astype(bool) & ~lungs).any()
        # the image changes only around the nodules (10 mm), nowhere else
        near = ndimage.binary_dilation(mask.astype(bool), iterations=int(10 / spacing[0]))
        assert np.abs(out - img)[~near].max(initial=0) < 2.0
        labels, n = ndimage.label(mask)
        assert 1 <= len(nodules) == n <= 3
        for nodule in nodules:
            drawn += 1
            assert 4 <= nodule.diameter_mm <= 20
            k = labels[tuple(int(round(c)) for c in nodule.center)]
            if nodule.juxta_pleural and k == 0:
                continue  # a juxta-pleural centre may sit on the wall's partial-volume rim
            region = labels == k
            measured_mm = 2 * np.sqrt(region.sum() * pixel_mm2 / np.pi)
            assert 0.75 * nodule.diameter_mm <= measured_mm <= 1.2 * nodule.diameter_mm
            core = ndimage.binary_erosion(region)
            medians[nodule.kind].append(float(np.median(out[core if core.any() else region])))
    assert drawn >= 10 and medians["solid"] and medians["ground_glass"]
    assert all(-100 <= m <= 100 for m in medians["solid"]), medians["solid"]
    assert all(-700 <= m <= -250 for m in medians["ground_glass"]), medians["ground_glass"]


def test_nodules_repeat_with_the_seed_and_change_without_it(ct_slice: Sample, lungs: np.ndarray):
    def draw(seed: int):
        return insert_nodules(ct_slice.image, lungs, np.random.default_rng(seed), spacing_mm=ct_slice.spacing_mm)

    (a, ma), (b, mb), (c, mc) = draw(7), draw(7), draw(8)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    assert not np.array_equal(ma, mc)


def test_nodules_in_a_volume_span_slices(datasets_dir: Path):
    items = open_dataset(datasets_dir / "tcia-lung-ct").items("all")
    volume = np.stack([items[z].load().image for z in range(MID_SLICE - 4, MID_SLICE + 4)])
    lungs3d = lung_mask(volume)
    assert lungs3d.shape == volume.shape and 0.10 <= lungs3d.mean() <= 0.40
    out, mask = insert_nodules(volume, lungs3d, np.random.default_rng(1), n=2, diameter_mm=(10, 14),
                               spacing_mm=(0.703125, 0.703125, 2.5), kind="solid")
    assert not (mask.astype(bool) & ~lungs3d).any()
    labels, n = ndimage.label(mask)
    assert n >= 1
    slices_per_nodule = [len(np.unique(np.nonzero(labels == k)[0])) for k in range(1, n + 1)]
    assert max(slices_per_nodule) >= 3  # 10-14 mm across 2.5 mm slices


def recipe_data(**changes) -> dict:
    data = tomllib.loads(RECIPE.read_text(encoding="utf-8"))["data"]
    return {**data, **changes}


def test_simulated_nodule_datasets_shapes_split_and_fixed_validation():
    data = recipe_data(input_size=[128, 128], patch_size=[64, 64], max_items=4, slices=1)
    train, val, meta = build_datasets(data, "segment", RECIPE.parent)
    assert meta["class_names"] == ["background", "nodule"] and meta["num_classes"] == 2
    assert meta["layout"] == "plain_images" and "simulated nodules" in meta["dataset_name"]
    assert meta["simulate"]["per_image"] == [1, 3] and meta["simulation"].startswith("simulated nodules")
    assert meta["spacing_mm"] == pytest.approx([0.703125, 0.703125])
    assert meta["split"].endswith("block of 10 slices, seed 0")
    # held-out slice blocks never in training; the real nodule's slices in neither split
    val_blocks = {it.slice_index // 10 for it in val.items}
    assert val_blocks and not val_blocks & {it.slice_index // 10 for it in train.items}
    assert not any(52 <= it.slice_index <= 62 for it in train.items + val.items)

    sample = train[0]
    assert sample["image"].shape == (1, 64, 64) and sample["target"].shape == (64, 64)
    assert sample["target"].dtype == torch.int64 and set(sample["target"].unique().tolist()) <= {0, 1}
    v = val[0]
    assert v["image"].shape == (1, 128, 128) and v["target"].shape == (128, 128)
    assert 0 <= float(v["image"].min()) and float(v["image"].max()) <= 1

    # validation: the same nodules in every call and every epoch
    targets = [val[i]["target"] for i in range(len(val))]
    assert any(t.any() for t in targets)
    again = build_datasets(data, "segment", RECIPE.parent)[1]
    again.set_epoch(3)
    for i, t in enumerate(targets):
        assert torch.equal(t, again[i]["target"]) and torch.equal(val[i]["image"], again[i]["image"])
    # training: fresh nodules each epoch, the same ones again for the same epoch
    whole = build_datasets({**data, "patch_size": None, "augment": {}}, "segment", RECIPE.parent)[0]
    first = [whole[i]["target"] for i in range(len(whole))]
    whole.set_epoch(1)
    assert any(not torch.equal(t, whole[i]["target"]) for i, t in enumerate(first))
    whole.set_epoch(0)
    assert all(torch.equal(t, whole[i]["target"]) for i, t in enumerate(first))


def test_2_5d_stacks_get_nodules_drawn_across_the_slices():
    sim = {**recipe_data()["simulate"], "slice_spacing_mm": 2.5, "empty_fraction": 0.0}  # whatever the recipe says
    data = recipe_data(input_size=[128, 128], patch_size=[64, 64], max_items=3, slices=3, simulate=sim)
    train, val, meta = build_datasets(data, "segment", RECIPE.parent)
    assert meta["in_channels"] == 3
    assert train[0]["image"].shape == (3, 64, 64) and train[0]["target"].shape == (64, 64)
    with_nodules = [val[i] for i in range(len(val)) if val[i]["target"].any()]
    assert with_nodules
    for v in with_nodules:
        inside = v["target"].bool()
        # the nodule is in the centre slice, and (drawn in 3-D) at least partly in a neighbour too
        assert float(v["image"][1][inside].mean()) > 0.45
        assert float(v["image"][[0, 2]][:, inside].mean()) > float(v["image"][[0, 2]][:, ~inside].mean())


def test_the_recipe_loads_and_its_data_builds():
    recipe = load_recipe(RECIPE)
    assert recipe.task == "segment" and recipe.data.simulate["kind"] == "nodules"
    assert recipe.teacher_net.arch == "unet" and recipe.student_net.arch == "unet_small"
    train, val, meta = build_datasets({**recipe.data.table(), "max_items": 2}, recipe.task, recipe.recipe_dir)
    assert meta["input_size"] == [512, 512] and meta["preprocess"]["window"] == [-600.0, 1500.0]
    channels = recipe.data.slices
    assert meta["in_channels"] == channels and meta["preprocess"]["slices"] == channels
    assert train[0]["image"].shape == (channels, 256, 256) and val[0]["target"].shape == (512, 512)


@pytest.mark.parametrize("changes, task, match", [
    ({"simulate": {"kind": "tumours"}}, "segment", "simulate.kind"),
    ({"simulate": {"kind": "nodules", "diameter": [4, 20]}}, "segment", "diameter"),
    ({"simulate": {"kind": "nodules", "kinds": ["calcified"]}}, "segment", "simulate.kinds"),
    ({"simulate": {"kind": "nodules", "empty_fraction": 1.5}}, "segment", "empty_fraction"),
    ({}, "classify", "task must be 'segment'"),
    ({"slices": 3, "simulate": {"kind": "nodules"}}, "segment", "slice_spacing_mm"),
    ({"channels": 3}, "segment", "channels"),
])
def test_bad_simulate_tables_name_the_key(changes: dict, task: str, match: str):
    with pytest.raises(DataConfigError, match=match):
        build_datasets(recipe_data(**changes), task, RECIPE.parent)
