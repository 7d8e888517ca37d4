"""The Research panel's Compare tab offscreen: tiny teacher/student pairs on a study and on labelled folders."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gui_helpers import open_and_wait, pixel_point, wheel
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog
from runtime_models import compare_pairs, quadrant_images, runtime_models  # noqa: F401 - session fixtures

from kdviewer.cli import main
from kdviewer.gui.main_window import MainWindow
from kdviewer.gui.research_compare_logic import pair_entries
from kdviewer.gui.settings import file_settings
from kdviewer.runtime import scan_models

REPO = Path(__file__).resolve().parents[1]
PACSMAN_MR = REPO / "resources" / "samples" / "pacsman-mr" / "dicomseries"  # 128 MR slices of 128 × 128
LEVELS = [0.9, 0.8, 0.7, 0.55, 0.3, 0.2, 0.1]  # 0.55: the teacher says "ul", the student "br"
LABELS = [1, 1, 0, 1, 0, 0, 1]


class Recorder:
    """Stands in for the error dialogs: records (title, message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def __call__(self, parent, title: str, message: str) -> None:
        self.messages.append((title, message))


@pytest.fixture
def home(tmp_path, monkeypatch, compare_pairs, runtime_models) -> Path:  # noqa: F811 - fixtures
    """KDVIEWER_HOME whose models/ holds the cls, seg and den pairs and a student whose teacher is missing."""
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    for name in ("cls", "seg", "den"):
        for card in compare_pairs[name]:
            shutil.copy(card, models / card.name)
            shutil.copy(card.with_suffix(".onnx"), models / card.with_suffix(".onnx").name)
    orphan = json.loads(runtime_models["tiny-seg"].read_text(encoding="utf-8"))
    orphan.update(id="orphan-student", role="student", teacher="gone-teacher")
    orphan["file"]["name"] = "orphan-student.onnx"
    shutil.copy(runtime_models["tiny-seg"].with_suffix(".onnx"), models / "orphan-student.onnx")
    (models / "orphan-student.json").write_text(json.dumps(orphan), encoding="utf-8")
    monkeypatch.setenv("KDVIEWER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def errors() -> Recorder:
    return Recorder()


@pytest.fixture
def window(qtbot, tmp_path, home, errors) -> MainWindow:
    win = MainWindow(settings=file_settings(tmp_path / "settings.ini"), show_error=errors)
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.research_dock.wait()


@pytest.fixture
def quad_npz(tmp_path) -> Path:
    path = tmp_path / "quad.npz"
    np.savez(path, val_images=quadrant_images(LEVELS), val_labels=np.array(LABELS)[:, None])
    return path


def _compare(win: MainWindow):
    win.actions_by_name["toggle_research"].trigger()
    return win.research.compare


def test_pairs_list_comparable_pairs_and_the_others_with_a_reason(home):
    entries = {e.student_id: e for e in pair_entries(scan_models(user_dir=home / "models"))}
    assert entries["cls-student"].available and entries["cls-student"].teacher_id == "cls-teacher"
    assert entries["seg-student"].available
    assert not entries["orphan-student"].available
    assert "gone-teacher" in entries["orphan-student"].problem
    assert "cls-teacher" not in entries  # a teacher is no student


def test_research_panel_is_lazy_and_toggled_from_the_view_menu(qtbot, window):
    assert window.research_dock.built_panel() is None and not window.research_dock.isVisible()
    action = window.actions_by_name["toggle_research"]
    assert action.text() == "Research panel"
    action.trigger()
    qtbot.waitUntil(lambda: window.research_dock.built_panel() is not None, timeout=10000)
    panel = window.research_dock.built_panel()
    assert [panel.tabText(i) for i in range(panel.count())] == ["Compare", "Distil"]
    titles = [panel.compare.pair_combo.itemText(i) for i in range(panel.compare.pair_combo.count())]
    assert titles[-1].startswith("orphan-student") and "unavailable" in titles[-1]
    assert "gone-teacher" in panel.compare.pair_note.text()


def test_compare_on_the_open_study_shows_numbers_and_synchronised_views(qtbot, window, errors, tmp_path,
                                                                        monkeypatch):
    open_and_wait(qtbot, window, PACSMAN_MR)
    tab = _compare(window)
    tab.select_pair("seg-student")
    study = tab.study
    assert study.run_button.isEnabled()
    with qtbot.waitSignal(study.run_done, timeout=120000) as blocker:
        study.run_button.click()
    assert blocker.args == ["succeeded"], (study.status.text(), errors.messages)
    c = study.result
    assert c.slice_index is None and c.overlay.shape == window.state.volume.shape
    table = study.table.values()
    dice = c.metrics["dice_per_label"]["bright"]
    assert 0 < dice <= 1 and table["Dice teacher↔student: bright"][0] == f"{dice:.4g}"
    assert table["latency (ms)"] == (f"{c.teacher.latency_ms:.2f}", f"{c.student.latency_ms:.2f}")
    assert table["model"] == ("seg-teacher", "seg-student")
    assert "speed-up" in " ".join(table) and table["file size"][0].endswith("kB")
    # the disagreement map is on both views; the legend names the colours
    left, right = study.views.views
    assert study.show_combo.currentText() == "Disagreement" and "teacher only" in study.legend.text()
    dmap, t_mask, s_mask = c.overlay.array, c.teacher_output.array, c.student_output.array
    for view, own in ((left, t_mask), (right, s_mask)):  # each side: the disagreement, and its agreed mask
        shown = view.state.overlay.array
        assert (shown[dmap > 0] == dmap[dmap > 0]).all()
        assert set(np.unique(shown[(dmap == 0) & (own > 0)])) == {4} and not shown[(dmap == 0) & (own == 0)].any()
    study.show_combo.setCurrentIndex(0)
    assert left.state.overlay is c.teacher_output and right.state.overlay is c.student_output

    # the views move together: slice (wheel), window (state), zoom (Ctrl+wheel) and pan
    before = left.state.slice_index("axial")
    wheel(left, 3)
    assert left.state.slice_index("axial") == right.state.slice_index("axial") == before + 3
    wheel(right, -5)
    assert left.state.slice_index("axial") == right.state.slice_index("axial") == before - 2
    right.state.set_window(300.0, 123.0)
    assert left.state.window == right.state.window
    range_before = left.box.viewRange()
    wheel(right, 2, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: left.box.viewRange() != range_before)
    assert np.allclose(left.box.viewRange(), right.box.viewRange())
    left.box.translateBy(x=5.0, y=-3.0)
    assert np.allclose(left.box.viewRange(), right.box.viewRange())
    assert pixel_point(left, 10, 10) == pixel_point(right, 10, 10)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "study-report"))
    assert study.export_button.isEnabled(), study.status.text()
    study.export_button.click()
    html = (tmp_path / "study-report" / "report.html").read_text(encoding="utf-8")
    assert 'alt="views"' in html and "dice_per_label.bright" in html
    row, = csv.DictReader((tmp_path / "study-report" / "cases.csv").open(encoding="utf-8"))
    assert float(row["dice_per_label.bright"]) == pytest.approx(dice)
    assert errors.messages == []


