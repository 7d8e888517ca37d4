"""Recipes: the shipped ones load, overrides work, and bad recipes fail with the key and the file named."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from kdviewer.distill.recipe import RecipeError, dump_recipe, load_recipe, recipe_from_dict

RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"
SHIPPED = ("pneumonia-cxr", "breast-us", "brain-tumor-mri", "retina-vessels", "liver-ct", "lung-nodule-ct",
           "ct-denoise", "ct-superres")

MINIMAL = """
name = "tiny"
task = "classify"
[data]
path = "data"
[teacher_net]
arch = "resnet18"
[student_net]
arch = "mobilenetv2"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_loads_and_points_at_shared_data(name: str, datasets_dir: Path) -> None:
    recipe = load_recipe(RECIPES / f"{name}.toml")
    assert recipe.name == name
    assert recipe.data_path().is_dir(), recipe.data_path()
    assert recipe.data_path().is_relative_to(datasets_dir.resolve())


def test_defaults_fill_every_key(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert recipe.distill.method == "hinton" and recipe.distill.temperature == 4.0
    assert recipe.train.optimizer == "adamw" and recipe.export.opset == 17
    assert recipe.data_path() == (tmp_path / "data").resolve()


def test_overrides_are_parsed_as_toml_values(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL), [
        "distill.temperature=2", "train.epochs=3", "data.input_size=[32, 32]", "teacher=runs/t 1",
        "distill.features=[['layer1', 'features.3']]", "distill.cache_teacher=true"])
    assert recipe.distill.temperature == 2.0 and isinstance(recipe.distill.temperature, float)
    assert recipe.train.epochs == 3
    assert recipe.data.input_size == (32, 32)
    assert recipe.teacher == "runs/t 1"  # a bare word is a string
    assert recipe.distill.features == (("layer1", "features.3"),)
    assert recipe.distill.cache_teacher is True


def test_dump_round_trips_with_top_level_keys_first(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPES / "retina-vessels.toml", ["distill.alpha=0.3"])
    text = dump_recipe(recipe)
    first_table = text.index("\n[")
    assert "name = " in text[:first_table] and "task = " in text[:first_table]
    again = recipe_from_dict(tomllib.loads(text), recipe.source)
    assert again == recipe


@pytest.mark.parametrize(("text", "overrides", "key", "words"), [
    (MINIMAL.replace('name = "tiny"', ""), [], "name", "missing required key"),
    (MINIMAL.replace('arch = "resnet18"', ""), [], "teacher_net.arch", "missing required key"),
    (MINIMAL, ['train.epochs="ten"'], "train.epochs", "should be an integer"),
    (MINIMAL, ["data.input_size=64"], "data.input_size", "should be an array"),
    (MINIMAL, ["distill.temprature=2"], "distill.temprature", "did you mean 'distill.temperature'"),
    (MINIMAL, ["teacher_net.arch=resnet51"], "teacher_net.arch", "unknown architecture 'resnet51'"),
    (MINIMAL, ["distill.method=hintn"], "distill.method", "did you mean 'hinton'"),
    (MINIMAL, ["distill.method=cwd"], "distill.method", "does not apply to task 'classify'"),
    (MINIMAL, ["distill.temperature=0.5"], "distill.temperature", "sharpens"),
    (MINIMAL, ["task=detect"], "task", "is not one of"),
    (MINIMAL, ["train.loss=mse"], "train.loss", "applies to denoise and super_resolve"),
    (MINIMAL, ["distill.loss=l2"], "distill.loss", "is not one of"),
    (MINIMAL, ["distill.kd_rampup_epochs=2"], "distill.kd_rampup_epochs", "applies to methods pixel and cwd"),
    (MINIMAL, ["distill.kd_rampup_epochs=-1"], "distill.kd_rampup_epochs", "should be at least 0"),
    (MINIMAL, ["train.patch_size=[48, 48]"], "train.patch_size", "for segment and restoration tasks"),
    (MINIMAL, ["distill.repeat=0"], "distill.repeat", "must be >= 1"),
    (MINIMAL, ["train.num_workers=-2"], "train.num_workers", "number of loader processes"),
    (MINIMAL, ["train.weight_decay=-1e-4"], "train.weight_decay", "should be at least 0"),
    (MINIMAL, ["distill.warmup_epochs=-3"], "distill.warmup_epochs", "should be at least 0"),
    (MINIMAL, ["distill.dkd_beta=-8"], "distill.dkd_beta", "should be at least 0"),
])
def test_bad_recipes_name_the_key_and_the_file(tmp_path: Path, text: str, overrides: list[str], key: str,
                                               words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    message = str(info.value)
    assert info.value.key == key
    assert str(path) in message and key in message and words in message
    assert "\n" not in message


def test_sharpening_temperature_only_when_asked(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL), ["distill.temperature=0.5", "distill.allow_sharpening=true"])
    assert recipe.distill.temperature == 0.5


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(write(tmp_path, "name = "))


def test_restoration_loss_mse_is_the_squared_error(tmp_path: Path) -> None:
    import torch

    from kdviewer.distill.trainer_tasks import task_adapter

    text = MINIMAL.replace('task = "classify"', 'task = "denoise"').replace('"resnet18"', '"dncnn"').replace(
        '"mobilenetv2"', '"denoise_small"')
    recipe = load_recipe(write(tmp_path, text), ["train.loss=mse", "distill.method=restoration"])
    assert recipe.train.loss == "mse" and recipe.distill.loss == "l1"
    out, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    assert task_adapter("denoise", loss="mse").hard_loss(out, {"target": target}).item() == pytest.approx(3.5)
    assert task_adapter("denoise").hard_loss(out, {"target": target}).item() == pytest.approx(1.5)


def test_a_stage_may_train_on_its_own_crops(tmp_path: Path, monkeypatch) -> None:
    """[train] patch_size / repeat replace [data]'s for the teacher only; the student keeps [data]'s."""
    recipe = load_recipe(RECIPES / "ct-denoise.toml", ["train.patch_size=[48, 48]", "train.repeat=16"])
    teacher, student = recipe.stage_data("train"), recipe.stage_data("distill")
    assert teacher["patch_size"] == [48, 48] and teacher["repeat"] == 16
    assert student["patch_size"] == list(recipe.data.patch_size) and student["repeat"] == recipe.data.repeat
    assert {k: v for k, v in teacher.items() if k not in ("patch_size", "repeat")} == \
        {k: v for k, v in student.items() if k not in ("patch_size", "repeat")}
    assert recipe_from_dict(tomllib.loads(dump_recipe(recipe)), recipe.source) == recipe

    import kdviewer.distill.data as data
    from kdviewer.distill.trainer import train_teacher

    seen: list[dict] = []

    def capture(table, task, recipe_dir):  # the trainer's data, without building it
        seen.append(dict(table))
        raise RuntimeError("stop here")

    monkeypatch.setattr(data, "build_datasets", capture)
    with pytest.raises(RuntimeError, match="stop here"):
        train_teacher(recipe, tmp_path / "run", progress="none", export=False)
    assert seen and seen[0]["patch_size"] == [48, 48] and seen[0]["repeat"] == 16
