"""Teacher vs student: on one study and on a labelled folder, with pairs whose differences are known."""

from __future__ import annotations

import csv
import json
import threading
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from runtime_models import (  # noqa: F401
    compare_pairs,
    make_pair,
    quadrant_images,
    runtime_models,
)

from kdviewer.imaging.metrics import dice
from kdviewer.runtime import Cancelled, load_model
from kdviewer.runtime.compare import ModelPairError, compare_on_dataset, compare_on_study, data_kind
from kdviewer.runtime.evaluate import evaluate_model
from kdviewer.runtime.report import write_report
from kdviewer.study.datasets import DatasetLayoutError
from kdviewer.study.volume import Volume

LEVELS = [0.9, 0.8, 0.7, 0.55, 0.3, 0.2, 0.1]  # 0.55: the teacher says "ul", the student "br"
LABELS = [1, 1, 0, 1, 0, 0, 1]


def _pair(cards):
    return load_model(cards[0]), load_model(cards[1])


def _same_metrics(a: dict, b: dict) -> None:
    """Equal apart from the latency (measured in each run)."""
    assert set(a) == set(b)
    for key in a:
        if key != "latency_ms_median":
            assert a[key] == pytest.approx(b[key], nan_ok=True) if isinstance(a[key], float) else a[key] == b[key], key


def _ramp(h: int = 40, w: int = 100) -> np.ndarray:
    """Columns 0..99: tiny-seg's teacher (minmax > 0.5) marks x >= 50, the z-score student x >= 64."""
    return np.tile(np.arange(w, dtype=np.uint8), (h, 1))


@pytest.fixture()
def quad_npz(tmp_path):
    path = tmp_path / "quad.npz"
    np.savez(path, val_images=quadrant_images(LEVELS), val_labels=np.array(LABELS)[:, None])
    return path


# -- on a labelled folder ------------------------------------------------------------------------


def test_classification_comparison_matches_evaluate_and_finds_the_disagreement(compare_pairs, quad_npz):  # noqa: F811
    teacher, student = _pair(compare_pairs["cls"])
    seen = []
    c = compare_on_dataset(teacher, student, quad_npz, threads=1, progress=lambda d, t: seen.append((d, t)))
    _same_metrics(c.teacher_metrics, evaluate_model(teacher, quad_npz, threads=1))
    _same_metrics(c.student_metrics, evaluate_model(student, quad_npz, threads=1))
    assert c.teacher_metrics["confusion"] != c.student_metrics["confusion"]
    assert seen[-1] == (7, 7) and len(c.cases) == 7
    assert [case.key for case in c.cases] == [f"val/{i}" for i in range(7)]
    worst = c.disagreements(1)[0]
    assert worst.key == "val/3" and worst.between["top1_agree"] == 0.0
    assert worst.teacher["prediction"] == "ul" and worst.student["prediction"] == "br"
    assert c.agreement["top1_agreement"] == pytest.approx(6 / 7)
    assert c.agreement["kl_mean"] > 0
    for role in ("teacher", "student"):
        (name, fpr, tpr), = c.roc[role]
        assert name == "ul" and fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    table = {k: (t, s) for k, t, s in c.metrics_table()}
    assert table["accuracy"] == (c.teacher_metrics["accuracy"], c.student_metrics["accuracy"])
    assert c.teacher.parameters is not None and c.teacher.file_bytes > 0 and c.speed_up > 0


def test_segmentation_comparison_scores_each_case_against_the_other_model(compare_pairs, tmp_path):  # noqa: F811
    teacher, student = _pair(compare_pairs["seg"])
    mask = np.zeros((40, 100), np.uint8)
    mask[:, 57:] = 255
    for name in ("a", "b"):
        Image.fromarray(_ramp()).save(tmp_path / f"{name}.png")
        Image.fromarray(mask).save(tmp_path / f"{name}_mask.png")
    c = compare_on_dataset(teacher, student, tmp_path, threads=1)
    _same_metrics(c.teacher_metrics, evaluate_model(teacher, tmp_path, threads=1))
    _same_metrics(c.student_metrics, evaluate_model(student, tmp_path, threads=1))
    case = c.cases[0]
    assert case.truth == 40 * 43
    assert case.teacher["pixels"] == 40 * 50 and case.student["pixels"] == 40 * 36
    assert case.between["dice_ts"] == pytest.approx(2 * 36 / (50 + 36))
    assert case.teacher["dice"] == pytest.approx(2 * 43 / (50 + 43))
    assert case.student["dice"] == pytest.approx(2 * 36 / (36 + 43))
    assert case.disagreement == pytest.approx(1 - 72 / 86)


