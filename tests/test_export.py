"""Export: ONNX with a dynamic batch that matches torch, a valid card, float16 weights, INT8; model cards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from kdviewer.distill.data import build_datasets
from kdviewer.distill.export import export_run
from kdviewer.distill.recipe import load_recipe
from kdviewer.distill.trainer import train_teacher
from kdviewer.distill.trainer_checkpoint import load_checkpoint
from kdviewer.distill.trainer_models import build_net
from kdviewer.modelcard import ModelCardError, load_card, save_card, sha256_file, validate_card

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"
TINY = ["data.max_items=16", "data.input_size=[32, 32]", "teacher_net.arch=mobilenetv2", "teacher_net.width=0.25",
        "train.batch_size=4", "train.max_steps=2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = load_recipe(RECIPES / "pneumonia-cxr.toml", TINY)
    return train_teacher(recipe, tmp_path_factory.mktemp("export") / "run", progress="none", export=False)


def test_onnx_matches_torch_on_validation_images_with_any_batch(run_dir: Path) -> None:
    onnx_path, card_path = export_run(run_dir)
    recipe = load_recipe(run_dir / "recipe.toml")
    _, val_ds, _ = build_datasets(recipe.data.table(), recipe.task, recipe.recipe_dir)
    images = torch.stack([val_ds[i]["image"] for i in range(3)])
    ckpt = load_checkpoint(run_dir / "best.pt")
    model = build_net(ckpt["net"])
    model.load_state_dict(ckpt["model"])
    with torch.no_grad():
        expected = model.eval()(images).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    got = session.run(None, {"input": images.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)

    card = load_card(card_path)
    assert card.id == "pneumonia-cxr-teacher" and card.role == "teacher" and card.task == "classify"
    assert card.file["sha256"] == sha256_file(onnx_path) and card.file["bytes"] == onnx_path.stat().st_size
    assert card.input["shape"] == [None, 1, 32, 32]
    assert card.output["labels"] == ["normal", "pneumonia"]
    assert card.training["licence"] and card.training["dataset"]
    assert 'name = "pneumonia-cxr"' in card.training["recipe"]
    assert card.export["opset"] == 17 and card.export["max_abs_diff_vs_torch"] < 1e-4
    assert "auc" in card.metrics["validation"]
    assert card.intended_use == "Research use only. Not for diagnosis."
    assert card.architecture["parameters"] > 0
    assert any("28x28" in limit for limit in card.limits)  # the recipe's plain-words limits reach the card
    assert onnx_path.with_suffix(".md").read_text().startswith("# pneumonia-cxr-teacher")


def test_float16_weights_keep_float32_inputs(run_dir: Path, tmp_path: Path) -> None:
    fp32 = run_dir / "pneumonia-cxr-teacher.onnx"
    if not fp32.exists():
        export_run(run_dir)
    size32 = fp32.stat().st_size
    onnx_path, card_path = export_run(run_dir, weights="float16")
    assert onnx_path.stat().st_size < 0.7 * size32
    model = onnx.load(str(onnx_path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    card = json.loads(card_path.read_text())
    assert card["file"]["weights"] == "float16" and card["export"]["max_abs_diff_vs_torch"] < 5e-2
    export_run(run_dir)  # back to float32 for the other tests


def test_int8_is_measured_and_reported(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    onnx_path, card_path = export_run(run_dir, int8=True)
    assert list(tmp_path.iterdir()) == []  # no scratch files of onnxruntime's shape inference left behind
    report = json.loads(card_path.read_text())["export"]["int8"]
    assert report["metric"] == "auc"
    assert report["latency_ms_fp32"] > 0 and report["latency_ms_int8"] > 0
    int8_path = onnx_path.with_name("pneumonia-cxr-teacher-int8.onnx")
    assert int8_path.exists() == report["kept"]
    two = report["latency_ms_2_threads"]
    assert report["faster"] == (report["latency_ms_int8"] < report["latency_ms_fp32"] and two["int8"] < two["fp32"])
    assert not report["kept"] or report["faster"]  # kept only when it is faster
    if report["kept"]:
        assert load_card(int8_path.with_suffix(".json")).file["weights"] == "int8"


def test_export_of_a_folder_that_is_no_run_says_so(tmp_path: Path) -> None:
    from kdviewer.distill.export import ExportError

    with pytest.raises(ExportError, match="not a finished run folder"):
        export_run(tmp_path)


def good_card() -> dict:
    return {"schema": "kdviewer.model/1", "id": "m", "task": "classify", "role": "student", "teacher": "t",
            "architecture": {"name": "mobilenetv2", "parameters": 10},
            "file": {"name": "m.onnx", "sha256": "0" * 64, "bytes": 10, "weights": "float32"},
            "input": {"shape": [None, 1, 64, 64]}, "output": {"kind": "logits", "labels": ["a", "b"]},
            "intended_use": "Research use only. Not for diagnosis.", "limits": []}


def test_validate_card_lists_problems() -> None:
    assert validate_card(good_card()) == []
    bad = good_card() | {"schema": "other/2", "task": "detect"}
    del bad["file"]["sha256"]
    problems = validate_card(bad)
    assert any("schema" in p for p in problems) and any("task" in p for p in problems)
    assert any("sha256" in p for p in problems)
    assert validate_card({"id": "x"})  # missing keys
    assert validate_card(good_card() | {"colour": "red"}) == ["unknown keys ['colour']"]


def test_card_round_trip_and_errors(tmp_path: Path) -> None:
    from kdviewer.modelcard import ModelCard

    card = ModelCard.from_dict(good_card())
    path = save_card(card, tmp_path / "m.json")
    assert load_card(path) == card
    with pytest.raises(ModelCardError, match="no such model card"):
        load_card(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ModelCardError, match="bad.json"):
        load_card(tmp_path / "bad.json")


def test_int8_that_onnxruntime_cannot_make_leaves_the_fp32_export(run_dir: Path, monkeypatch) -> None:
    import onnxruntime.quantization as q

    def refuse(*_a, **_k):
        raise Exception("Incomplete symbolic shape inference")  # what onnxruntime raises for some graphs

    monkeypatch.setattr(q, "quantize_static", refuse)
    lines: list[str] = []
    for old in run_dir.glob("*-int8.*"):  # left by the test that keeps INT8
        old.unlink()
    onnx_path, card_path = export_run(run_dir, int8=True, log=lines.append)
    assert onnx_path.exists() and not onnx_path.with_name("pneumonia-cxr-teacher-int8.onnx").exists()
    assert "int8" not in json.loads(card_path.read_text())["export"]
    assert any("int8: not made (Exception: Incomplete symbolic shape inference)" in line for line in lines)
