"""`kdviewer models`, `kdviewer infer`, `kdviewer evaluate`: what a user sees, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from runtime_models import runtime_models  # noqa: F401

from kdviewer.cli import main
from kdviewer.study import load_volume


@pytest.fixture()
def models_dir(runtime_models, tmp_path) -> Path:  # noqa: F811
    folder = tmp_path / "models"
    shutil.copytree(next(iter(runtime_models.values())).parent, folder)
    return folder


def test_models_list_verify_show(models_dir, capsys):
    assert main(["models", "--models-dir", str(models_dir), "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ids = {m["id"]: m for m in data["models"]}
    assert ids["tiny-seg"]["origin"] == "user" and ids["tiny-seg"]["labels"] == ["background", "bright"]
    assert main(["models", "--models-dir", str(models_dir), "list", "--modality", "CR"]) == 0
    out = capsys.readouterr().out
    assert "tiny-cls" in out and "tiny-seg" not in out
    assert main(["models", "--models-dir", str(models_dir), "show", "tiny-cls"]) == 0
    out = capsys.readouterr().out
    assert "Research use only" in out and "licence: CC0" in out
    assert main(["models", "--models-dir", str(models_dir), "verify"]) == 0
    out = capsys.readouterr().out
    assert ", 0 refused" in out  # the test's 5 models plus whatever the repository ships
    assert all(f"ok       {name}" in out for name in ("tiny-cls", "tiny-seg", "tiny-denoise", "tiny-sr2"))


def test_shipped_models_all_verify(repo_dir, capsys):
    """Every model in the repository's models/ has a valid card and an untampered file."""
    shipped = sorted(p.stem for p in (repo_dir / "models").glob("*.json"))
    assert main(["models", "verify"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert all(f"ok       {name}" in out for name in shipped)


def test_models_verify_reports_a_tampered_file_and_exits_2(models_dir, capsys):
    onnx = models_dir / "tiny-sr2.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\0")
    assert main(["models", "--models-dir", str(models_dir), "verify"]) == 2
    out = capsys.readouterr().out
    assert f"REFUSED  {models_dir / 'tiny-sr2.json'}: {onnx}: sha256" in out
    assert main(["models", "--models-dir", str(models_dir), "show", "tiny-sr2"]) == 2
    assert "refused" in capsys.readouterr().err


def test_infer_classify_writes_json(models_dir, repo_dir, tmp_path, capsys):
    xray = repo_dir / "resources/samples/chest-xray/clinical_sample_01.png"
    out = tmp_path / "r.json"
    assert main(["infer", str(models_dir / "tiny-cls.onnx"), str(xray), "--out", str(out), "--threads", "1"]) == 0
    data = json.loads(out.read_text())
    assert data["model"] == "tiny-cls" and data["label"] in capsys.readouterr().out


def test_infer_segment_writes_dicom_seg_and_nifti(models_dir, repo_dir, tmp_path, capsys):
    series = repo_dir / "resources/samples/pacsman-mr/dicomseries"
    seg = tmp_path / "seg.dcm"
    args = ["--models-dir", str(models_dir), "--threads", "1"]
    assert main(["infer", "tiny-seg", str(series), "--out", str(seg), *args]) == 0
    assert "bright" in capsys.readouterr().out
    ds = pydicom.dcmread(seg)
    assert ds.Modality == "SEG"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == load_volume(series).info.uid
    nii = tmp_path / "mask.nii.gz"
    assert main(["infer", "tiny-seg", str(series), "--out", str(nii), *args]) == 0
    assert load_volume(nii).same_grid(load_volume(series))


def test_infer_enhance_warns_for_another_modality_and_writes_the_series(models_dir, repo_dir, tmp_path, capsys):
    series = repo_dir / "resources/samples/pacsman-mr/dicomseries"
    out = tmp_path / "den.nii.gz"
    assert main(["infer", "tiny-denoise", str(series), "--out", str(out), "--models-dir", str(models_dir),
                 "--threads", "1"]) == 0
    assert "warning: tiny-denoise is made for CT, the study is MR" in capsys.readouterr().err
    assert load_volume(out).shape == (128, 128, 128)


def test_infer_unknown_model_is_one_line_and_exit_2(models_dir, tmp_path, capsys):
    assert main(["infer", "nope", str(tmp_path), "--out", str(tmp_path / "x.json"),
                 "--models-dir", str(models_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdviewer infer: error: no model 'nope'") and err.count("\n") == 1


def test_evaluate_json_and_table(models_dir, tmp_path, capsys):
    imgs = np.zeros((4, 28, 28), np.uint8)
    imgs[:, 5:20, 5:20] = 200
    np.savez(tmp_path / "d.npz", test_images=imgs, test_labels=np.array([[0], [1], [0], [1]]))
    assert main(["evaluate", "tiny-cls", str(tmp_path / "d.npz"), "--json", "--models-dir", str(models_dir),
                 "--threads", "1"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 4 and m["accuracy"] == pytest.approx(0.5)  # identical images: one class for all
    assert main(["evaluate", "tiny-cls", str(tmp_path / "d.npz"), "--models-dir", str(models_dir)]) == 0
    assert "confusion (rows true, columns predicted):" in capsys.readouterr().out


def test_a_reader_that_stops_early_ends_the_command_quietly(repo_dir):
    """`kdviewer models list | head -1`: the pipe closes before the table is written; the command stops with
    status 1 and no error line (it used to print "error: Broken pipe")."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "kdviewer", "models", "list"], cwd=repo_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes anything
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert err.decode().strip() == ""