def test_identical_models_agree_everywhere_and_inf_psnr_is_reported(runtime_models, tmp_path):  # noqa: F811
    data = tmp_path / "plain"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (48, 40)).astype(np.uint8)).save(data / f"img{i}.png")
    sr = runtime_models["tiny-sr2"]
    teacher, student = _pair(make_pair(sr, sr, tmp_path / "sr"))
    c = compare_on_dataset(teacher, student, data, threads=1)
    assert all(case.between["psnr_ts"] == np.inf and case.between["ssim_ts"] == 1.0 for case in c.cases)
    assert all(case.disagreement == 0 for case in c.cases)
    assert c.agreement["psnr_ts_median"] == np.inf
    _same_metrics(c.teacher_metrics, evaluate_model(teacher, data, threads=1))
    paths = write_report(c, tmp_path / "report")
    rows = list(csv.DictReader(paths["csv"].open(encoding="utf-8")))
    assert len(rows) == 3 and {float(r["psnr_ts"]) for r in rows} == {np.inf}
    assert "psnr_ts_median</td><td>inf" in paths["html"].read_text(encoding="utf-8")

    seg = runtime_models["tiny-seg"]
    teacher, student = _pair(make_pair(seg, seg, tmp_path / "seg"))
    img = np.zeros((40, 40), np.uint8)
    img[10:20, 5:30] = 200
    s = compare_on_study(teacher, student, img, threads=1)
    assert s.metrics["dice_per_label"] == {"bright": 1.0} and s.metrics["disagreement_pixels"]["agree"] == 1600
    assert not s.overlay.array.any()


def test_restoration_comparison_matches_evaluate(compare_pairs, tmp_path):  # noqa: F811
    teacher, student = _pair(compare_pairs["den"])
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 40)).astype(np.uint8)).save(tmp_path / f"ct{i}.png")
    c = compare_on_dataset(teacher, student, tmp_path, threads=1)
    _same_metrics(c.teacher_metrics, evaluate_model(teacher, tmp_path, threads=1))
    _same_metrics(c.student_metrics, evaluate_model(student, tmp_path, threads=1))
    for case in c.cases:  # float16 weights: nearly the same outputs, on the same degraded inputs
        assert case.teacher["psnr_input"] == case.student["psnr_input"]
        assert 60 < case.between["psnr_ts"] < np.inf and case.between["ssim_ts"] > 0.999


def test_report_holds_the_table_the_plots_and_one_row_per_case(compare_pairs, quad_npz, tmp_path):  # noqa: F811
    c = compare_on_dataset(*_pair(compare_pairs["cls"]), quad_npz, threads=1)
    out = tmp_path / "report"
    paths = write_report(c, out)
    assert sorted(p.name for p in out.iterdir()) == ["cases.csv", "report.html"]  # no temporary file left
    rows = list(csv.DictReader(paths["csv"].open(encoding="utf-8")))
    assert len(rows) == 7 and rows[3]["key"] == "val/3" and rows[3]["top1_agree"] == "0.0"
    html = paths["html"].read_text(encoding="utf-8")
    HTMLParser().feed(html)
    for ident in ("models", "metrics", "agreement", "disagreements"):
        assert f'<table id="{ident}">' in html
    assert f"<td>accuracy</td><td>{c.teacher_metrics['accuracy']:.4g}</td>" in html
    svgs = [html[i:html.index("</svg>", i) + 6] for i in range(len(html)) if html.startswith("<svg", i)]
    assert len(svgs) == 3  # ROC, two confusion matrices
    for svg in svgs:
        ET.fromstring(svg)
    assert "ROC: ul" in html and "confusion: student" in html and "val/3" in html


# -- on one study --------------------------------------------------------------------------------


def test_study_segmentation_dice_and_disagreement_map(compare_pairs):  # noqa: F811
    teacher, student = _pair(compare_pairs["seg"])
    vol = Volume(np.stack([_ramp()] * 3), spacing=(0.5, 0.5, 2.0))
    whole = compare_on_study(teacher, student, vol, threads=1)
    assert whole.slice_index is None and whole.overlay.shape == (3, 40, 100)
    assert whole.metrics["dice_per_label"]["bright"] == pytest.approx(72 / 86)
    assert set(np.unique(whole.overlay.array[:, :, 50:64])) == {1}  # the teacher only
    assert not whole.overlay.array[:, :, :50].any() and not whole.overlay.array[:, :, 64:].any()
    assert whole.metrics["volumes_ml_teacher"]["bright"] == pytest.approx(3 * 40 * 50 * 0.5 / 1000)

    ref = np.zeros((3, 40, 100), np.uint8)
    ref[:, :, 57:] = 1
    ref[:, :2, :10] = 1  # neither finds this
    one = compare_on_study(teacher, student, vol, 1, reference=ref, threads=1, repeats=3)
    m = one.overlay.array[0]
    assert one.slice_index == 1 and one.overlay.shape == (1, 40, 100)
    assert (m[2:, 50:57] == 2).all() and (m[:, 57:64] == 1).all() and (m[:2, :10] == 3).all()
    assert one.metrics["disagreement_pixels"] == {"both_right": 40 * 100 - 40 * 14 - 20, "teacher_right": 40 * 7,
                                                  "student_right": 40 * 7, "both_wrong": 20}
    assert one.metrics["dice_teacher_reference"]["bright"] == pytest.approx(dice(_ramp() >= 50, ref[1] > 0))
    assert one.teacher.latency_ms > 0 and one.student.latency_ms > 0