def test_reference_mask_colours_by_who_is_right_and_cancel_keeps_nothing(qtbot, window, errors, tmp_path,
                                                                          monkeypatch):
    from kdviewer.study import save_volume

    volume = open_and_wait(qtbot, window, PACSMAN_MR)
    tab = _compare(window)
    tab.select_pair("seg-student")
    study = tab.study
    study.slice_only.setChecked(True)
    ref = volume.with_array((volume.array > np.percentile(volume.array, 60)).astype(np.uint8))
    save_volume(ref, tmp_path / "ref.nii.gz")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(tmp_path / "ref.nii.gz"), ""))
    study.reference_button.click()
    assert study.reference is not None
    with qtbot.waitSignal(study.run_done, timeout=60000) as blocker:
        study.run_button.click()
    assert blocker.args == ["succeeded"], (study.status.text(), errors.messages)
    c = study.result
    assert c.slice_index is not None and "dice_teacher_reference" in c.metrics
    assert "only the student right" in study.legend.text()
    assert "Dice vs reference: bright" in study.table.values()

    with qtbot.waitSignal(study.run_done, timeout=60000) as blocker:
        study.run_button.click()
        study.cancel_button.click()
    assert blocker.args == ["cancelled"] and study.result is c  # the old result stays, nothing new


def test_evaluate_on_a_labelled_folder_matches_kdviewer_evaluate(qtbot, window, errors, quad_npz, tmp_path,
                                                                 monkeypatch, capsys, home):
    tab = _compare(window)
    tab.select_pair("cls-student")
    ds = tab.dataset
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(quad_npz), ""))
    ds.choose_file_button.click()
    assert "val: 7 images" in ds.preview_label.text() and ds.split.currentText() == "val"
    with qtbot.waitSignal(ds.run_done, timeout=60000) as blocker:
        ds.run_button.click()
    assert blocker.args == ["succeeded"], (ds.status.text(), errors.messages)
    table = ds.table.values()
    models = home / "models"
    for column, model in ((0, "cls-teacher"), (1, "cls-student")):
        assert main(["evaluate", str(models / f"{model}.onnx"), str(quad_npz), "--json"]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        for key in ("accuracy", "auc", "sensitivity", "specificity", "n"):
            if key in evaluated:
                value = evaluated[key]
                shown = table[key][column]
                assert shown == (f"{value:,}" if isinstance(value, int) else f"{value:.4g}"), key
    assert table["accuracy"][0] != table["accuracy"][1]
    assert [name for name, _ in ds.plots] == ["roc_ul", "confusion_teacher", "confusion_student"]
    first = ds.cases.item(0)
    assert first.text().startswith("val/3") and "teacher ul" in first.text() and "student br" in first.text()

    # a case inside an .npz opens as a new series of the session
    ds.cases.itemClicked.emit(first)
    assert window.state.volume.shape == (1, 28, 28) and "val/3" in window.state.volume.info.description

    # export: report.html with the plots as PNG, and one CSV row per case
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "report"))
    ds.export_button.click()
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 3 and "<svg" not in html
    rows = list(csv.DictReader((tmp_path / "report" / "cases.csv").open(encoding="utf-8")))
    assert len(rows) == 7 and rows[3]["key"] == "val/3"
    assert errors.messages == []


