"""`kdviewer evaluate --split val` on data that training split itself: the split rebuilt from the model card's
recipe holds exactly training's validation items; warnings and errors around it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from PIL import Image
from runtime_models import runtime_models  # noqa: F401

from kdviewer.cli import main
from kdviewer.runtime import load_model
from kdviewer.runtime.compare import compare_on_dataset
from kdviewer.runtime.evaluate import dataset_items, evaluate_model
from kdviewer.study.datasets import DatasetLayoutError, open_dataset


def _class_folders(root: Path, per_class: int = 10) -> Path:
    """Class folders under train/ (no val/), like brain-tumor-mri."""
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / "train" / name).mkdir(parents=True)
        for k in range(per_class):
            img = rng.integers(0, 256, (64, 64), dtype=np.uint8)
            Image.fromarray(img).save(root / "train" / name / f"{k:02d}.png")
    return root


def _with_recipe(card_path: Path, folder: Path, model_id: str, recipe: dict | None) -> Path:
    """A copy of the model (card and .onnx) in `folder`, its card's training.recipe set to `recipe` (TOML)."""
    folder.mkdir(parents=True, exist_ok=True)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    shutil.copyfile(card_path.parent / card["file"]["name"], folder / f"{model_id}.onnx")
    card.update(id=model_id)
    card["file"]["name"] = f"{model_id}.onnx"
    if recipe is not None:
        card["training"]["recipe"] = tomli_w.dumps(recipe)
    out = folder / f"{model_id}.json"
    out.write_text(json.dumps(card, indent=2), encoding="utf-8")
    return out


def _cls_data_table(data: Path) -> dict:
    return {"path": str(data), "layout": "auto", "input_size": [64, 64], "val_fraction": 0.3, "seed": 3}


@pytest.fixture()
def cls_setup(runtime_models, tmp_path):  # noqa: F811
    data = _class_folders(tmp_path / "pets")
    table = _cls_data_table(data)
    recipe = {"name": "pets", "task": "classify", "seed": 0, "data": table}
    card = _with_recipe(runtime_models["tiny-cls"], tmp_path / "models", "pets-student", recipe)
    return data, table, card


def _keys(items) -> list[str]:
    return [it.key for it in items]


def test_val_rebuilt_from_the_recipe_is_trainings_val(cls_setup):
    from kdviewer.distill.data import build_datasets

    data, table, card = cls_setup
    model = load_model(card)
    train_ds, val_ds, meta = build_datasets(table, "classify", None)
    assert open_dataset(data).splits == ("train",)  # no val of its own: training split it

    sel = dataset_items(data, "classify", "val", model=model)
    assert sel.split == "val" and _keys(sel.items) == _keys(val_ds.items) and len(sel.items) == 6
    assert not sel.warnings and "recipe" in sel.source and "seed 3" in sel.source
    assert _keys(dataset_items(data, "classify", "train", model=model).items) == _keys(train_ds.items)

    m = evaluate_model(model, data, split="val", threads=1)
    assert m["split"] == "val" and m["n"] == 6 and "warnings" not in m
    assert m["split_source"] == sel.source == f"rebuilt from the model's training recipe: {meta['split']}"


def test_all_images_of_the_training_folder_warn(cls_setup, capsys):
    data, _table, card = cls_setup
    m = evaluate_model(load_model(card), data, threads=1)
    assert m["n"] == 20 and m["split"] == "train" and "split_source" not in m
    assert m["warnings"] == ["these images include the model's training images; use --split val"]
    assert main(["evaluate", str(card), str(data), "--threads", "1"]) == 0
    assert "warning: these images include the model's training images; use --split val" in capsys.readouterr().out


def test_another_folder_gets_the_recipes_split_with_a_warning(cls_setup, tmp_path, capsys):
    data, _table, card = cls_setup
    other = shutil.copytree(data, tmp_path / "pets-copy")
    model = load_model(card)
    m = evaluate_model(model, other, split="val", threads=1)
    assert m["n"] == 6 and len(m["warnings"]) == 1
    assert "rebuilt from the model's training recipe" in m["warnings"][0] and str(data) in m["warnings"][0]
    assert _keys(dataset_items(other, "classify", "val", model=model).items) == \
        _keys(dataset_items(data, "classify", "val", model=model).items)
    assert "warnings" not in evaluate_model(model, other, threads=1)  # not the recipe's folder: nothing to say
    assert main(["evaluate", str(card), str(other), "--split", "val", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and out["warnings"] == m["warnings"]


def test_no_recipe_and_no_val_is_a_one_line_error(runtime_models, tmp_path, capsys):  # noqa: F811
    data = _class_folders(tmp_path / "pets")
    model = load_model(runtime_models["tiny-cls"])
    with pytest.raises(DatasetLayoutError, match="no split 'val' .*card has no training recipe"):
        evaluate_model(model, data, split="val", threads=1)
    assert main(["evaluate", str(runtime_models["tiny-cls"]), str(data), "--split", "val"]) != 0
    err = capsys.readouterr().err.strip()
    assert "no training recipe" in err and len(err.splitlines()) == 1
    # Without a recipe the data's own splits work as before, with nothing to warn about.
    m = evaluate_model(model, data, split="train", threads=1)
    assert m["n"] == 20 and "warnings" not in m


def test_compare_scores_the_students_recipe_val(cls_setup, runtime_models, tmp_path, capsys):  # noqa: F811
    data, _table, student = cls_setup
    teacher = runtime_models["tiny-cls"]  # no recipe: the student's is used
    c = compare_on_dataset(load_model(teacher), load_model(student), data, "val", allow_unpaired=True, threads=1)
    assert c.split == "val" and len(c.cases) == 6 and "recipe" in c.split_source
    val = dataset_items(data, "classify", "val", model=load_model(student)).items
    assert [case.key for case in c.cases] == _keys(val)
    assert main(["compare", str(teacher), str(student), str(data), "--split", "val", "--allow-unpaired",
                 "--threads", "1"]) == 0
    assert "split val, 6 cases" in capsys.readouterr().out


def _volume_case(folder: Path, n: int = 40) -> Path:
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    arr = np.random.default_rng(1).integers(-1000, 1000, size=(n, 8, 8)).astype(np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(folder / "ct.nii.gz"))
    np.savez_compressed(folder / "seg.npz", seg=(arr > 0).astype(np.uint8))
    return folder


def test_volume_blocks_and_excluded_slices_match_training(runtime_models, tmp_path):  # noqa: F811
    from kdviewer.distill.data import _train_val
    from kdviewer.distill.data_config import DataConfig

    data = _volume_case(tmp_path / "liver")
    table = {"path": str(data), "layout": "volume_labels", "val_fraction": 0.25, "seed": 5, "block_size": 4,
             "simulate": {"kind": "nodules", "exclude_slices": [10, 13]}}
    card = _with_recipe(runtime_models["tiny-seg"], tmp_path / "models", "liver-seg",
                        {"name": "liver", "task": "segment", "data": table})
    cfg = DataConfig.from_dict(table, "segment", None)
    train, val, _dropped, _how = _train_val(open_dataset(data, "volume_labels"), cfg)
    model = load_model(card)
    sel_val = dataset_items(data, "segment", "val", model=model)
    sel_train = dataset_items(data, "segment", "train", model=model)
    assert _keys(sel_val.items) == _keys(val) and _keys(sel_train.items) == _keys(train)
    assert "block of 4 slices" in sel_val.source
    kept = {it.slice_index for it in sel_val.items + sel_train.items}
    assert kept == set(range(40)) - set(range(10, 14))
