"""The AI panel offscreen: list, run, cancel and export the tiny test models; the tags panel's full header."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from gui_helpers import IRCAD_DICOM, drag, open_and_wait, wheel, widget_point
from PySide6.QtWidgets import QFileDialog
from runtime_models import runtime_models, write_card  # noqa: F401 - session fixture

from kdviewer.gui import ai_logic
from kdviewer.gui.ai_logic import AiPanelLogic, model_entries
from kdviewer.gui.main_window import MainWindow
from kdviewer.gui.settings import file_settings
from kdviewer.runtime import scan_models
from kdviewer.study import load_volume
from kdviewer.study.dicom_tags import filter_rows, read_header_rows

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "samples"
PACSMAN_MR = SAMPLES / "pacsman-mr" / "dicomseries"  # 128 MR slices of 128 × 128
CHEST_XRAY = SAMPLES / "chest-xray" / "clinical_sample_01.png"
CHEST_CT = SAMPLES / "chest-ct-lidc" / "dicom"  # 17 CT slices of 512 × 512
FUNDUS = SAMPLES / "fundus" / "retina.jpg"  # a colour fundus photograph, read as modality OT


class Recorder:
    """Stands in for the error / warning dialogs: records (title, message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def __call__(self, parent, title: str, message: str) -> None:
        self.messages.append((title, message))


@pytest.fixture
def home(tmp_path, monkeypatch, runtime_models) -> Path:  # noqa: F811 - fixture
    """A temporary KDVIEWER_HOME whose models/ holds the tiny models, plus one unloadable and one tampered."""
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    for card in runtime_models.values():
        shutil.copy(card, models / card.name)
        shutil.copy(card.with_suffix(".onnx"), models / card.with_suffix(".onnx").name)
    broken = models / "broken-seg.onnx"  # matches its card, but is no ONNX graph
    broken.write_bytes(b"this is not an onnx model" * 10)
    write_card(broken, "broken-seg", "segment", input_shape=[None, 1, 32, 32], labels=["background", "x"],
               modalities=["MR", "CT"])
    tampered = models / "tampered-cls.onnx"
    shutil.copy(runtime_models["tiny-cls"].with_suffix(".onnx"), tampered)
    write_card(tampered, "tampered-cls", "classify", input_shape=[None, 1, 64, 64], labels=["a", "b"])
    with tampered.open("ab") as f:  # changed after its card was written
        f.write(b"\0")
    monkeypatch.setenv("KDVIEWER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def errors() -> Recorder:
    return Recorder()


@pytest.fixture
def window(qtbot, tmp_path, home, errors) -> MainWindow:
    win = MainWindow(settings=file_settings(tmp_path / "settings.ini"), show_error=errors)
    win.ai.show_warning = errors
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.ai.wait()


def run_model(qtbot, win: MainWindow, model_id: str, expect: str = "succeeded", timeout_ms: int = 60000) -> None:
    """Select `model_id` in the panel, press Run, wait until the panel reports `expect`."""
    win.ai.select_model(model_id)
    assert win.ai.run_button.isEnabled()
    with qtbot.waitSignal(win.ai.run_done, timeout=timeout_ms) as blocker:
        win.ai.run_button.click()
    assert blocker.args == [expect], win.ai.status.text()


def listed(win: MainWindow) -> dict[str, object]:
    return {e.id: e for e in win.ai.entries}


# -- the logic, without Qt ---------------------------------------------------------------------------
def test_model_list_follows_modality_and_lists_refused_models(home):
    scan = scan_models(user_dir=home / "models")
    mr = load_volume(PACSMAN_MR)
    fitting = {e.id: e for e in model_entries(scan, mr)}
    assert {"tiny-seg", "tiny-sr2", "broken-seg"} <= set(fitting)
    assert "tiny-cls" not in fitting and "tiny-denoise" not in fitting  # X-ray / CT models
    refused = fitting["tampered-cls"]
    assert not refused.available and ("sha256" in refused.problem or "bytes" in refused.problem)
    everything = {e.id: e for e in model_entries(scan, mr, show_all=True)}
    assert not everything["tiny-cls"].fits and "CR, DX, OT" in everything["tiny-cls"].problem
    html = ai_logic.card_html(everything["tiny-seg"])
    for text in ("Segmentation", "CC0", "Research use only. Not for diagnosis.", "made by the tests", "Metrics"):
        assert text in html


def test_a_new_series_selects_its_likeliest_model(qtbot, window):
    win = window
    open_and_wait(qtbot, win, PACSMAN_MR)
    win.ai.select_model("brain-tumor-mri-teacher")
    win.ai.show_all.setChecked(True)  # the same series listed again: the user's choice is kept
    assert win.ai.selected_entry().id == "brain-tumor-mri-teacher"
    win.ai.show_all.setChecked(False)
    open_and_wait(qtbot, win, FUNDUS)  # the brain models still fit (OT), but a new series gets its likeliest
    assert win.ai.selected_entry().id == "retina-vessels-student"
    card = win.ai.card.toPlainText()
    assert "retina-vessels-student" in card and "the four averaged" in card  # the shipped card's flip averaging
    assert win.ai.results_area.isHidden()  # no result yet: the card has the room


# -- the panel ------------------------------------------------------------------------------------
def test_segment_shows_overlay_legend_and_jumps_to_the_lesion(qtbot, window, errors, tmp_path, monkeypatch):
    win = window
    open_and_wait(qtbot, win, PACSMAN_MR)
    entries = listed(win)
    assert "tiny-seg" in entries and "tiny-cls" not in entries
    assert not entries["tampered-cls"].available
    win.ai.select_model("tiny-seg")
    assert "Research use only. Not for diagnosis." in win.ai.card.toPlainText()
    assert win.ai.results_area.isHidden()
    run_model(qtbot, win, "tiny-seg")
    assert "ms" in win.ai.status.text()  # the latency
    assert not win.ai.results_area.isHidden()
    labels = win.state.overlay
    assert labels is not None and labels.same_grid(win.state.volume) and labels.array.max() == 1
    axial = win.grid.views["axial"]
    assert axial.labels.isVisible()
    note = win.ai.segmentation.note  # the card's limits and intended use stay in view under the result
    assert note.isVisible() and "made by the tests" in note.limits.text()
    assert note.use.text() == "Research use only. Not for diagnosis." and note.use.isVisible()
    (name, volume_text), = win.ai.segmentation.legend_texts()
    expected_ml = (labels.array == 1).sum() * np.prod(labels.spacing) / 1000
    assert name == "bright" and volume_text == f"{expected_ml:.2f} mL"
    # opacity and outline reach the views
    win.ai.segmentation.opacity.setValue(80)
    assert win.state.overlay_opacity == pytest.approx(0.8) and axial.labels.opacity() == pytest.approx(0.8)
    filled = int((axial.labels.image > 0).sum())
    win.ai.segmentation.outline_check.setChecked(True)
    assert 0 < int((axial.labels.image > 0).sum()) < filled
    # jump to the largest lesion: the crosshair lands on a labelled voxel
    z, y, x = win.ai.jump_to_largest_lesion()
    assert labels.array[z, y, x] == 1
    assert win.state.geometry.original_index_xyz(win.state.cursor) == (x, y, z)
    # exports: NIfTI and DICOM SEG (the source is DICOM)
    out = {"nii": tmp_path / "mask.nii.gz", "seg": tmp_path / "mask-seg.dcm"}
    answers = iter([str(out["nii"]), str(out["seg"])])
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (next(answers), ""))
    assert win.ai.segmentation.export_seg.isEnabled()
    win.ai.segmentation.export_nifti.click()
    win.ai.segmentation.export_seg.click()
    assert errors.messages == []
    np.testing.assert_array_equal(load_volume(out["nii"]).array, labels.array)
    seg = pydicom.dcmread(out["seg"])
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == win.state.volume.info.uid


def test_classify_the_chest_xray(qtbot, window, tmp_path, monkeypatch, errors):
    win = window
    open_and_wait(qtbot, win, CHEST_XRAY)
    assert "tiny-cls" in listed(win) and "tiny-seg" not in listed(win)
    run_model(qtbot, win, "tiny-cls")
    shown = win.ai.classification.shown
    assert [label for label, _ in shown] == ["normal", "pneumonia"]
    assert sum(p for _, p in shown) == pytest.approx(1.0, abs=1e-5)
    top = max(shown, key=lambda lp: lp[1])[0]
    axial = win.grid.views["axial"]
    assert axial.ai_text.isVisible() and top in axial.ai_text.text()
    assert axial.heat.isVisible() and axial.heat.image.shape == win.state.plane("axial").shape[:2]
    win.ai.classification.saliency_check.setChecked(False)  # the toggle
    assert not axial.heat.isVisible()
    path = tmp_path / "cls.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    win.ai.classification.export_json.click()
    data = json.loads(path.read_text())
    assert data["label"] == top and sum(data["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert errors.messages == []


LONG_LIMITS = [
    "one hospital only",
    "28x28 inputs: " + "fine detail is gone, " * 6 + "and adult films were never seen",
    "simulated nodules and noise",
    "data licence CC BY-NC 4.0: no commercial use",
    "validated on one split; " * 8 + "no test split",
]


def add_classifier(home: Path, model_id: str, limits: list[str]) -> None:
    """Another copy of tiny-cls in the user's models, with its own limits."""
    onnx = home / "models" / f"{model_id}.onnx"
    shutil.copy(home / "models" / "tiny-cls.onnx", onnx)
    card = write_card(onnx, model_id, "classify", input_shape=[None, 1, 64, 64], labels=["normal", "pneumonia"],
                      modalities=["CR", "DX", "OT"])
    data = json.loads(card.read_text(encoding="utf-8"))
    data["limits"] = limits
    card.write_text(json.dumps(data), encoding="utf-8")


def test_result_shows_the_limits_of_the_model_that_made_it(qtbot, window, home, errors):
    add_classifier(home, "long-limits-cls", LONG_LIMITS)
    win = window
    open_and_wait(qtbot, win, CHEST_XRAY)
    run_model(qtbot, win, "tiny-cls")
    note = win.ai.classification.note
    assert note.isVisible() and note.use.isVisible() and note.limits.isVisible()
    assert note.use.text() == "Research use only. Not for diagnosis."
    assert note.shown_limits() == ["made by the tests"] and "made by the tests" in note.limits.text()
    assert "none (test model)" in note.limits.text() and "CC0" in note.limits.text()
    assert not note.toggle.isVisible() and not note.misfit.isVisible()  # short, and made for this series
    # selecting another model shows its card; the result keeps the caveat of the model that made it
    win.ai.select_model("long-limits-cls")
    assert "simulated nodules and noise" in win.ai.card.toPlainText()
    assert "made by the tests" in note.limits.text()
    # running it: the caveat changes with the result
    run_model(qtbot, win, "long-limits-cls")
    assert "made by the tests" not in note.limits.text() and "(long-limits-cls)" in win.ai.classification.headline.text()
    shown = note.shown_limits()  # long: the first three, shortened, and a toggle for all of them
    assert len(shown) == 3 and shown[0] == "one hospital only" and shown[1].endswith("…")
    assert "simulated nodules and noise" in note.limits.text()
    assert note.toggle.isVisible() and note.toggle.text() == "Show all 5 limits"
    for limit in LONG_LIMITS:  # the full text is in the tooltip
        assert limit.strip() in note.full_text() and limit.strip() in note.limits.toolTip()
    note.toggle.click()
    assert note.shown_limits() == [limit.strip() for limit in LONG_LIMITS]
    assert "no commercial use" in note.limits.text() and note.toggle.text() == "Show fewer"
    # the result box fits the dock: nothing wider than the panel's scroll area
    box = win.ai.classification
    assert box.width() <= box.parentWidget().parentWidget().width() and note.limits.width() <= box.width()
    # a model not made for the series says so under its result too
    win.ai.show_all.setChecked(True)
    run_model(qtbot, win, "tiny-seg")
    seg_note = win.ai.segmentation.note
    assert seg_note.misfit.isVisible() and "made for MR, CT" in seg_note.misfit.text()
    assert errors.messages[-1][0] == "Model not made for this series"


def test_enhance_adds_a_series_and_the_divider_compares(qtbot, window, tmp_path, monkeypatch, errors):
    win = window
    source = open_and_wait(qtbot, win, CHEST_CT)
    assert win.browser.count() == 1
    run_model(qtbot, win, "tiny-denoise")
    assert win.browser.count() == 2 and "denoised by tiny-denoise" in win.browser.item(1).text()
    note = win.ai.enhancement.note
    assert note.isVisible() and note.shown_limits() == ["made by the tests"] and "CC0" in note.limits.text()
    axial = win.grid.views["axial"]
    compare = axial.compare
    assert compare.active and compare.image.isVisible() and compare.line.isVisible()
    cols = win.state.plane("axial").shape[1]
    assert compare.image.image.shape[1] == cols - cols // 2  # right half: the enhanced slice
    # drag the divider to the left: more of the enhanced slice is shown
    row_mm, col_mm = win.state.pixel_size_mm("axial")
    start = widget_point(axial, compare.line.value(), 0.5 * win.state.plane("axial").shape[0] * row_mm)
    end = widget_point(axial, 0.25 * cols * col_mm, 0.5 * win.state.plane("axial").shape[0] * row_mm)
    slice_before = win.state.cursor
    drag(axial, start, end)
    assert compare.fraction == pytest.approx(0.25, abs=0.03)
    assert compare.image.image.shape[1] == cols - round(compare.fraction * cols)
    assert win.state.cursor == slice_before  # dragging the divider does not move the crosshair
    wheel(axial, 2)  # the comparison follows the slice
    enhanced = win.ai.logic.enhancement.result.volume
    np.testing.assert_array_equal(compare.image.image, win.grid.views["axial"].compare.after_lps[
        win.state.slice_index("axial")][:, cols - compare.image.image.shape[1]:])
    win.ai.enhancement.compare_check.setChecked(False)  # the toggle
    assert not compare.image.isVisible() and not compare.line.isVisible()
    # the new series is a series of the session: it can be shown and exported
    win.browser.chosen.emit(1)
    assert win.state.volume is enhanced
    win.browser.chosen.emit(0)
    assert win.state.volume is source  # back at once, without reading the files again
    win.ai.enhancement.compare_check.setChecked(True)
    assert compare.active
    path, folder = tmp_path / "enhanced.nii.gz", tmp_path / "enhanced-dicom"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    win.ai.enhancement.export_nifti.click()
    assert load_volume(path).shape == source.shape
    assert win.ai.enhancement.export_dicom.isEnabled()  # the source is DICOM
    win.ai.enhancement.export_dicom.click()
    written = load_volume(folder)
    assert written.shape == source.shape and written.info.uid != source.info.uid
    np.testing.assert_allclose(written.array, enhanced.array, atol=1)
    assert errors.messages == []


def test_cancel_mid_run_leaves_no_result_and_the_window_responds(qtbot, window, monkeypatch):
    win = window
    open_and_wait(qtbot, win, PACSMAN_MR)
    first_chunk = threading.Event()
    real = ai_logic.segment_volume

    def slow_segment(model, volume, progress=None, cancel=None, **kw):
        def held(done, total):  # after the first chunk, hold until the user has pressed Cancel
            progress(done, total)
            first_chunk.set()
            cancel.wait(20)
        return real(model, volume, held, cancel, **kw)

    monkeypatch.setattr(ai_logic, "segment_volume", slow_segment)
    win.ai.select_model("tiny-seg")
    win.ai.run_button.click()
    qtbot.waitUntil(first_chunk.is_set, timeout=20000)
    qtbot.waitUntil(lambda: win.ai.progress.value() > 0, timeout=5000)
    assert win.ai.is_running() and win.ai.cancel_button.isEnabled()
    before = win.state.slice_index("axial")
    wheel(win.grid.views["axial"], 3)  # the window keeps working while the model runs
    assert win.state.slice_index("axial") == before + 3
    with qtbot.waitSignal(win.ai.run_done, timeout=20000) as blocker:
        win.ai.cancel_button.click()
    assert blocker.args == ["cancelled"]
    qtbot.waitUntil(lambda: not win.ai.is_running(), timeout=5000)
    assert win.state.overlay is None and win.ai.logic.segmentation is None
    assert win.ai.segmentation.isHidden() and "no result" in win.ai.status.text()
    assert win.ai.run_button.isEnabled()


def test_unloadable_model_shows_an_error_and_the_viewer_keeps_running(qtbot, window, errors):
    win = window
    open_and_wait(qtbot, win, PACSMAN_MR)
    run_model(qtbot, win, "broken-seg", expect="failed")
    (title, message), = errors.messages
    assert title == "Could not load the model" and "broken-seg.onnx" in message
    assert win.state.overlay is None
    run_model(qtbot, win, "tiny-seg")  # the viewer, and the panel, still work
    assert win.state.overlay is not None


def test_model_for_another_modality_warns_but_runs(qtbot, window, errors):
    win = window
    open_and_wait(qtbot, win, CHEST_XRAY)
    win.ai.show_all.setChecked(True)
    assert not listed(win)["tiny-seg"].fits
    run_model(qtbot, win, "tiny-seg")
    (title, message), = errors.messages
    assert title == "Model not made for this series" and "MR, CT" in message
    assert win.state.overlay is not None


def test_logic_exports_refuse_dicom_for_a_picture(tmp_path, home):
    logic = AiPanelLogic()
    xray = load_volume(CHEST_XRAY)
    model = {e.id: e for e in logic.entries(xray)}["tiny-cls"].model
    run = logic.run(model, xray)
    logic.accept(run)
    assert logic.export_classification_json(tmp_path / "c.json").exists()
    with pytest.raises(Exception, match="no segmentation"):
        logic.export_mask_nifti(tmp_path / "m.nii.gz")
    assert not ai_logic.is_dicom_source(xray)


# -- the tags panel -------------------------------------------------------------------------------
def test_tags_panel_shows_the_full_header_of_the_current_slice(qtbot, window):
    win = window
    open_and_wait(qtbot, win, IRCAD_DICOM)
    rows = win.tags.visible_rows()
    assert len(rows) >= 40  # the whole header, not the handful of info.tags
    names = {r.name for r in rows}
    assert {"PatientName", "ImagePositionPatient", "RescaleSlope", "TransferSyntaxUID"} <= names
    assert "PixelData" not in names
    assert all(r.tag.startswith("(") and r.vr for r in rows)
    position = next(r.value for r in rows if r.name == "ImagePositionPatient")
    wheel(win.grid.views["axial"], 5)  # another slice, another file: shown once scrolling pauses

    def moved() -> bool:
        return next(r.value for r in win.tags.visible_rows() if r.name == "ImagePositionPatient") != position

    qtbot.waitUntil(moved, timeout=3000)
    win.tags.filter.setText("rescale")
    assert {r.name for r in win.tags.visible_rows()} == {"RescaleIntercept", "RescaleSlope"}
    win.tags.filter.setText("(0028,")
    assert 5 < len(win.tags.visible_rows()) < len(rows)


def test_header_rows_indent_sequences_and_skip_pixels():
    rows = read_header_rows(next(PACSMAN_MR.iterdir()))
    sequence = next(r for r in rows if r.vr == "SQ")
    assert "item" in sequence.value
    assert any(r.depth == 2 for r in rows)  # elements inside a sequence item
    assert not any(r.name == "PixelData" for r in rows)
    assert [r.name for r in filter_rows(rows, "patientid")][:1] == ["PatientID"]


def test_non_dicom_series_show_their_metadata(qtbot, window):
    win = window
    open_and_wait(qtbot, win, SAMPLES / "brain-mri" / "someones_anatomy.nii.gz")
    names = {r.name for r in win.tags.visible_rows()}
    assert {"Size (voxels)", "Spacing (mm)", "qform_code_name"} <= names


def test_corner_text_never_overlaps_the_bottom_letter(qtbot, window):
    win = window
    open_and_wait(qtbot, win, PACSMAN_MR)
    for width in (1600, 1000, 700):
        win.resize(width, 800)
        qtbot.wait(50)
        for view in win.grid.visible_views():
            corner, letter = view.corner.geometry(), view.edge["bottom"].geometry()
            assert view.edge["bottom"].text() and not corner.intersects(letter), (width, view.view)


def test_divider_and_outline_arithmetic():
    from kdviewer.gui.compare_view import after_slice_index, split_column
    from kdviewer.gui.overlay import label_outline

    assert after_slice_index(5, 10, 10) == 5
    assert [after_slice_index(i, 2, 4) for i in range(2)] == [1, 3]  # same position in a finer series
    assert (split_column(0.0, 100), split_column(0.5, 100), split_column(1.0, 100)) == (0, 50, 100)
    square = np.zeros((7, 7), np.uint8)
    square[1:6, 1:6] = 2
    outline = label_outline(square)
    assert outline[3, 3] == 0 and outline[1, 3] == 2 and (outline > 0).sum() == 16
