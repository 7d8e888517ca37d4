"""benchmarks/tune_postprocess.py: chosen on the training split only, scored with `kdviewer evaluate`'s own
Dice, one-line errors, and --write changes only the card's postprocess."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from kdviewer.runtime import load_model
from kdviewer.runtime.evaluate import evaluate_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import tune_postprocess  # noqa: E402

LIVER = REPO / "models" / "liver-ct-baseline.json"


@pytest.fixture()
def liver(tmp_path: Path, datasets_dir: Path) -> tuple[Path, Path]:
    data = datasets_dir / "ircadb-liver17"
    if not (LIVER.is_file() and data.is_dir()):
        pytest.skip("needs the shipped liver student and ../shared/datasets/ircadb-liver17")
    for suffix in (".json", ".onnx"):
        shutil.copy(LIVER.with_suffix(suffix), tmp_path / LIVER.with_suffix(suffix).name)
    return tmp_path / LIVER.name, data


def test_argmax_row_is_evaluates_dice_and_write_changes_only_postprocess(liver, capsys) -> None:
    card, data = liver
    before = json.loads(card.read_text())
    rc = tune_postprocess.main([str(card), "--data", str(data), "--thresholds", "0.5,0.9",
                                "--min-diameters", "0", "--threads", "1", "--write"])
    out = capsys.readouterr().out
    assert rc == 0, out
    argmax_row = next(line.split() for line in out.splitlines() if line.split()[:3] == ["none", "0.50", "0.0"])
    want = evaluate_model(load_model(card), data, split="val", threads=1)["dice"]
    assert argmax_row[3:5] == ["0.0", "0.0"] and float(argmax_row[7]) == pytest.approx(want, abs=1e-4)  # no gate
    after = json.loads(card.read_text())
    line = next(x for x in out.splitlines() if x.startswith("chosen "))
    chosen = json.loads(line[len("chosen "):].split(": train", 1)[0])
    assert after["postprocess"] == chosen and chosen != {}
    assert {k: v for k, v in after.items() if k != "postprocess"} == {
        k: v for k, v in before.items() if k != "postprocess"}
    load_model(card)  # the sha256 still matches: the ONNX file is untouched


def test_a_classifier_is_a_one_line_error(capsys) -> None:
    shipped = REPO / "models" / "pneumonia-cxr-student.json"
    if not shipped.is_file():
        pytest.skip("the shipped models are not in this checkout")
    assert tune_postprocess.main([str(shipped), "--data", "."]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "segmentation" in err
