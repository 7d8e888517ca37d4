"""install_model / `kdviewer models install RUN_DIR`: a finished run's model lands in the user model folder,
checked, and the registry lists it; bad files are refused and leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from runtime_models import write_card

from kdviewer.cli import main
from kdviewer.runtime import classify_image, scan_models
from kdviewer.runtime import install as install_module
from kdviewer.runtime.install import InstallError, install_model, install_run


def tiny_classifier(path: Path, bias: tuple[float, float] = (0.0, 0.0)) -> Path:
    """An ONNX classifier (N, 1, 8, 8) -> logits (N, 2): the mean brightness against its opposite."""
    weights = np.concatenate([np.full((64, 1), 1 / 64), np.full((64, 1), -1 / 64)], axis=1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["mm"]),
         helper.make_node("Add", ["mm", "b"], ["output"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array(bias, np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def fake_run(folder: Path, model_id: str = "tiny-run-student", bias=(0.0, 0.0)) -> Path:
    """A run folder as `kdviewer distill` leaves it: recipe, run files, <id>.onnx/.json/.md."""
    folder.mkdir(parents=True)
    for name in ("run.json", "meta.json", "metrics.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    (folder / "recipe.toml").write_text('name = "tiny-run"\n', encoding="utf-8")
    onnx_path = tiny_classifier(folder / f"{model_id}.onnx", bias)
    write_card(onnx_path, model_id, "classify", input_shape=[None, 1, 8, 8], labels=["bright", "dark"])
    (folder / f"{model_id}.md").write_text(f"# {model_id}\n", encoding="utf-8")
    return folder / f"{model_id}.json"


def test_installed_model_is_listed_and_runs(tmp_path: Path) -> None:
    card = fake_run(tmp_path / "run")
    user = tmp_path / "user-models"
    model = install_model(card, user_dir=user)
    assert model.origin == "user" and model.onnx_path == user / "tiny-run-student.onnx"
    assert sorted(p.name for p in user.iterdir()) == ["tiny-run-student.json", "tiny-run-student.md",
                                                       "tiny-run-student.onnx"]
    assert json.loads((user / "tiny-run-student.json").read_text())["training"]["run_dir"] == str(card.parent.resolve())
    assert [m.id for m in scan_models(user_dir=user).models if m.origin == "user"] == ["tiny-run-student"]
    bright = np.full((8, 8), 200, np.float32)
    bright[0, 0] = 0  # minmax normalisation needs a range
    result = classify_image(model, bright)
    assert result.labels[int(np.argmax(result.probabilities))] == "bright"


def test_reinstall_replaces_the_users_model(tmp_path: Path) -> None:
    user = tmp_path / "user"
    install_model(fake_run(tmp_path / "first"), user_dir=user)
    second = install_model(fake_run(tmp_path / "second", bias=(0.0, 5.0)), user_dir=user)
    scan = scan_models(user_dir=user)
    assert not scan.refused and [m.id for m in scan.models if m.origin == "user"] == ["tiny-run-student"]
    assert second.card.training["run_dir"].endswith("second")


def test_tampered_model_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    card = fake_run(tmp_path / "run")
    with card.with_suffix(".onnx").open("ab") as f:
        f.write(b"\0")
    user = tmp_path / "user"
    with pytest.raises(InstallError, match="tiny-run-student.onnx"):
        install_model(card, user_dir=user)
    assert not user.exists() or list(user.iterdir()) == []


def test_a_shipped_id_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "tiny-run-student.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(install_module, "SHIPPED_DIR", shipped)
    with pytest.raises(InstallError, match="shipped model"):
        install_model(fake_run(tmp_path / "run"), user_dir=tmp_path / "user")
    assert not (tmp_path / "user").exists() or list((tmp_path / "user").iterdir()) == []


def test_cli_models_install_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_run(tmp_path / "run")
    user = tmp_path / "user"
    assert main(["models", "--models-dir", str(user), "install", str(tmp_path / "run")]) == 0
    assert "installed tiny-run-student" in capsys.readouterr().out
    assert [m.id for m in install_run(tmp_path / "run", user_dir=user)] == ["tiny-run-student"]
    assert main(["models", "--models-dir", str(user), "install", str(tmp_path)]) == 2
    assert "no exported model" in capsys.readouterr().err
