"""An ensemble of trained teachers as one teacher: the net, `kdviewer ensemble`, distilling and exporting it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdviewer.cli import main
from kdviewer.distill.ensemble import EnsembleError, ensemble_runs, validate
from kdviewer.distill.nets import ArchitectureOptionError, create_model, feature_layers
from kdviewer.distill.recipe import load_recipe
from kdviewer.distill.trainer import distill_student, train_teacher
from kdviewer.distill.trainer_checkpoint import load_checkpoint
from kdviewer.distill.trainer_models import load_teacher

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"
# PneumoniaMNIST, 16 images per split at 32x32, tiny MobileNetV2s
TINY = ["data.max_items=16", "data.input_size=[32, 32]", "teacher_net.arch=mobilenetv2", "teacher_net.width=0.25",
        "student_net.width=0.25", "train.batch_size=4", "distill.batch_size=4", "train.max_steps=2",
        "distill.max_steps=1"]


def recipe(*overrides: str):
    return load_recipe(RECIPES / "pneumonia-cxr.toml", [*TINY, *overrides])


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("members")
    return [train_teacher(recipe(f"seed={s}"), root / f"t{s}", progress="none", export=False) for s in (0, 1)]


def test_the_ensemble_averages_its_members():
    members = [{"name": "mobilenetv2", "kwargs": {"width": 0.25}}, {"name": "resnet18", "kwargs": {}}]
    model = create_model("ensemble", in_channels=1, num_classes=3, input_size=(32, 32), members=members).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = (model.members[0](x) + model.members[1](x)) / 2
        torch.testing.assert_close(model(x), expected)
    assert not torch.allclose(model.members[0](x), model.members[1](x))
    with pytest.raises(ValueError, match="two members"):
        create_model("ensemble", members=members[:1])
    with pytest.raises(ArchitectureOptionError, match="output method"):
        feature_layers("ensemble", members=members)


def test_ensemble_of_runs_is_a_teacher_run(teachers: list[Path], tmp_path: Path):
    out = ensemble_runs(teachers, tmp_path / "ens")
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["net"]["name"] == "ensemble" and len(ckpt["net"]["kwargs"]["members"]) == 2
    run = json.loads((out / "run.json").read_text())
    assert run["stage"] == "train" and [m["run"] for m in run["ensemble"]] == [str(t) for t in teachers]
    # the stored weights are the members' best weights, and its validation is recomputed, not copied
    for k, t in enumerate(teachers):
        member = load_checkpoint(t / "best.pt")["model"]
        for name, value in member.items():
            torch.testing.assert_close(ckpt["model"][f"members.{k}.{name}"], value)
    r = recipe(f"teacher={out}")
    teacher = load_teacher(r, torch.device("cpu"))
    assert teacher.spec["name"] == "ensemble" and not teacher.model.training
    m0 = load_teacher(recipe(f"teacher={teachers[0]}"), torch.device("cpu")).model
    m1 = load_teacher(recipe(f"teacher={teachers[1]}"), torch.device("cpu")).model
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher.model(x), (m0(x) + m1(x)) / 2)
    meta = json.loads((out / "meta.json").read_text())
    assert ckpt["val"] == pytest.approx(validate(teacher.model, load_recipe(out / "recipe.toml"), meta))
    # distilled with an output method, refused with a feature method
    run_dir = distill_student(r, tmp_path / "kd", progress="none", export=False)
    assert json.loads((run_dir / "run.json").read_text())["teacher"]["id"] == "pneumonia-cxr-teacher"
    with pytest.raises(Exception, match="output method"):
        distill_student(recipe(f"teacher={out}", "distill.method=fitnets"), tmp_path / "fit", progress="none",
                        export=False)


def test_exported_ensemble_runs_in_onnxruntime(teachers: list[Path], tmp_path: Path):
    from kdviewer.distill.export import export_run
    from kdviewer.runtime.registry import load_model

    out = ensemble_runs(teachers, tmp_path / "ens")
    onnx_path, card_path = export_run(out, int8=False)
    card = json.loads(card_path.read_text())
    assert card["architecture"]["name"] == "ensemble" and card["role"] == "teacher"
    assert card["architecture"]["parameters"] == sum(
        p.numel() for p in load_teacher(recipe(f"teacher={out}"), torch.device("cpu")).model.parameters())
    assert load_model(card_path).onnx_path == onnx_path
    assert np.isfinite(card["metrics"]["validation"]["auc"])


def test_bad_ensembles_are_refused_with_one_line(teachers: list[Path], tmp_path: Path, capsys):
    with pytest.raises(EnsembleError, match="at least two"):
        ensemble_runs(teachers[:1], tmp_path / "a")
    with pytest.raises(EnsembleError, match="twice"):
        ensemble_runs([teachers[0], teachers[0]], tmp_path / "b")
    other = train_teacher(recipe("data.input_size=[48, 48]"), tmp_path / "other", progress="none", export=False)
    with pytest.raises(EnsembleError, match="other data"):
        ensemble_runs([teachers[0], other], tmp_path / "c")
    student = distill_student(recipe(f"teacher={teachers[0]}", "distill.method=none"), tmp_path / "s",
                              progress="none", export=False)
    with pytest.raises(EnsembleError, match="teacher runs"):
        ensemble_runs([teachers[0], student], tmp_path / "d")
    assert main(["ensemble", str(teachers[0]), str(tmp_path / "missing"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdviewer ensemble: error:") and "no recipe.toml" in err and "\n" not in err
    assert not (tmp_path / "e").exists()
