"""A recipe's float32 schedule (`[without_bf16.train]` / `[without_bf16.distill]`): where a stage asks for bfloat16
and the device computes it in float32, the table's keys replace the stage's, so the run keeps its time budget."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

from kdviewer.distill import trainer_precision as tp
from kdviewer.distill.recipe import (
    RecipeError,
    apply_without_bf16,
    dump_recipe,
    load_recipe,
    recipe_from_dict,
)
from kdviewer.distill.trainer import train_teacher

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"
TINY = ["data.max_items=16", "data.input_size=[32, 32]", "teacher_net.arch=mobilenetv2", "teacher_net.width=0.25",
        "student_net.width=0.25", "train.batch_size=4", "distill.batch_size=4", "train.max_steps=2",
        "distill.max_steps=2", "export.int8=false", "train.epochs=5", "distill.epochs=6"]
FALLBACK = ["train.precision=bf16", "distill.precision=bf16", "without_bf16.train={epochs = 2, lr = 0.002}",
            "without_bf16.distill.epochs=3"]
CPU = torch.device("cpu")
AVX2, AMX = {"avx2", "fma"}, {"avx2", "avx512f", "amx_bf16"}


def tiny(*overrides: str):
    return load_recipe(RECIPES / "pneumonia-cxr.toml", [*TINY, *overrides])


def own_epochs(*overrides: str):
    """`tiny` with the recipe's own epochs (not set on the command line)."""
    return load_recipe(RECIPES / "pneumonia-cxr.toml", [*TINY[:-2], *overrides])


@pytest.fixture(autouse=True)
def x86(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tp.platform, "machine", lambda: "x86_64")


def test_the_float32_schedule_replaces_the_stage_where_bf16_is_not_native() -> None:
    recipe = own_epochs(*FALLBACK)
    train, note = tp.schedule_for_device(recipe, "train", CPU, AVX2)
    assert (train.train.epochs, train.train.lr) == (2, 0.002) and train.distill == recipe.distill
    assert note == "[without_bf16.train]: train.epochs = 2, train.lr = 0.002 (bfloat16 is not native here: the " \
                   "float32 schedule)"
    assert "train" not in train.without_bf16 and train.without_bf16["distill"] == {"epochs": 3}
    distill, note = tp.schedule_for_device(recipe, "distill", CPU, AVX2)
    assert distill.distill.epochs == 3 and distill.train == recipe.train and "distill.epochs = 3" in note
    # where bfloat16 is native the recipe runs as written
    assert tp.schedule_for_device(recipe, "train", CPU, AMX) == (recipe, "")
    assert tp.schedule_for_device(recipe, "distill", CPU, AMX) == (recipe, "")


def test_a_stage_that_asks_for_float32_keeps_its_schedule() -> None:
    recipe = own_epochs(*FALLBACK, "train.precision=fp32", "distill.precision=fp32")
    assert tp.schedule_for_device(recipe, "train", CPU, AVX2) == (recipe, "")
    assert tp.schedule_for_device(recipe, "distill", CPU, AVX2) == (recipe, "")
    # a live teacher's bfloat16 forward is part of the distill stage's time
    recipe = own_epochs(*FALLBACK, "distill.precision=fp32", "distill.teacher_precision=bf16")
    assert tp.schedule_for_device(recipe, "distill", CPU, AVX2)[0].distill.epochs == 3


def test_the_command_line_wins_over_the_float32_schedule() -> None:
    recipe = tiny(*FALLBACK)  # TINY sets train.epochs=5 and distill.epochs=6 on the command line
    train, _ = tp.schedule_for_device(recipe, "train", CPU, AVX2)
    assert (train.train.epochs, train.train.lr) == (5, 0.002)  # lr still from the table: it was not set
    distill, note = tp.schedule_for_device(recipe, "distill", CPU, AVX2)
    assert distill.distill == recipe.distill and note == ""


@pytest.mark.parametrize(("override", "message"), [
    ("without_bf16.train.epoch=3", r"without_bf16\.train\.epoch: unknown key \(did you mean 'without_bf16\.train\.epochs'"),
    ("without_bf16.train.epochs=0", r"without_bf16\.train\.epochs: should be at least 1"),
    ("without_bf16.distill.optimizer='adamm'", r"without_bf16\.distill\.optimizer: 'adamm' is not one of .*adamw"),
    ("without_bf16.train.epochs='ten'", r"without_bf16\.train\.epochs: should be an integer"),
    ("without_bf16.distill.teacher_precision='fp32'", r"without_bf16\.distill\.teacher_precision: is decided by"),
    ("without_bf16.export={int8 = false}", r"without_bf16\.export: unknown table; known: train, distill"),
    ("without_bf16.train=3", r"without_bf16\.train: should be a table"),
])
def test_a_wrong_float32_schedule_is_refused_at_load(override: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        own_epochs(*FALLBACK, override)


def test_the_run_folder_keeps_the_schedule_that_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tp, "cpu_flags", lambda: AVX2)
    recipe = own_epochs(*FALLBACK)
    out = train_teacher(recipe, tmp_path / "t", progress="json", export=False)
    stored = tomllib.loads((out / "recipe.toml").read_text(encoding="utf-8"))
    assert stored["train"]["epochs"] == 2 and stored["train"]["lr"] == 0.002
    assert stored["without_bf16"] == {"distill": {"epochs": 3}}  # what is left for the student's stage
    start = json.loads(capsys.readouterr().out.splitlines()[0])
    assert start["event"] == "start" and start["epochs"] == 2 and start["precision"] == "fp32"
    out = train_teacher(recipe, tmp_path / "t", progress="none", export=False, resume=True)  # resumes as it ran
    assert "[without_bf16.train]: train.epochs = 2" in capsys.readouterr().err


def test_the_table_survives_a_dump_and_a_reload() -> None:
    recipe = tiny(*FALLBACK)
    again = recipe_from_dict(tomllib.loads(dump_recipe(recipe)))
    assert again.without_bf16 == recipe.without_bf16 and apply_without_bf16(again, "train").train.lr == 0.002


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES.glob("*.toml")))
def test_shipped_float32_schedules_are_shorter_and_valid(name: str) -> None:
    recipe = load_recipe(RECIPES / f"{name}.toml")
    for stage, table in recipe.without_bf16.items():
        assert "bf16" in (recipe.stage(stage).precision, getattr(recipe.stage(stage), "teacher_precision", ""))
        short = apply_without_bf16(recipe, stage).stage(stage)
        assert short.epochs < recipe.stage(stage).epochs, (name, stage, table)
