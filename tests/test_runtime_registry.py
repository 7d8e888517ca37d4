"""The model registry: discovery in the shipped and user folders, schema check, sha256 check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from runtime_models import runtime_models  # noqa: F401

from kdviewer.runtime import (
    ModelCardError,
    ModelIntegrityError,
    ModelNotFoundError,
    load_model,
    resolve_model,
    scan_models,
    user_models_dir,
)


@pytest.fixture()
def user_dir(runtime_models, tmp_path) -> Path:  # noqa: F811
    """A private copy of the tiny models, as a user's model folder, that tests may damage."""
    folder = tmp_path / "models"
    shutil.copytree(next(iter(runtime_models.values())).parent, folder)
    return folder


def test_models_found_in_the_user_folder_given_by_parameter_or_environment(user_dir, monkeypatch):
    ids = {m.id for m in scan_models(user_dir=user_dir).models}
    assert {"tiny-cls", "tiny-seg", "tiny-denoise", "tiny-denoise-fp16", "tiny-sr2"} <= ids
    monkeypatch.setenv("KDVIEWER_HOME", str(user_dir.parent))
    assert user_models_dir() == user_dir
    scan = scan_models()
    assert scan.get("tiny-seg").origin == "user"
    assert scan.get("tiny-seg").onnx_path == user_dir / "tiny-seg.onnx"


def test_tampered_model_file_is_refused_with_its_name(user_dir):
    onnx = user_dir / "tiny-cls.onnx"
    data = bytearray(onnx.read_bytes())
    data[-10] ^= 0xFF  # same size, different content
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"tiny-cls\.onnx.*sha256"):
        load_model(user_dir / "tiny-cls.json")
    scan = scan_models(user_dir=user_dir)
    assert "tiny-cls" not in {m.id for m in scan.models}
    assert any("tiny-cls.onnx" in reason and "sha256" in reason for _, reason in scan.refused)
    with pytest.raises(ModelNotFoundError, match="refused"):
        scan.get("tiny-cls")


def test_truncated_model_file_is_refused(user_dir):
    onnx = user_dir / "tiny-seg.onnx"
    onnx.write_bytes(onnx.read_bytes()[:100])
    with pytest.raises(ModelIntegrityError, match=r"tiny-seg\.onnx.*bytes"):
        load_model(onnx)


def test_card_failing_the_schema_is_refused_with_the_problem(user_dir):
    card_path = user_dir / "tiny-seg.json"
    card = json.loads(card_path.read_text())
    card["task"] = "detect"
    del card["output"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match=r"tiny-seg\.json.*output"):
        load_model(card_path)
    (user_dir / "tiny-sr2.json").write_text("{not json")
    refused = dict(scan_models(user_dir=user_dir).refused)
    assert "detect" in refused[card_path] or "output" in refused[card_path]
    assert user_dir / "tiny-sr2.json" in refused


def test_models_fitting_a_study_by_modality_and_task(user_dir):
    scan = scan_models(user_dir=user_dir)

    def tiny(models) -> list[str]:  # the test's own models (the repository may ship others)
        return [m.id for m in models if m.id.startswith("tiny-")]

    assert tiny(scan.fitting("CR", "classify")) == ["tiny-cls"]
    assert tiny(scan.fitting("MR", "segment")) == ["tiny-seg"]
    assert set(tiny(scan.fitting("ct"))) >= {"tiny-seg", "tiny-denoise", "tiny-sr2"}
    assert "tiny-cls" not in {m.id for m in scan.fitting("CT")}


def test_resolve_by_id_or_by_path(user_dir):
    assert resolve_model("tiny-sr2", user_dir=user_dir).task == "super_resolve"
    assert resolve_model(user_dir / "tiny-sr2.onnx").id == "tiny-sr2"
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        resolve_model("no-such-model", user_dir=user_dir)
