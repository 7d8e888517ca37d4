"""`kdviewer train` / `distill` / `export` as a user runs them: quick trials of the shipped recipes, bad recipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from kdviewer.cli import main
from kdviewer.modelcard import load_card

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "resources" / "recipes"

# Tiny nets and a few items per split: each train + distill pair takes seconds.
QUICK = {
    "pneumonia-cxr": ["teacher_net.arch=mobilenetv2", "teacher_net.width=0.25", "student_net.width=0.25",
                      "data.max_items=16", "data.input_size=[32, 32]", "train.batch_size=4", "distill.batch_size=4"],
    "retina-vessels": ["teacher_net.base=4", "teacher_net.depth=2", "student_net.base=4", "student_net.depth=2",
                       "data.max_items=4", "data.input_size=[64, 64]", "data.patch_size=[32, 32]",
                       "train.batch_size=2", "distill.batch_size=2"],
    "ct-denoise": ["teacher_net.channels=8", "student_net.channels=4", "student_net.depth=3", "data.max_items=4",
                   "data.input_size=[64, 64]", "data.patch_size=[32, 32]", "data.degrade.angles=60",
                   "train.batch_size=2", "distill.batch_size=2"],
    "ct-superres": ["teacher_net.channels=8", "teacher_net.num_blocks=2", "student_net.channels=4",
                    "data.max_items=4", "data.input_size=[64, 64]", "data.patch_size=[32, 32]",
                    "train.batch_size=2", "distill.batch_size=2"],
}


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def kdviewer(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "kdviewer", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300, check=False)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_quick_trial_train_then_distill_leaves_onnx_and_card(name: str, tmp_path: Path) -> None:
    recipe = str(RECIPES / f"{name}.toml")
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert main(["train", recipe, "--max-steps", "2", "--out", str(teacher), *sets(QUICK[name]),
                 "--progress", "json"]) == 0
    assert main(["distill", recipe, "--set", f"teacher={teacher}", "--max-steps", "2", "--out", str(student),
                 *sets(QUICK[name]), "--progress", "json"]) == 0
    cards = list(student.glob("*.json"))
    card = load_card(next(c for c in cards if c.name.endswith("-student.json")))
    assert card.teacher == f"{name}-teacher" and card.training["kd"]["method"] != "none"
    onnx_path = student / card.file["name"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = [2, *card.input["shape"][1:]]
    out = session.run(None, {"input": torch.rand(shape).numpy()})[0]
    assert out.shape[0] == 2


def test_json_progress_is_pure_json_lines_and_baseline_has_no_teacher(tmp_path: Path) -> None:
    result = kdviewer("distill", str(RECIPES / "pneumonia-cxr.toml"), "--set", "distill.method=none",
                      "--max-steps", "2", "--out", str(tmp_path / "base"), *sets(QUICK["pneumonia-cxr"]),
                      "--progress", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "export" in kinds and "epoch" in kinds
    card = load_card(tmp_path / "base" / "pneumonia-cxr-baseline.json")
    assert card.role == "baseline" and card.teacher is None


def test_export_command(tmp_path: Path) -> None:
    run = tmp_path / "t"
    assert main(["train", str(RECIPES / "pneumonia-cxr.toml"), "--max-steps", "1", "--out", str(run),
                 *sets(QUICK["pneumonia-cxr"]), "--progress", "json"]) == 0
    (run / "pneumonia-cxr-teacher.onnx").unlink()
    assert main(["export", str(run)]) == 0
    assert (run / "pneumonia-cxr-teacher.onnx").is_file()
    best = load_card(run / "pneumonia-cxr-teacher.json")
    assert main(["export", str(run), "--which", "last"]) == 0  # the last epoch's own metrics and count
    last = load_card(run / "pneumonia-cxr-teacher.json")
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert last.metrics["validation"] == pytest.approx(history[-1]["val"])
    assert last.training["epochs_done"] == best.training["epochs_done"] == history[-1]["epoch"] + 1


def bad(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = f"""
name = "bad"
task = "classify"
[data]
path = "{(RECIPES / '../../../shared/datasets/pneumoniamnist').resolve()}"
[teacher_net]
arch = "mobilenetv2"
[student_net]
arch = "mobilenetv2"
"""


@pytest.mark.parametrize(("edit", "named"), [
    (lambda t: t.replace('name = "bad"', ""), "name"),
    (lambda t: t.replace('task = "classify"', 'task = "classify"\nseed = "zero"'), "seed"),
    (lambda t: t.replace('arch = "mobilenetv2"', 'arch = "mobilenet_v9"', 1), "teacher_net.arch"),
])
def test_bad_recipe_fails_fast_with_one_line_and_exit_2(tmp_path: Path, edit, named: str) -> None:
    path = bad(tmp_path, edit(GOOD))
    result = kdviewer("train", str(path), "--max-steps", "1", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert named in lines[0] and str(path) in lines[0]


def test_data_folder_in_no_known_layout_fails_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    path = bad(tmp_path, GOOD.replace(str((RECIPES / '../../../shared/datasets/pneumoniamnist').resolve()),
                                      str(empty)))
    result = kdviewer("train", str(path), "--max-steps", "1", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr and str(empty) in lines[0]


def test_distill_without_teacher_and_resume_without_out_are_refused(tmp_path: Path) -> None:
    result = kdviewer("distill", str(RECIPES / "pneumonia-cxr.toml"), "--max-steps", "1",
                      "--out", str(tmp_path / "s"))
    assert result.returncode == 2 and "teacher" in result.stderr
    result = kdviewer("train", str(RECIPES / "pneumonia-cxr.toml"), "--resume")
    assert result.returncode == 2 and "--out" in result.stderr


def test_sigterm_leaves_a_resumable_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "kdviewer", "train", str(RECIPES / "pneumonia-cxr.toml"), "--out", str(run),
            *sets(QUICK["pneumonia-cxr"]), "--epochs", "100", "--progress", "json"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                          env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            if json.loads(line)["event"] == "step":
                proc.send_signal(signal.SIGTERM)
                break
        proc.stdout.read()
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 2
    assert len(err.strip().splitlines()) == 1 and "--resume" in err
    last = json.loads((run / "events.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "error" and last["resumable"] is True
    result = kdviewer("train", str(RECIPES / "pneumonia-cxr.toml"), "--out", str(run), "--resume",
                      *sets(QUICK["pneumonia-cxr"]), "--epochs", "1", "--progress", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["resumed_at_step"] >= 1
    assert (run / "pneumonia-cxr-teacher.onnx").is_file()


def test_training_commands_without_torch_say_what_to_install(monkeypatch, capsys):
    """The viewer's own install has no torch: a training command says so in one line, not 'internal error'."""
    import kdviewer.commands.ensemble as ensemble_command

    def no_torch(args):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(ensemble_command, "run", no_torch)
    assert main(["ensemble", "a", "b", "--out", "c"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdviewer ensemble: error: this command needs PyTorch") and "[train]" in err
    assert "\n" not in err

    def other_missing(args):
        raise ModuleNotFoundError("No module named 'foo'", name="foo")

    monkeypatch.setattr(ensemble_command, "run", other_missing)
    assert main(["ensemble", "a", "b", "--out", "c"]) == 1
    assert "internal error" in capsys.readouterr().err
