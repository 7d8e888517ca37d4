"""evaluate_model gives the metrics a hand computation gives, on small labelled sets made here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from runtime_models import export_onnx, runtime_models, write_card  # noqa: F401

from kdviewer.imaging.metrics import hd95_mm
from kdviewer.runtime import load_model
from kdviewer.runtime.evaluate import evaluate_model
from kdviewer.study.datasets import DatasetLayoutError


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def _quadrant_images(levels) -> np.ndarray:
    """28×28 images: upper-left quadrant at level v, lower-right at 1 - v (×255), anchors at 0 and 255."""
    imgs = np.zeros((len(levels), 28, 28), np.uint8)
    for i, v in enumerate(levels):
        imgs[i, :14, :14] = round(255 * v)
        imgs[i, 14:, 14:] = round(255 * (1 - v))
        imgs[i, 0, 27] = 255
    return imgs


@pytest.fixture(scope="module")
def quadrant_model(tmp_path_factory):
    """Class 1 ("ul") when the upper-left quadrant is brighter than the lower-right; monotonic in v."""
    torch = _torch()

    class Quadrants(torch.nn.Module):
        def forward(self, x):
            s = x[:, :, :32, :32].mean(dim=(1, 2, 3)) - x[:, :, 32:, 32:].mean(dim=(1, 2, 3))
            return torch.stack([-s, s], dim=1) * 4

    folder = tmp_path_factory.mktemp("quad")
    path = export_onnx(Quadrants(), folder / "quad.onnx", (1, 1, 64, 64), spatial_dynamic=False)
    return load_model(write_card(path, "quad", "classify", input_shape=[None, 1, 64, 64], labels=["br", "ul"]))


def test_classification_metrics_match_the_hand_count(quadrant_model, tmp_path):
    levels = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]  # predicted: 1 1 1 0 0 0
    labels = [1, 1, 0, 0, 0, 1]
    np.savez(tmp_path / "quad.npz", val_images=_quadrant_images(levels), val_labels=np.array(labels)[:, None],
             test_images=_quadrant_images(levels[:2]), test_labels=np.array([[1], [1]]))
    with pytest.raises(DatasetLayoutError, match="several splits.*--split"):
        evaluate_model(quadrant_model, tmp_path / "quad.npz")
    m = evaluate_model(quadrant_model, tmp_path / "quad.npz", split="val", threads=1)
    # TP 2, FP 1 (0.7), FN 1 (0.1), TN 2: every per-class rate is 2/3
    assert m["n"] == 6 and m["split"] == "val"
    assert m["confusion"] == [[2, 1], [1, 2]]
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1"):
        assert m[key] == pytest.approx(2 / 3), key
    # AUC: positives 0.9, 0.8, 0.1 against negatives 0.7, 0.3, 0.2 -> 6 of 9 pairs ordered
    assert m["auc"] == pytest.approx(6 / 9)
    assert m["latency_ms_median"] > 0
    np.savez(tmp_path / "one.npz", test_images=_quadrant_images(levels), test_labels=np.array(labels)[:, None])
    assert evaluate_model(quadrant_model, tmp_path / "one.npz", threads=1)["split"] == "test"


def test_segmentation_metrics_match_the_hand_count(runtime_models, tmp_path):  # noqa: F811
    """tiny-seg marks the bright pixels; the masks differ from them by a known amount."""
    img1 = np.zeros((40, 40), np.uint8)
    img1[10:20, 10:20] = 200
    mask1 = np.zeros((40, 40), np.uint8)
    mask1[10:20, 10:25] = 255  # 150 px, of which the 100 bright ones are predicted
    img2 = np.zeros((40, 40), np.uint8)
    img2[5:15, 5:15] = 200
    mask2 = np.where(img2 > 0, 255, 0).astype(np.uint8)  # exact
    for name, img, mask in (("a", img1, mask1), ("b", img2, mask2)):
        Image.fromarray(img).save(tmp_path / f"{name}.png")
        Image.fromarray(mask).save(tmp_path / f"{name}_mask.png")
    m = evaluate_model(load_model(runtime_models["tiny-seg"]), tmp_path, threads=1)
    assert m["layout"] == "image_mask_pairs" and m["n"] == 2
    assert m["dice"] == pytest.approx((2 * 100 / 250 + 1) / 2)
    assert m["jaccard"] == pytest.approx((100 / 150 + 1) / 2)
    assert m["hd95_mm"] == pytest.approx((hd95_mm(img1 > 0, mask1 > 0) + 0) / 2)
    assert m["hd95_mm"] > 0
    # pixels: 200 positives scored high, 50 positives and 2950 negatives scored equally low
    assert m["auc"] == pytest.approx((200 * 2950 + 0.5 * 50 * 2950) / (250 * 2950), abs=1e-6)


def test_restoration_identity_output_scores_like_its_input(tmp_path):
    """A model returning its input: PSNR/SSIM of output and of degraded input are equal; noise 0.05 -> ~26 dB."""
    torch = _torch()

    class Same(torch.nn.Module):
        def forward(self, x):
            return x * 1.0

    path = export_onnx(Same(), tmp_path / "same.onnx", (1, 1, 32, 32), spatial_dynamic=True)
    model = load_model(write_card(path, "same", "denoise", input_shape=[None, 1, 32, 32], kind="image",
                                  preprocess={"window": None, "normalize": "minmax", "resize": None}))
    data = tmp_path / "plain"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (48, 40)).astype(np.uint8)).save(data / f"img{i}.png")
    m = evaluate_model(model, data, threads=1)
    assert m["n"] == 3 and m["degradation"]["kind"] == "gaussian"
    assert m["psnr"] == pytest.approx(m["psnr_input"]) and m["ssim"] == pytest.approx(m["ssim_input"])
    assert m["psnr"] == pytest.approx(-20 * np.log10(0.05), abs=0.5)


def test_segmentation_on_drive_scores_inside_the_field_of_view(runtime_models, datasets_dir):  # noqa: F811
    m = evaluate_model(load_model(runtime_models["tiny-seg"]), datasets_dir / "drive" / "training", limit=2,
                       threads=1)
    assert m["layout"] == "drive" and m["n"] == 2
    assert 0 <= m["dice"] <= 1 and 0 <= m["jaccard"] <= m["dice"]
    assert 0 <= m["auc"] <= 1 and m["hd95_mm"] >= 0


def test_restoration_degrades_on_the_trainers_grid(tmp_path):
    """The clean image is resized to the recipe's input_size before degradation (as the trainer does), and the
    low-dose pixel size grows with it: a 64×64 slice of a 48-pixel-wide grid at 1 mm becomes 32×32 at 2 mm."""
    import json

    from kdviewer.runtime.evaluate_restore import degraded_pair, training_grid

    torch = _torch()

    class Same(torch.nn.Module):
        def forward(self, x):
            return x * 1.0

    path = export_onnx(Same(), tmp_path / "same.onnx", (1, 1, 32, 32), spatial_dynamic=True)
    card = write_card(path, "same", "denoise", input_shape=[None, 1, 32, 32], kind="image",
                      preprocess={"window": [0.0, 2000.0], "normalize": "window", "resize": "bilinear"})
    meta = json.loads(card.read_text())
    meta["training"]["recipe"] = ('[data]\npath = "x"\ninput_size = [32, 32]\n'
                                  'degrade = {kind = "low_dose", photons = 1e5, angles = 90}\n')
    card.write_text(json.dumps(meta))
    model = load_model(card)
    assert training_grid(model) == (32, 32)
    yy, xx = np.mgrid[:64, :64]
    phantom = np.where((yy - 32) ** 2 + (xx - 32) ** 2 < 25 ** 2, 40.0, -1000.0).astype(np.float32)
    x, target = degraded_pair(model, phantom, (1.0, 1.0), np.random.default_rng(0))
    assert x.shape == target.shape == (32, 32)
    # without a recipe input size the image keeps its own grid
    meta["training"]["recipe"] = '[data]\npath = "x"\ndegrade = {kind = "low_dose", photons = 1e5, angles = 90}\n'
    card.write_text(json.dumps(meta))
    x2, target2 = degraded_pair(load_model(card), phantom, (1.0, 1.0), np.random.default_rng(0))
    assert x2.shape == target2.shape == (64, 64)
