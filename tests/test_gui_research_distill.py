"""The research panel's Distil tab offscreen: a real tiny distillation (teacher trained first) started from the
form, followed again by a re-created tab, cancelled mid-run and resumed, installed and run on a study; a bad
data folder; the job list reopened."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from kdviewer.gui import distil_logic as logic
from kdviewer.gui.research_distill import DistilTab
from kdviewer.gui.settings import file_settings
from kdviewer.jobs import JobRecord, JobState
from kdviewer.runtime import classify_image, scan_models

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups (kdviewer.jobs tests)")

# Tiny nets and few steps, so that train + distil + resume take seconds on two cores.
QUICK = ("data.input_size=[28, 28]; train.batch_size=8; train.max_steps=2; distill.batch_size=4; "
         "export.int8=false")


def write_tiny_medmnist(folder: Path) -> Path:
    """A MedMNIST-style .npz of 28x28 images of two easy classes: a bright square (1) or a bright bar (0)."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        labels = (np.arange(n) % 2).astype(np.uint8)[:, None]
        for image, label in zip(images, labels[:, 0], strict=True):
            if label:
                image[6:22, 6:22] += 180
            else:
                image[:, 12:16] += 180
        return images, labels

    folder.mkdir(parents=True)
    (train_x, train_y), (val_x, val_y) = split(40), split(10)
    np.savez(folder / "tinymnist.npz", train_images=train_x, train_labels=train_y, val_images=val_x,
             val_labels=val_y)
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KDVIEWER_HOME", str(home))
    return home


def make_tab(qtbot, tmp_path: Path, home: Path) -> DistilTab:
    tab = DistilTab(settings=file_settings(tmp_path / "settings.ini"), data_dir=home,
                    user_models_dir=home / "models")
    qtbot.addWidget(tab)
    tab.resize(1200, 900)
    tab.show()
    return tab


def choose_data(qtbot, tab: DistilTab, folder: Path) -> None:
    tab.ask_folder = lambda title, start: str(folder)
    tab.choose_data_folder()
    qtbot.waitUntil(lambda: tab.preview is not None, timeout=10000)


