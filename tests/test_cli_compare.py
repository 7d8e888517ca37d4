"""`kdviewer compare TEACHER STUDENT DATA`: the table, the JSON, the report, and one-line errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from runtime_models import compare_pairs, quadrant_images, runtime_models  # noqa: F401

from kdviewer.cli import main

LEVELS = [0.9, 0.8, 0.7, 0.55, 0.3, 0.2, 0.1]
LABELS = [1, 1, 0, 1, 0, 0, 1]


@pytest.fixture()
def quad_npz(tmp_path):
    path = tmp_path / "quad.npz"
    np.savez(path, val_images=quadrant_images(LEVELS), val_labels=np.array(LABELS)[:, None],
             test_images=quadrant_images(LEVELS[:3]), test_labels=np.array(LABELS[:3])[:, None])
    return path


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_compare_on_labelled_data_matches_evaluate_and_writes_the_report(compare_pairs, quad_npz, tmp_path,  # noqa: F811
                                                                         capsys):
    teacher, student = (str(p.with_suffix(".onnx")) for p in compare_pairs["cls"])
    report = tmp_path / "report"
    out = _json(capsys, ["compare", teacher, student, str(quad_npz), "--split", "val", "--threads", "1", "--json",
                         "--report", str(report)])
    assert out["kind"] == "dataset" and out["n"] == 7 and out["agreement"]["top1_agreement"] == pytest.approx(6 / 7)
    assert out["disagreements"][0]["key"] == "val/3"
    for role, model in (("teacher", teacher), ("student", student)):
        evaluated = _json(capsys, ["evaluate", model, str(quad_npz), "--split", "val", "--threads", "1", "--json"])
        compared = out["metrics"][role]
        evaluated.pop("latency_ms_median"), compared.pop("latency_ms_median")
        assert compared == evaluated
    rows = list(csv.DictReader((report / "cases.csv").open(encoding="utf-8")))
    assert len(rows) == 7
    html = (report / "report.html").read_text(encoding="utf-8")
    assert '<table id="metrics">' in html and html.count('src="data:image/png;base64,') == 3  # ROC, 2 confusions
    assert "<svg" not in html

    assert main(["compare", teacher, student, str(quad_npz), "--split", "test", "--limit", "2", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "split test, 2 cases" in text and "top1_agreement" in text and "speed-up" in text


def test_compare_on_a_study_prints_the_numbers(compare_pairs, tmp_path, capsys):  # noqa: F811
    teacher, student = (str(p) for p in compare_pairs["seg"])
    img = np.tile(np.arange(100, dtype=np.uint8), (40, 1))
    Image.fromarray(img).save(tmp_path / "ramp.png")
    assert main(["compare", teacher, student, str(tmp_path / "ramp.png"), "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "segment on one study (slice 0)" in text
    dice_line = next(line for line in text.splitlines() if line.startswith("dice_per_label.bright"))
    assert float(dice_line.split()[-1]) == pytest.approx(72 / 86, abs=1e-4)
    out = _json(capsys, ["compare", teacher, student, str(tmp_path / "ramp.png"), "--json", "--threads", "1"])
    assert out["kind"] == "study" and out["metrics"]["disagreement_pixels"]["teacher_only"] == 40 * 14


@pytest.mark.parametrize("case", ["tasks", "layout", "missing_data", "missing_model", "unpaired"])
def test_bad_input_is_one_line_and_exit_2(case, compare_pairs, runtime_models, quad_npz, tmp_path,  # noqa: F811
                                          capsys):
    cls_t, cls_s = (str(p) for p in compare_pairs["cls"])
    seg_t, _ = (str(p) for p in compare_pairs["seg"])
    (tmp_path / "empty").mkdir()
    argv = {
        "tasks": [cls_t, seg_t, str(quad_npz)],
        "layout": [cls_t, cls_s, str(tmp_path / "empty")],
        "missing_data": [cls_t, cls_s, str(tmp_path / "nothing-here")],
        "missing_model": [cls_t, str(tmp_path / "gone.onnx"), str(quad_npz)],
        "unpaired": [seg_t, str(runtime_models["tiny-seg"]), str(quad_npz)],
    }[case]
    assert main(["compare", *argv, "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdviewer compare: error: ") and err.count("\n") == 1, err
    expected = {"tasks": "tasks differ", "layout": "fits no known", "missing_data": "no such file",
                "missing_model": "gone.json", "unpaired": "names no teacher"}[case]
    assert expected in err


def test_unpaired_comparison_runs_when_allowed_and_warns(compare_pairs, runtime_models, tmp_path, capsys):  # noqa: F811
    seg_t, _ = (str(p) for p in compare_pairs["seg"])
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "x.png")
    assert main(["compare", seg_t, str(runtime_models["tiny-seg"]), str(tmp_path / "x.png"), "--allow-unpaired",
                 "--threads", "1"]) == 0
    assert "warning: unpaired" in capsys.readouterr().err