def test_study_classification_probabilities_agreement_and_kl(compare_pairs):  # noqa: F811
    teacher, student = _pair(compare_pairs["cls"])
    vol = Volume(quadrant_images([0.9, 0.55]).astype(np.float32))
    agree = compare_on_study(teacher, student, vol, 0, threads=1)
    assert agree.metrics["top1_agreement"] == 1.0 and agree.metrics["teacher_label"] == "ul"
    differ = compare_on_study(teacher, student, vol, 1, threads=1)
    assert differ.metrics["top1_agreement"] == 0.0 and differ.metrics["student_label"] == "br"
    p, q = differ.probabilities
    assert differ.metrics["kl_teacher_student"] == pytest.approx(float(np.sum(p * np.log(p / q))), rel=1e-4)
    itself = load_model(compare_pairs["cls"][0])  # its card names no teacher: allowed, with a warning
    same = compare_on_study(teacher, itself, vol, 1, threads=1, allow_unpaired=True)
    assert same.metrics["kl_teacher_student"] == 0.0 and same.metrics["top1_agreement"] == 1.0
    assert json.loads(json.dumps(same.to_dict()))["teacher"]["id"] == "cls-teacher"


def test_study_enhancement_identical_outputs_give_infinite_psnr(runtime_models, tmp_path):  # noqa: F811
    den = runtime_models["tiny-denoise"]
    teacher, student = _pair(make_pair(den, den, tmp_path))
    rng = np.random.default_rng(0)
    vol = Volume((rng.random((2, 40, 40)) * 800 - 400).astype(np.int16))
    c = compare_on_study(teacher, student, vol, threads=1)
    assert c.metrics["psnr_db"] == np.inf and c.metrics["ssim"] == 1.0 and c.metrics["max_abs_difference"] == 0
    assert c.overlay.shape == (2, 40, 40) and c.overlay.array.dtype == np.float32
    paths = write_report(c, tmp_path / "r")
    row, = csv.DictReader(paths["csv"].open(encoding="utf-8"))
    assert float(row["psnr_db"]) == np.inf and row["teacher"] == "pair-teacher"


def test_pairs_that_cannot_be_compared_are_refused(runtime_models, compare_pairs, tmp_path):  # noqa: F811
    seg_t, _ = _pair(compare_pairs["seg"])
    cls_t, cls_s = _pair(compare_pairs["cls"])
    with pytest.raises(ModelPairError, match="tasks differ"):
        compare_on_study(seg_t, cls_s, np.zeros((64, 64)))
    stranger = load_model(runtime_models["tiny-seg"])  # its card names no teacher
    with pytest.raises(ModelPairError, match="names no teacher"):
        compare_on_study(seg_t, stranger, np.zeros((32, 32)))
    c = compare_on_study(seg_t, stranger, np.zeros((32, 32)), allow_unpaired=True, threads=1)
    assert any("unpaired" in w for w in c.warnings)
    with pytest.raises(DatasetLayoutError, match="fits no known"):
        compare_on_dataset(cls_t, cls_s, tmp_path)


def test_cancel_stops_a_comparison(compare_pairs, quad_npz):  # noqa: F811
    flag = threading.Event()
    flag.set()
    with pytest.raises(Cancelled):
        compare_on_dataset(*_pair(compare_pairs["cls"]), quad_npz, cancel=flag)
    with pytest.raises(Cancelled):
        compare_on_study(*_pair(compare_pairs["seg"]), np.zeros((3, 32, 32)), cancel=flag.is_set)


def test_data_kind_tells_labelled_data_from_a_study(quad_npz, tmp_path):
    assert data_kind(quad_npz, "classify") == "dataset"
    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(one / "x.png")
    assert data_kind(one / "x.png", "classify") == "study"
    assert data_kind(one, "denoise") == "study"
    Image.fromarray(np.ones((20, 20), np.uint8)).save(one / "y.png")
    assert data_kind(one, "denoise") == "dataset"
    with pytest.raises(DatasetLayoutError, match="needs labelled data"):
        data_kind(one, "classify")
