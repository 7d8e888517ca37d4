"""segment_volume: the study grid is kept, tiling matches an untiled run, post-processing, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from runtime_models import runtime_models, write_card  # noqa: F401

from kdviewer.imaging.resample import resize_2d, resize_labels
from kdviewer.runtime import Cancelled, load_model, segment_volume
from kdviewer.runtime.segment import SlicePredictor, extent_text, segment_probabilities
from kdviewer.runtime.session import make_runner
from kdviewer.runtime.tiling import predict_tiled
from kdviewer.study import Volume, load_volume


@pytest.fixture(scope="module")
def phantom(repo_dir) -> Volume:
    """PACSMAN head phantom: 128³ MR, 0 background, 1 eyes, 2 head, oblique in-plane direction."""
    return load_volume(repo_dir / "resources/samples/pacsman-mr/dicomseries")


def _card_variant(runtime_models, tmp_path, name, **changes):  # noqa: F811
    """A copy of tiny-seg's card under another id, pointing at the same .onnx, with `changes`."""
    src = load_model(runtime_models["tiny-seg"])
    onnx = tmp_path / f"{name}.onnx"
    onnx.write_bytes(src.onnx_path.read_bytes())
    kw = {"input_shape": [None, 1, 32, 32], "labels": ["background", "bright"], "modalities": ["MR"],
          "preprocess": {"window": None, "normalize": "minmax", "resize": None}}
    kw.update(changes)
    return load_model(write_card(onnx, name, "segment", **kw))


def test_phantom_volume_segmented_on_the_study_grid(runtime_models, phantom):  # noqa: F811
    done = []
    result = segment_volume(load_model(runtime_models["tiny-seg"]), phantom, progress=lambda d, n: done.append((d, n)),
                            threads=1)
    labels = result.labels
    assert labels.same_grid(phantom) and labels.array.dtype == np.uint8
    np.testing.assert_array_equal(labels.array, (phantom.array == 2).astype(np.uint8))  # the "bright" rule
    assert result.label_names == ("background", "bright")
    assert result.volumes_ml["bright"] == pytest.approx((phantom.array == 2).sum() / 1000.0)  # 1 mm voxels
    assert done[-1] == (128, 128) and result.latency_ms > 0


def test_card_spacing_resamples_and_comes_back_to_the_study_grid(runtime_models, tmp_path, phantom):  # noqa: F811
    model = _card_variant(runtime_models, tmp_path, "seg-2mm", spacing_mm=[2.0, 2.0])
    sub = phantom.with_array(phantom.array[60:68])
    labels = segment_volume(model, sub, threads=1).labels
    assert labels.same_grid(sub)
    truth = sub.array == 2
    dice = 2 * (labels.array.astype(bool) & truth).sum() / (labels.array.astype(bool).sum() + truth.sum())
    assert dice > 0.95


def test_labels_are_made_from_probabilities_resized_to_the_study_grid(runtime_models, tmp_path):  # noqa: F811
    """A model run on a coarser grid (card spacing 2 mm, study 0.7 mm): the labels are the argmax of its class
    probabilities resized bilinearly to the study grid (what `kdviewer evaluate` scores), not its labels resized
    by nearest neighbour, which give a thin diagonal bar stair-stepped edges."""
    model = _card_variant(runtime_models, tmp_path, "seg-2mm-thin", spacing_mm=[2.0, 2.0])
    img = np.zeros((2, 90, 90), np.int16)
    for k in range(-2, 3):  # a bar ~3 px wide at 45 degrees
        img[:, np.arange(10, 80), np.arange(10, 80) + k] = 100
    volume = Volume(img, spacing=(0.7, 0.7, 1.0))
    labels = segment_volume(model, volume, threads=1).labels.array
    probs = SlicePredictor(model, 1).probabilities([img[0], img[1]], (0.7, 0.7))
    assert probs.shape[2:] == (31, 31)  # 90 px x 0.7 mm / 2 mm
    for z in range(2):
        up = np.stack([resize_2d(c, (90, 90), order=1) for c in probs[z]])
        np.testing.assert_array_equal(labels[z], up.argmax(axis=0))
    nearest = resize_labels(probs.argmax(axis=1).astype(np.uint8), (2, 90, 90))
    assert (labels != nearest).sum() > 50
    truth = img > 50

    def dice(a):
        return 2 * (a.astype(bool) & truth).sum() / (a.astype(bool).sum() + truth.sum())

    assert dice(labels) > dice(nearest)


def test_sizes_are_given_in_the_unit_the_study_can_carry(repo_dir):
    """mL for a volume; cm² for one slice of known pixel size (0.5 x 0.5 mm, 2 mm thick: 1 cm² is 400 pixels,
    0.2 mL); pixels for a picture file, whose 1 mm spacing is only assumed."""
    assert extent_text(12.3456, Volume(np.zeros((3, 4, 4), np.int16))) == "12.35 mL"
    one_slice = Volume(np.zeros((1, 40, 40), np.int16), spacing=(0.5, 0.5, 2.0))
    assert extent_text(0.2, one_slice) == "1.00 cm²"
    picture = load_volume(repo_dir / "resources/samples/fundus/retina.jpg")
    assert extent_text(25.506, picture) == "25,506 px"


