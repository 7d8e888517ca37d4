"""Metrics against values worked out by hand (and scikit-learn when it happens to be installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdviewer.imaging.metrics import (
    classification_metrics,
    confusion_matrix,
    dice,
    hd95_mm,
    jaccard,
    psnr,
    roc_auc,
    roc_auc_ovr,
    roc_curve,
    ssim,
    surface_distances_mm,
)


def _square(size, half, shape=(30, 30)):
    m = np.zeros(shape, dtype=bool)
    c = shape[0] // 2
    m[c - half:c - half + size, c - half:c - half + size] = True
    return m


def test_dice_and_jaccard_of_overlapping_masks():
    a = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    b = np.array([0, 0, 1, 1, 1, 1], dtype=bool)
    assert dice(a, b) == 0.5
    assert jaccard(a, b) == pytest.approx(2 / 6)
    assert dice(a, a) == 1.0 and jaccard(a, ~a) == 0.0


def test_empty_masks_agree_perfectly():
    empty = np.zeros((4, 4))
    assert dice(empty, empty) == 1.0 and jaccard(empty, empty) == 1.0
    assert dice(empty, np.ones((4, 4))) == 0.0
    with pytest.raises(ValueError):
        dice(empty, np.zeros((3, 3)))


def test_hd95_of_concentric_squares():
    # inner 10x10 and outer 14x14: 76 pooled distances of 2, 8 of sqrt(5), 4 of sqrt(8)
    inner, outer = _square(10, 5), _square(14, 7)
    d = np.sort(surface_distances_mm(inner, outer))
    assert d.size == 36 + 52
    assert d[0] == 2 and d[-1] == pytest.approx(math.sqrt(8))
    assert hd95_mm(inner, outer) == pytest.approx(math.sqrt(5))
    assert hd95_mm(inner, inner) == 0.0


def test_hd95_uses_spacing_in_xyz_order():
    a = np.zeros((1, 5, 8), dtype=bool)
    b = np.zeros_like(a)
    a[0, 1, 1] = True
    b[0, 1, 4] = True  # 3 voxels apart along x
    assert hd95_mm(a, b, (2.0, 1.0, 5.0)) == pytest.approx(6.0)
    b2 = np.zeros_like(a)
    b2[0, 4, 1] = True  # 3 voxels apart along y
    assert hd95_mm(a, b2, (2.0, 1.0, 5.0)) == pytest.approx(3.0)


def test_hd95_with_an_empty_mask():
    m = _square(4, 2)
    assert hd95_mm(m, np.zeros_like(m)) == math.inf
    assert hd95_mm(np.zeros_like(m), np.zeros_like(m)) == 0.0


def test_psnr_and_ssim():
    ref = np.zeros((32, 32))
    assert psnr(ref + 0.1, ref, data_range=1.0) == pytest.approx(20.0)
    assert psnr(ref, ref, data_range=1.0) == math.inf
    img = np.random.default_rng(0).uniform(size=(32, 32))
    assert ssim(img, img, data_range=1.0) == pytest.approx(1.0)
    assert ssim(img + np.random.default_rng(1).normal(0, 0.3, img.shape), img, data_range=1.0) < 0.8


def test_roc_auc_by_hand_with_ties_and_one_class():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([0, 1, 1], [0.2, 0.2, 0.9]) == 0.75
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_roc_curve_points():
    fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)


def test_roc_auc_ovr_macro():
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4], [0.2, 0.2, 0.6]])
    # class 0: 1.0; class 1: pos 0.4 vs neg 0.1, 0.5, 0.2 -> 2/3; class 2: pos .4, .6 vs neg .1, .3 -> 1.0
    assert roc_auc_ovr(y, proba) == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert roc_auc_ovr([0, 1], [[0.9, 0.1], [0.2, 0.8]]) == 1.0


def test_confusion_matrix_rows_are_truth():
    cm = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 0], 3)


def test_binary_classification_metrics_by_hand():
    m = classification_metrics([0, 0, 1, 1, 1], np.array([0.2, 0.6, 0.7, 0.4, 0.9]))
    assert m["confusion"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx(7 / 12)
    assert m["precision"] == pytest.approx(7 / 12)
    assert m["recall"] == pytest.approx(7 / 12)
    assert m["f1"] == pytest.approx(7 / 12)
    assert m["auc"] == pytest.approx(5 / 6)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == 0.5


def test_multiclass_metrics_match_scikit_learn_if_installed():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60)
    proba[np.arange(60), y] += 0.3
    proba /= proba.sum(axis=1, keepdims=True)
    m = classification_metrics(y, proba)
    assert 0 <= m["accuracy"] <= 1 and np.array(m["confusion"]).sum() == 60
    sk = pytest.importorskip("sklearn.metrics")
    pred = proba.argmax(1)
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(sk.f1_score(y, pred, average="macro"))
    assert m["precision"] == pytest.approx(sk.precision_score(y, pred, average="macro"))
    assert m["auc"] == pytest.approx(sk.roc_auc_score(y, proba, multi_class="ovr"))
