"""`kdviewer evaluate` of a model trained on simulated nodules ([data].simulate = {kind = "nodules"}): the
runtime rebuilds training's validation cases (same slices, same nodules, same masks) and scores them with the
normal segmentation metrics through the normal predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from kdviewer.cli import main
from kdviewer.distill.data import build_datasets
from kdviewer.distill.data_config import NODULE_DEFAULTS, DataConfig
from kdviewer.imaging.nodule_cases import SIMULATION_DEFAULTS, simulation_settings
from kdviewer.modelcard import load_card
from kdviewer.runtime import load_model
from kdviewer.runtime.evaluate import dataset_items, evaluate_model
from kdviewer.runtime.inputs import model_input
from kdviewer.study.datasets import open_dataset

torch.set_num_threads(1)
RECIPE = Path(__file__).resolve().parents[1] / "resources" / "recipes" / "lung-nodule-ct.toml"
N_SLICES, SIZE = 24, 96

# The lung recipe, shrunk: a 24-slice 96x96 phantom, blocks of 4 slices, slices 8-9 left out, at most 3 items
# per split (a seeded subset: the validation items are not the first of their block), tiny nets, 2 steps.
QUICK = ["data.input_size=[96, 96]", "data.patch_size=[64, 64]", "data.block_size=4", "data.max_items=3",
         "data.simulate.exclude_slices=[8, 9]", "teacher_net.base=4", "teacher_net.depth=2",
         "train.batch_size=2"]


def chest_phantom(folder: Path) -> Path:
    """A NIfTI chest CT in HU (z, y, x) = (24, 96, 96), 2 x 2 x 2.5 mm: air, a soft-tissue body, two lungs
    with a few vessels running through the slices, CT-like noise. Read as plain images (no masks)."""
    rng = np.random.default_rng(7)
    z, y, x = np.mgrid[0:N_SLICES, 0:SIZE, 0:SIZE].astype(np.float32)
    vol = np.full(z.shape, -1000.0, np.float32)
    vol[((y - 48) / 40) ** 2 + ((x - 48) / 45) ** 2 <= 1] = 40.0
    for cx in (26, 70):
        vol[((y - 48) / 30) ** 2 + ((x - cx) / 16) ** 2 <= 1] = -850.0
    for cy, cx, dy in ((40, 24, 0.3), (55, 72, -0.4), (35, 66, 0.2)):  # vessels, slanted through z
        vol[(y - cy - dy * z) ** 2 + (x - cx) ** 2 <= 4] = 30.0
    vol += rng.normal(0, 15, vol.shape).astype(np.float32)
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((2.0, 2.0, 2.5))
    folder.mkdir(parents=True)
    sitk.WriteImage(img, str(folder / "chest.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(phantom data folder, the tiny teacher's .onnx, the card recipe's [data] table)."""
    root = tmp_path_factory.mktemp("nodules")
    data = chest_phantom(root / "chest")
    out = root / "run"
    args = ["train", str(RECIPE), "--max-steps", "2", "--out", str(out), "--progress", "json",
            "--set", f"data.path={data}"]
    assert main(args + [a for item in QUICK for a in ("--set", item)]) == 0
    onnx = next(out.glob("*-teacher.onnx"))
    import tomllib

    table = tomllib.loads(load_card(onnx.with_suffix(".json")).training["recipe"])["data"]
    return data, onnx, table


def test_settings_are_data_configs():
    assert SIMULATION_DEFAULTS == NODULE_DEFAULTS
    import tomllib

    for table in (tomllib.loads(RECIPE.read_text())["data"]["simulate"], {"kind": "nodules"},
                  {"kind": "nodules", "per_image": 2, "diameter_mm": [5, 9], "kinds": "solid",
                   "exclude_slices": [[1, 2], [5, 6]], "slice_spacing_mm": 3, "min_lung_cm2": 4}):
        cfg = DataConfig.from_dict({"path": "x", "simulate": table}, "segment", None)
        assert simulation_settings(table) == cfg.simulate


def test_runtime_cases_are_trainings_validation_samples(trained):
    data, onnx, table = trained
    model = load_model(onnx.with_suffix(".json"))
    _train_ds, val_ds, _meta = build_datasets(table, "segment", None)
    sel = dataset_items(data, "segment", "val", model=model)
    assert [it.key for it in sel.items] == [it.key for it in val_ds.items] and len(sel.items) == 3
    assert not any(int(it.key.rsplit("/", 1)[1]) in (8, 9) for it in sel.items)
    assert "simulated nodules" in sel.simulation and "data.seed 0" in sel.simulation
    with_nodules = 0
    for k, item in enumerate(sel.items):
        want = val_ds[k]
        sample = item.load()
        stack = item.load_slices(model.slices)
        assert stack.shape == (3, SIZE, SIZE) and np.array_equal(stack[1], sample.image)
        # exactly the arrays training's validation set feeds the model: input after the card's preprocessing,
        # and the mask
        assert np.array_equal(model_input(model, stack, (SIZE, SIZE)), want["image"].numpy())
        assert np.array_equal(sample.mask.astype(np.int64), want["target"].numpy())
        with_nodules += int(sample.mask.any())
        # the nodules are drawn in 3-D: the neighbours differ from the raw slices too
        if sample.mask.any():
            raw = next(it for it in open_dataset(data).items("all") if it.key == item.key)
            assert not np.array_equal(stack[0], raw.load_slices(3)[0]) or \
                not np.array_equal(stack[2], raw.load_slices(3)[2])
    assert with_nodules >= 1
    # the cases do not depend on the item's position: --limit 1 of the last item's list gives its own case
    last = sel.items[-1]
    alone = dataset_items(data, "segment", "val", model=model).items[-1:]
    assert np.array_equal(alone[0].load().mask, last.load().mask)


def test_evaluate_scores_the_simulated_validation_cases(trained, capsys):
    data, onnx, _table = trained
    m = evaluate_model(load_model(onnx.with_suffix(".json")), data, split="val", threads=1)
    assert m["n"] == 3 and m["n_scored"] >= 1 and "warnings" not in m
    assert np.isfinite(m["dice"]) and 0 <= m["dice"] <= 1 and np.isfinite(m["jaccard"])
    assert "simulated nodules" in m["simulation"] and "rebuilt from the model's training recipe" in m["split_source"]
    assert 0 <= m["auc"] <= 1 or np.isnan(m["auc"])
    assert main(["evaluate", str(onnx), str(data), "--split", "val", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "dice" in out and "simulation" in out