def test_distil_from_the_tab_cancel_resume_install_and_run(qtbot, tmp_path: Path, home: Path) -> None:
    data = write_tiny_medmnist(tmp_path / "tiny")
    tab = make_tab(qtbot, tmp_path, home)
    choose_data(qtbot, tab, data)
    assert tab.preview.ok and "medmnist" in tab.preview_label.text() and "train: 40 images" in tab.preview_label.text()
    assert tab.task_combo.currentText() == "classify"   # from the data's task hint
    tab.select_teacher(logic.TEACHER_TRAIN)
    tab.teacher_arch_combo.setCurrentText("resnet18")
    tab.teacher_epochs_spin.setValue(1)
    tab.student_combo.setCurrentText("mobilenetv2")
    tab.width_spin.setValue(0.35)
    tab.method_combo.setCurrentIndex(tab.method_combo.findData("hinton"))
    tab.temperature_spin.setValue(4.0)
    tab.epochs_spin.setValue(3)
    tab.name_edit.setText("tiny")
    tab.out_edit.setText(str(tmp_path / "runs" / "tiny"))
    tab.extra_edit.setText(QUICK)
    installed: list[str] = []
    tab.model_installed.connect(installed.append)

    train_job = tab.start()
    assert train_job is not None, tab.form_error.text()
    assert train_job.argv[0] == "train" and tab.timer.interval() == 250
    recipe = tomllib.loads((tmp_path / "runs" / "tiny" / "recipe.toml").read_text())
    assert recipe["distill"]["method"] == "hinton" and recipe["student_net"]["width"] == 0.35
    assert recipe["train"]["max_steps"] == 2 and recipe["teacher"] == str(tmp_path / "runs" / "tiny" / "teacher")

    # The teacher finishes, is installed, and the distillation starts on its own; cancel it mid-run.
    def distilling():
        return next((j for j in tab.jobs.values() if j.argv[0] == "distill"), None)
    qtbot.waitUntil(lambda: distilling() is not None, timeout=60000)
    assert installed == ["tiny-teacher"]
    job = distilling()

    # The viewer closes and opens again while it runs: the new tab follows the same job (detached process).
    tab.close()
    tab = make_tab(qtbot, tmp_path, home)
    tab.model_installed.connect(installed.append)
    assert job.id in tab.jobs and tab.timer.isActive()
    qtbot.waitUntil(lambda: tab.curves.step_curve.xData is not None and len(tab.curves.step_curve.xData) >= 1,
                    timeout=30000)
    assert tab._selected == job.id and "distill" in tab.status_label.text()
    job = tab.jobs[job.id]
    tab.cancel_button.click()
    qtbot.waitUntil(lambda: job.id not in tab.jobs, timeout=30000)   # polled until final
    student_dir = tmp_path / "runs" / "tiny" / "student"
    assert job.state is JobState.CANCELLED and (student_dir / "last.pt").is_file()
    assert not list(student_dir.glob("*.onnx"))
    assert tab.resume_button.isEnabled()

    resumed = tab.resume_selected()
    assert resumed is not None and resumed.resumed_from == job.id
    with qtbot.waitSignal(tab.job_finished, timeout=60000) as finished:
        pass
    assert finished.args == [resumed.id, "done"], tab.log_view.toPlainText()
    assert {"best.pt", "tiny-student.onnx", "tiny-student.json"} <= {p.name for p in student_dir.iterdir()}
    events = [json.loads(line) for line in (student_dir / "events.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_at_step"] > 0           # the resume shows
    steps = sorted({e["step"] for e in events if e["event"] == "step"})
    assert steps == list(range(1, starts[0]["total_steps"] + 1))            # no step lost, none twice needed
    assert installed == ["tiny-teacher", "tiny-student"]
    assert tab.curves.metric_curves and "done" in tab.status_label.text()

    # Installed: the registry lists the student and it runs on a study.
    student = scan_models(user_dir=home / "models").get("tiny-student")
    assert student.origin == "user" and student.card.teacher == "tiny-teacher"
    square = np.load(data / "tinymnist.npz")["val_images"][1].astype(np.float32)   # label 1
    result = classify_image(student, square)
    assert result.labels == ("0", "1") and np.isclose(sum(result.probabilities), 1.0)

    # The job list survives closing and reopening the tab: the same jobs, the resumed run shown once.
    rows = [(r.name, r.state) for r in logic.job_rows(tab.history.list())]
    tab.close()
    reopened = make_tab(qtbot, tmp_path, home)
    table = [(reopened.job_table.item(i, 0).text(), reopened.job_table.item(i, 1).text())
             for i in range(reopened.job_table.rowCount())]
    assert table == rows == [("tiny", "done (resumed)"), ("tiny · teacher", "done")]
    assert not reopened.jobs and "tiny-teacher" in reopened.teacher_combo.itemText(1)
    reopened.job_table.selectRow(0)
    assert "exported" in reopened.log_view.toPlainText() and reopened.curves.metric_curves


def test_bad_folder_shows_its_error_and_the_tab_keeps_working(qtbot, tmp_path: Path, home: Path) -> None:
    bad = tmp_path / "notes"
    bad.mkdir()
    (bad / "readme.txt").write_text("no images here")
    tab = make_tab(qtbot, tmp_path, home)
    choose_data(qtbot, tab, bad)
    assert not tab.preview.ok and "fits no known data-set layout" in tab.preview_label.text()
    assert tab.start() is None and tab.form_error.text().startswith("data folder:")
    assert not tab.jobs and tab.job_table.rowCount() == 0

    good = write_tiny_medmnist(tmp_path / "tiny")
    choose_data(qtbot, tab, good)
    assert tab.preview.ok and tab.form_error.text() == ""
    tab.method_combo.setCurrentIndex(tab.method_combo.findData("dkd"))
    tab.extra_edit.setText("distill.batch_size=16; data.input_size=[28, 28]")
    saved = tmp_path / "kept.toml"
    tab.ask_save_path = lambda title, start: str(saved)
    tab.save_button.click()
    assert "recipe saved" in tab.form_error.text()
    from kdviewer.distill.recipe import load_recipe  # the tests may use the engine: the saved recipe loads

    recipe = load_recipe(saved)
    assert (recipe.task, recipe.distill.method, recipe.distill.batch_size) == ("classify", "dkd", 16)
    assert recipe.data_path() == good.resolve() and recipe.data.input_size == (28, 28)
    tab.extra_edit.setText("not an override")
    assert tab.start() is None and "extra settings" in tab.form_error.text()


def test_a_stalled_run_shows_its_warning_in_the_status_line(qtbot, tmp_path: Path, home: Path) -> None:
    """The trainer's stall warning (Dice 0 from the start) reaches the job's status line, escaped, in short."""
    from types import SimpleNamespace

    from kdviewer.jobs import Progress

    tab = make_tab(qtbot, tmp_path, home)
    progress = Progress(stage="distill", epochs=50, epoch=4,
                        warning="validation Dice has been 0 for the first 5 validations: <try> another seed")
    job = SimpleNamespace(id="j1", name="nodules", argv=["distill"], progress=progress, state=JobState.RUNNING,
                          error_message=None)
    tab._show_status(job)
    text = tab.status_label.text()
    assert "warning: validation Dice has been 0 for the first 5 validations (see the log)" in text
    assert "<try>" not in text
    tab._show_status(SimpleNamespace(**{**vars(job), "progress": Progress(stage="distill")}))
    assert "warning" not in tab.status_label.text()


def test_logic_matches_the_engine_and_plans_stages(tmp_path: Path) -> None:
    from kdviewer.distill.recipe import METHODS_FOR_TASK

    assert logic.METHODS_FOR_TASK == METHODS_FOR_TASK
    form = logic.form_defaults("segment", str(tmp_path / "drive"), tmp_path / "runs")
    assert form.method in ("pixel", "cwd") and form.student_arch in logic.STUDENT_ARCHS["segment"]
    plan = logic.plan_for(form)
    assert [s.stage for s in plan.stages] == ["train", "distill"]
    train, distill = plan.stages
    record = JobRecord(id="a", name=train.name, argv=train.argv, run_dir=train.run_dir, started="2026-01-01T00:00:00",
                       state="running")
    assert logic.next_stage(plan, []) == train
    assert logic.next_stage(plan, [record]) is None
    assert logic.next_stage(plan, [JobRecord(**{**record.__dict__, "state": "done"})]) == distill
    baseline = logic.form_with(form, method="none")
    assert [s.stage for s in logic.plan_for(baseline).stages] == ["distill"]
    assert logic.recipe_dict(baseline)["teacher"] == ""
    assert logic.eta_text(42) == "ETA 42 s" and logic.eta_text(3720) == "ETA 1 h 02 min"


def test_the_tab_never_imports_torch_or_the_engine() -> None:
    import subprocess

    code = ("import sys\nfrom kdviewer.gui.research_distill import DistilTab\n"
            "bad = [m for m in ('torch', 'kdviewer.distill') if m in sys.modules]\nassert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_form_keeps_the_float32_schedule_only_for_the_epochs_left_as_shipped(tmp_path: Path) -> None:
    from kdviewer.distill.recipe import load_recipe

    form = logic.form_defaults("segment", str(tmp_path / "drive"), tmp_path / "runs")
    shipped = tomllib.loads((logic.RECIPES_DIR / "retina-vessels.toml").read_text(encoding="utf-8"))
    fallback = shipped["without_bf16"]
    assert (form.teacher_epochs, form.epochs) == (shipped["train"]["epochs"], shipped["distill"]["epochs"])
    assert logic.recipe_dict(form)["without_bf16"] == fallback  # the float32 schedule applies where it must
    note = logic.float32_epochs_note("segment")
    assert f"teacher {fallback['train']['epochs']} and student {fallback['distill']['epochs']} epochs" in note
    changed = logic.recipe_dict(logic.form_with(form, epochs=form.epochs + 1))
    assert changed["without_bf16"]["distill"] == {} and changed["without_bf16"]["train"] == fallback["train"]
    path = tmp_path / "r.toml"
    path.write_text(tomli_w.dumps(changed), encoding="utf-8")
    assert load_recipe(path).without_bf16["train"] == fallback["train"]  # the engine takes the form's recipe
    assert logic.float32_epochs_note("denoise") == ""  # a float32 recipe has no second schedule
    extra = logic.recipe_dict(logic.form_with(form, overrides=("train.epochs=7", "distill.lr=0.001")))
    assert extra["train"]["epochs"] == 7 and extra["without_bf16"]["train"] == {}  # extra settings win too
    assert extra["without_bf16"]["distill"] == fallback["distill"]
