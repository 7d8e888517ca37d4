"""classify_image on the bundled chest X-ray, through the card's preprocessing; occlusion saliency."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from runtime_models import export_onnx, runtime_models, write_card  # noqa: F401

from kdviewer.imaging.preprocess import preprocess_image
from kdviewer.runtime import classify_image, load_model
from kdviewer.study import Volume, load_volume


@pytest.fixture(scope="module")
def xray(repo_dir) -> np.ndarray:
    return np.asarray(Image.open(repo_dir / "resources/samples/chest-xray/clinical_sample_01.png"))


def test_chest_xray_probabilities_follow_the_card(runtime_models, xray):  # noqa: F811
    model = load_model(runtime_models["tiny-cls"])
    result = classify_image(model, xray, threads=1)
    assert result.labels == ("normal", "pneumonia")
    assert result.probabilities.shape == (2,) and abs(float(result.probabilities.sum()) - 1) < 1e-5
    assert result.latency_ms > 0 and result.saliency is None
    # the same numbers by hand: the shared preprocessing, onnxruntime, softmax
    x = preprocess_image(xray, {"channels": 1, **model.card.input["preprocess"]}, (64, 64))
    logits = ort.InferenceSession(str(model.onnx_path)).run(None, {"image": x[None]})[0][0]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5)
    assert result.to_dict()["label"] == result.labels[int(np.argmax(expected))]


def test_a_slice_of_a_volume_is_classified_like_that_image(runtime_models, repo_dir):  # noqa: F811
    model = load_model(runtime_models["tiny-cls"])
    vol = load_volume(repo_dir / "resources/samples/pacsman-mr/dicomseries")
    by_slice = classify_image(model, vol, slice_index=70, threads=1)
    by_image = classify_image(model, vol.array[70], threads=1)
    np.testing.assert_allclose(by_slice.probabilities, by_image.probabilities)
    assert classify_image(model, Volume(vol.array[69:72]), threads=1).probabilities == pytest.approx(
        by_image.probabilities)


def test_occlusion_saliency_points_at_the_region_the_model_looks_at(tmp_path, xray):
    """A model whose 'pneumonia' logit is the mean of the upper-left quadrant: saliency lives there."""
    import torch

    torch.set_num_threads(1)

    class UpperLeft(torch.nn.Module):
        def forward(self, x):
            s = x[:, :, :32, :32].mean(dim=(1, 2, 3)) * 2 - 1
            return torch.stack([-s, s], dim=1)

    path = export_onnx(UpperLeft(), tmp_path / "ul.onnx", (1, 1, 64, 64), spatial_dynamic=False)
    model = load_model(write_card(path, "ul", "classify", input_shape=[None, 1, 64, 64], labels=["a", "b"]))
    img = np.random.default_rng(0).integers(0, 60, (200, 160)).astype(np.uint8)
    img[:100, :80] += 150  # bright where the model looks; the occluder (the mean) is darker
    result = classify_image(model, img, saliency=True, threads=1)
    assert result.top_label == "b"
    heat = result.saliency
    assert heat.shape == img.shape and heat.min() >= 0 and heat.max() == pytest.approx(1, abs=1e-3)
    assert heat[:100, :80].mean() > 5 * heat[100:, 80:].mean() + 1e-6