def test_tiled_image_larger_than_the_input_equals_the_untiled_run(runtime_models):  # noqa: F811
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 100, 90), dtype=np.float32)
    seg = make_runner(load_model(runtime_models["tiny-seg"]), threads=1)
    np.testing.assert_allclose(predict_tiled(seg, x, (32, 32), overlap=0.5), seg(x), atol=1e-3)
    np.testing.assert_allclose(predict_tiled(seg, x, (32, 32), overlap=0.25, blend="linear"), seg(x), atol=0.05)
    sr = make_runner(load_model(runtime_models["tiny-sr2"]), threads=1)
    tiled = predict_tiled(sr, x, (16, 16), overlap=0.5)
    assert tiled.shape == (2, 1, 200, 180)
    np.testing.assert_allclose(tiled, sr(x), atol=5e-3)  # 16-px tiles: the seams weigh a little
    small = x[:, :, :20, :13]  # smaller than a tile: padded and cropped back
    assert predict_tiled(seg, small, (32, 32)).shape == (2, 2, 20, 13)


def test_two_dimensional_image_probabilities(runtime_models):  # noqa: F811
    img = np.zeros((50, 70), np.float32)
    img[10:30, 20:60] = 100
    probs = segment_probabilities(load_model(runtime_models["tiny-seg"]), img, threads=1)
    assert probs.shape == (2, 50, 70)
    np.testing.assert_allclose(probs.sum(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(probs[1] > 0.5, img > 50)


def test_largest_component_and_threshold_from_the_card(runtime_models, tmp_path):  # noqa: F811
    model = _card_variant(runtime_models, tmp_path, "seg-post",
                          postprocess={"largest_component": True, "fill_holes": True, "threshold": 0.5})
    img = np.zeros((4, 64, 64), np.int16)
    img[:, 5:30, 5:30] = 100  # large blob with a hole
    img[:, 15:18, 15:18] = 0
    img[:, 50:55, 50:55] = 100  # small blob, removed
    result = segment_volume(model, Volume(img), threads=1)
    expected = np.zeros_like(img, dtype=np.uint8)
    expected[:, 5:30, 5:30] = 1
    np.testing.assert_array_equal(result.labels.array, expected)


def test_cancel_mid_volume_raises_and_returns_nothing(runtime_models, phantom):  # noqa: F811
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        stop.set()  # the user presses cancel after the first chunk

    with pytest.raises(Cancelled):
        segment_volume(load_model(runtime_models["tiny-seg"]), phantom, progress=progress, cancel=stop, threads=1)
    assert seen == [4]
    with pytest.raises(Cancelled):
        segment_volume(load_model(runtime_models["tiny-seg"]), phantom, cancel=lambda: True, threads=1)


def test_two_and_a_half_d_model_sees_the_neighbouring_slices(tmp_path, phantom):
    """A 3-slice model that segments its *first* channel: slice z gets the labels of slice z - 1."""
    import torch
    from runtime_models import export_onnx

    torch.set_num_threads(1)
    net = torch.nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        net.weight.zero_()
        net.weight[1, 0] = 20.0
        net.bias[:] = torch.tensor([0.0, -10.0])
    path = export_onnx(net, tmp_path / "prev.onnx", (1, 3, 32, 32), spatial_dynamic=True)
    model = load_model(write_card(path, "prev", "segment", input_shape=[None, 3, 32, 32], labels=["bg", "head"],
                                  preprocess={"window": None, "normalize": "minmax", "resize": None}, slices=3))
    sub = phantom.with_array(phantom.array[40:52])
    labels = segment_volume(model, sub, threads=1).labels.array
    bright = (sub.array == 2).astype(np.uint8)
    np.testing.assert_array_equal(labels[1:], bright[:-1])
    np.testing.assert_array_equal(labels[0], bright[0])  # the edge slice repeats


def test_lung_gate_from_the_card_reads_the_volume_in_hu(runtime_models, tmp_path):  # noqa: F811
    model = _card_variant(runtime_models, tmp_path, "seg-gate", postprocess={"argmax": True, "lung_gate_mm": 6.0})
    img = np.full((3, 64, 64), -1000, np.int16)   # air around the body
    img[:, 4:60, 4:60] = -350                      # body: not air (> -400 HU), below the net's midpoint (-300)
    img[:, 10:40, 8:28] = -850                     # right lung, 6 cm²: one of the two largest
    img[:, 10:40, 36:56] = -850                    # left lung
    img[:, 20:25, 15:20] = 400                     # bright finding in the right lung
    img[:, 48:54, 30:36] = 400                     # bright finding in the soft tissue below the lungs
    plain = segment_volume(_card_variant(runtime_models, tmp_path, "seg-nogate"), Volume(img), threads=1)
    assert plain.labels.array[:, 50, 33].all() and plain.labels.array[:, 22, 17].all()   # the net finds both
    gated = segment_volume(model, Volume(img), threads=1).labels.array
    assert gated[:, 22, 17].all() and not gated[:, 45:60, 25:40].any()
