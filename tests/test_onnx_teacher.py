"""An exported ONNX model (with its card) as the teacher of a KD run: same outputs as the torch net it came
from, at training-patch sizes too; refused with a clear reason where it cannot teach."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from kdviewer.distill.recipe import RecipeError, load_recipe
from kdviewer.distill.trainer import distill_student, train_teacher
from kdviewer.distill.trainer_models import load_teacher

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"
TINY_SEGMENT = ["data.max_items=4", "data.input_size=[64, 64]", "data.patch_size=[32, 32]", "teacher_net.base=4",
                "teacher_net.depth=2", "student_net.base=4", "student_net.depth=2", "train.batch_size=2",
                "distill.batch_size=2", "train.max_steps=2", "distill.max_steps=2"]


def retina(*overrides: str):
    return load_recipe(RECIPES / "retina-vessels.toml", [*TINY_SEGMENT, *overrides])


@pytest.fixture(scope="module")
def exported_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny retina U-Net teacher run, exported to ONNX with its card (the run folder)."""
    out = tmp_path_factory.mktemp("onnx-teacher") / "run"
    return train_teacher(retina(), out, progress="none")


def onnx_of(run: Path) -> Path:
    return next(run.glob("*-teacher.onnx"))


def test_onnx_teacher_gives_the_torch_teachers_outputs_at_patch_and_full_size(exported_teacher: Path) -> None:
    from_run = load_teacher(retina(f"teacher={exported_teacher}"), torch.device("cpu"))
    from_onnx = load_teacher(retina(f"teacher={onnx_of(exported_teacher)}"), torch.device("cpu"))
    assert from_onnx.id == "retina-vessels-teacher" and from_onnx.path == onnx_of(exported_teacher)
    assert not from_onnx.model.training and not any(p.requires_grad for p in from_onnx.model.parameters())
    gen = torch.Generator().manual_seed(0)
    for size in (32, 64):  # the card says 64x64; the training patches are 32x32
        x = torch.randn(2, 1, size, size, generator=gen)
        with torch.no_grad():
            want = from_run.model(x)
        got = from_onnx.model(x)
        assert got.shape == want.shape == (2, 2, size, size)
        assert torch.allclose(got, want, atol=1e-4), (size, (got - want).abs().max())


def test_distil_from_the_card_json_and_record_the_teacher(exported_teacher: Path, tmp_path: Path) -> None:
    card = onnx_of(exported_teacher).with_suffix(".json")
    run = distill_student(retina(f"teacher={card}"), tmp_path / "student", progress="none")
    student_card = json.loads(next(run.glob("*-student.json")).read_text())
    assert student_card["teacher"] == "retina-vessels-teacher"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "done" and sum(e["event"] == "step" for e in events) == 2


@pytest.mark.parametrize(("overrides", "reason"), [
    (["distill.method=fitnets"], "inner layers"),
    (["data.normalize=minmax"], "normalisation"),
    (["data.channels=3"], "input channels"),
    (["data.grey=green"], "grey"),
    (["data.clahe=0.02"], "clahe"),
])
def test_a_teacher_that_cannot_teach_this_recipe_is_refused(exported_teacher: Path, overrides, reason) -> None:
    r = retina(f"teacher={onnx_of(exported_teacher)}", *overrides)
    with pytest.raises(RecipeError, match=reason) as err:
        load_teacher(r, torch.device("cpu"))
    assert err.value.key == "teacher"


def test_a_tampered_or_missing_model_file_is_refused(exported_teacher: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exported_teacher, copy)
    onnx = onnx_of(copy)
    onnx.write_bytes(onnx.read_bytes()[:-16] + b"\0" * 16)
    with pytest.raises(RecipeError, match="sha256"):
        load_teacher(retina(f"teacher={onnx}"), torch.device("cpu"))
    with pytest.raises(RecipeError, match="no such model file"):
        load_teacher(retina(f"teacher={tmp_path / 'absent.onnx'}"), torch.device("cpu"))


def test_a_classifier_cannot_teach_a_segmentation_recipe(tmp_path: Path) -> None:
    shipped = RECIPES.parents[1] / "models" / "pneumonia-cxr-student.json"
    if not shipped.is_file():
        pytest.skip("the shipped models are not in this checkout")
    with pytest.raises(RecipeError, match="classify model cannot teach a segment recipe"):
        load_teacher(retina(f"teacher={shipped}"), torch.device("cpu"))