def test_a_bad_folder_shows_its_error_and_the_panel_keeps_working(qtbot, window, errors, quad_npz, tmp_path,
                                                                  monkeypatch):
    tab = _compare(window)
    tab.select_pair("cls-student")
    ds = tab.dataset
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(empty))
    ds.choose_button.click()
    assert "fits no known" in ds.preview_label.text() and not ds.run_button.isEnabled()
    assert errors.messages == []  # in the panel, no dialog
    ds.set_folder(quad_npz)
    assert ds.run_button.isEnabled() and "Found" in ds.preview_label.text()
    with qtbot.waitSignal(ds.run_done, timeout=60000) as blocker:
        ds.run_button.click()
    assert blocker.args == ["succeeded"]
    assert ds.table.values()["n"] == ("7", "7")


def test_segmentation_folder_draws_the_dice_scatter_and_opens_a_case_file(qtbot, window, errors, tmp_path,
                                                                          monkeypatch):
    from PIL import Image

    data = tmp_path / "pairs"
    data.mkdir()
    ramp = np.tile(np.arange(100, dtype=np.uint8), (40, 1))
    mask = np.zeros((40, 100), np.uint8)
    mask[:, 57:] = 255
    for name in ("a", "b"):
        Image.fromarray(ramp).save(data / f"{name}.png")
        Image.fromarray(mask).save(data / f"{name}_mask.png")
    tab = _compare(window)
    tab.select_pair("seg-student")
    ds = tab.dataset
    assert ds.set_folder(data)
    with qtbot.waitSignal(ds.run_done, timeout=60000) as blocker:
        ds.run_button.click()
    assert blocker.args == ["succeeded"], (ds.status.text(), errors.messages)
    assert [name for name, _ in ds.plots] == ["dice_scatter"]
    with qtbot.waitSignal(window.volume_loaded, timeout=20000):
        ds.cases.itemClicked.emit(ds.cases.item(0))  # a file of its own: opened as a study
    assert window.state.volume.shape == (1, 40, 100)


def test_classification_shows_both_probability_sets_and_enhancement_the_difference(qtbot, window, errors):
    from kdviewer.study.volume import SeriesInfo, Volume

    tab = _compare(window)
    window.show_case(Volume(quadrant_images([0.55]).astype(np.float32)))  # the teacher says "ul", the student "br"
    tab.select_pair("cls-student")
    study = tab.study
    with qtbot.waitSignal(study.run_done, timeout=60000) as blocker:
        study.run_button.click()
    assert blocker.args == ["succeeded"], (study.status.text(), errors.messages)
    table = study.table.values()
    m = study.result.metrics
    assert table["top-1 label"] == ("ul", "br") and table["top-1 agreement"][0] == "no"
    assert table["p(ul)"] == (f"{m['teacher_probabilities']['ul']:.4g}", f"{m['student_probabilities']['ul']:.4g}")
    assert table["KL(teacher ‖ student), nats"][0] == f"{m['kl_teacher_student']:.4g}"
    assert study.plot is not None and study.bars_box.isVisible()

    rng = np.random.default_rng(0)
    ct = Volume((rng.random((3, 40, 40)) * 800 - 400).astype(np.int16), spacing=(0.7, 0.7, 2.5),
                info=SeriesInfo(modality="CT", units="HU", description="noise"))
    window.show_case(ct)
    tab.select_pair("den-student")
    with qtbot.waitSignal(study.run_done, timeout=60000) as blocker:
        study.run_button.click()
    assert blocker.args == ["succeeded"], (study.status.text(), errors.messages)
    c = study.result
    assert study.table.values()["PSNR student vs teacher (dB)"][0] == f"{c.metrics['psnr_db']:.4g}"
    left, right = study.views.views
    assert left.state.volume is c.teacher_output and right.state.volume is c.student_output
    study.show_combo.setCurrentIndex(1)  # the difference image, on its own window
    assert right.state.volume is c.overlay and left.state.volume is c.teacher_output
    assert right.state.window.center == 0.5 and left.state.window != right.state.window
    wheel(left, 1)
    assert left.state.slice_index("axial") == right.state.slice_index("axial")
    assert not study.bars_box.isVisible() and errors.messages == []
