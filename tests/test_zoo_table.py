"""benchmarks/zoo_table.py: the same metrics as evaluate_model, the KD gap by hand, one-line errors (exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from runtime_models import export_onnx, quadrant_images, write_card

from kdviewer.runtime import load_model
from kdviewer.runtime.evaluate import evaluate_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zoo_table  # noqa: E402

LEVELS = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]
LABELS = [1, 1, 0, 0, 0, 1]  # scored by s (upper-left minus lower-right): AUC 6/9; by -s: 3/9


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, Path]:
    """Two quadrant classifiers (AUC 6/9 and 3/9 on the data), a teacher and a student card, and the data."""
    import torch

    torch.set_num_threads(1)

    class Quadrants(torch.nn.Module):
        def __init__(self, sign: float) -> None:
            super().__init__()
            self.sign = sign

        def forward(self, x):
            s = x[:, :, :32, :32].mean(dim=(1, 2, 3)) - x[:, :, 32:, 32:].mean(dim=(1, 2, 3))
            return torch.stack([-s, s], dim=1) * 4 * self.sign

    folder = tmp_path_factory.mktemp("zoo")
    out = {}
    for name, sign, params, teacher in (("good", 1.0, 1000, None), ("bad", -1.0, 100, "good")):
        path = export_onnx(Quadrants(sign), folder / f"{name}.onnx", (1, 1, 64, 64), spatial_dynamic=False)
        card_path = write_card(path, name, "classify", input_shape=[None, 1, 64, 64], labels=["br", "ul"])
        card = json.loads(card_path.read_text(encoding="utf-8"))
        card["architecture"]["parameters"], card["teacher"] = params, teacher
        card_path.write_text(json.dumps(card), encoding="utf-8")
        out[name] = path
    np.savez(folder / "quad.npz", val_images=quadrant_images(LEVELS), val_labels=np.array(LABELS)[:, None],
             train_images=quadrant_images(LEVELS[:2]), train_labels=np.array([[1], [0]]))
    out["data"] = folder / "quad.npz"
    return out


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = zoo_table.main([*args, "--rounds", "1", "--threads", "1", "--markdown"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _rows(out: str) -> dict[str, dict[str, str]]:
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(head, cells, strict=True))
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}


def test_table_has_evaluate_metrics_and_the_gap_by_hand(zoo, capsys):
    code, out, _ = _run(capsys, "--data", str(zoo["data"]), "--split", "val", f"teacher={zoo['good']}",
                        f"kd={zoo['good']}", f"nokd={zoo['bad']}", f"int8={zoo['bad']}")
    assert code == 0
    rows = _rows(out)
    assert list(rows) == ["teacher", "kd", "nokd", "int8"]
    for label, name in (("teacher", "good"), ("nokd", "bad")):
        m = evaluate_model(load_model(zoo[name]), zoo["data"], "val", threads=1)
        for key, title in zoo_table.METRICS["classify"]:
            assert rows[label][title] == f"{m[key]:.4f}", (label, key)
    assert rows["teacher"]["AUC"] == f"{6 / 9:.4f}" and rows["nokd"]["AUC"] == f"{3 / 9:.4f}"
    gap = "KD gap closed (AUC)"
    assert (rows["teacher"][gap], rows["kd"][gap], rows["nokd"][gap], rows["int8"][gap]) == ("—", "100%", "—", "0%")
    assert rows["nokd"]["teacher/model params"] == "10.0×" and rows["teacher"]["speed-up"] == "1.0×"
    assert float(rows["kd"]["latency (ms)"]) > 0 and "6 items" in out


def test_gap_is_na_when_the_teacher_is_not_above_nokd(zoo, capsys):
    code, out, _ = _run(capsys, "--data", str(zoo["data"]), "--split", "val", f"teacher={zoo['bad']}",
                        f"kd={zoo['good']}", f"nokd={zoo['good']}")
    assert code == 0
    assert _rows(out)["kd"]["KD gap closed (AUC)"] == "n/a"


def test_teacher_found_by_the_students_card(zoo, capsys):
    code, out, _ = _run(capsys, "--data", str(zoo["data"]), "--split", "val", f"kd={zoo['bad']}",
                        f"big={zoo['good']}")
    assert code == 0 and "against big (good)" in out
    rows = _rows(out)  # no kd/nokd pair: no gap column
    assert rows["kd"]["teacher/model params"] == "10.0×" and "KD gap closed (AUC)" not in rows["kd"]


@pytest.mark.parametrize(("case", "says"), [("missing", "no such file"), ("tampered", "bytes, its card says"),
                                           ("split", "no split 'test'"), ("pair", "expected LABEL=MODEL"),
                                           ("task", "different tasks")])
def test_errors_are_one_line_and_exit_2(zoo, tmp_path, capsys, case, says):
    args = ["--data", str(zoo["data"]), "--split", "val", f"teacher={zoo['good']}"]
    if case == "missing":
        args[-1] = f"teacher={tmp_path / 'nope.onnx'}"
    elif case == "tampered":
        for suffix in (".onnx", ".json"):
            (tmp_path / f"good{suffix}").write_bytes(zoo["good"].with_suffix(suffix).read_bytes())
        with open(tmp_path / "good.onnx", "ab") as f:
            f.write(b"\0")
        args[-1] = f"teacher={tmp_path / 'good.onnx'}"
    elif case == "split":
        args[3] = "test"
    elif case == "pair":
        args.append("just-a-path.onnx")
    else:
        card = tmp_path / "seg.json"
        data = json.loads(zoo["good"].with_suffix(".json").read_text(encoding="utf-8"))
        data.update(task="segment", output={"kind": "logits", "labels": ["background", "x"]})
        (tmp_path / "good.onnx").write_bytes(zoo["good"].read_bytes())
        card.write_text(json.dumps({**data, "file": {**data["file"], "name": "good.onnx"}}), encoding="utf-8")
        args.append(f"seg={card}")
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("zoo_table: error: ") and says in err
