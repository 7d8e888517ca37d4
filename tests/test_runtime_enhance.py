"""enhance_volume: denoising keeps the grid and HU; super-resolution gives the new spacing."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_models import export_onnx, runtime_models, write_card  # noqa: F401

from kdviewer.runtime import ModelInputError, enhance_volume, load_model
from kdviewer.study import Volume, load_volume


@pytest.fixture(scope="module")
def ct(repo_dir) -> Volume:
    """17 slices of LIDC-IDRI-0001, int16 HU, 0.703 mm in-plane, 2.5 mm slices."""
    return load_volume(repo_dir / "resources/samples/chest-ct-lidc/dicom")


def test_window_maps_hu_to_the_model_and_back(tmp_path, ct):
    """An identity 'denoiser' with a [-1000, 1000] HU window returns the HU it got, clipped to the window."""
    import torch

    torch.set_num_threads(1)

    class Same(torch.nn.Module):
        def forward(self, x):
            return x * 1.0

    path = export_onnx(Same(), tmp_path / "same.onnx", (1, 1, 32, 32), spatial_dynamic=True)
    model = load_model(write_card(path, "same", "denoise", input_shape=[None, 1, 64, 64], kind="image",
                                  preprocess={"window": [0, 2000], "normalize": "window", "resize": None}))
    sub = ct.with_array(ct.array[:3])
    out = enhance_volume(model, sub, threads=1).volume
    assert out.same_grid(sub) and out.array.dtype == np.int16
    np.testing.assert_allclose(out.array, np.clip(sub.array, -1000, 1000), atol=1)


def test_denoise_keeps_the_grid_and_float16_teacher_agrees(runtime_models, ct):  # noqa: F811
    done = []
    res = enhance_volume(load_model(runtime_models["tiny-denoise"]), ct, progress=lambda d, n: done.append(d),
                         threads=1)
    half = enhance_volume(load_model(runtime_models["tiny-denoise-fp16"]), ct, threads=1)
    vol = res.volume
    assert vol.same_grid(ct) and vol.array.dtype == ct.array.dtype and res.scale == 1
    assert vol.info.modality == "CT" and "tiny-denoise" in vol.info.description and vol.info.uid == ""
    assert done[-1] == 17
    assert np.abs(vol.array.astype(int) - half.volume.array).max() <= 3  # HU, float16 weights
    diff = np.abs(vol.array.astype(float) - np.clip(ct.array, -1000, 1000))
    assert 0 < diff.mean() < 50  # a small residual change, not a different image


def test_super_resolution_halves_the_spacing_over_the_same_extent(runtime_models, ct):  # noqa: F811
    sub = ct.with_array(ct.array[5:8])
    res = enhance_volume(load_model(runtime_models["tiny-sr2"]), sub, threads=1)
    vol = res.volume
    assert res.scale == 2 and vol.shape == (3, 1024, 1024)
    assert vol.spacing == pytest.approx((sub.spacing[0] / 2, sub.spacing[1] / 2, sub.spacing[2]))
    # the outer edge of the first voxel stays where it was
    edge_old = sub.index_to_lps([-0.5, -0.5, 0])
    edge_new = vol.index_to_lps([-0.5, -0.5, 0])
    np.testing.assert_allclose(edge_new, edge_old, atol=1e-6)
    # and so does the far corner
    np.testing.assert_allclose(vol.index_to_lps([1023.5, 1023.5, 2]), sub.index_to_lps([511.5, 511.5, 2]),
                               atol=1e-6)


def test_wrong_task_or_colour_is_refused(runtime_models):  # noqa: F811
    with pytest.raises(ModelInputError, match="segment"):
        enhance_volume(load_model(runtime_models["tiny-seg"]), np.zeros((1, 8, 8)))
    with pytest.raises(ModelInputError, match="colour"):
        enhance_volume(load_model(runtime_models["tiny-sr2"]), np.zeros((1, 8, 8, 3), np.uint8))


def test_cancel_stops_enhancement_without_a_result(runtime_models, ct):  # noqa: F811
    from kdviewer.runtime import Cancelled

    calls = []
    with pytest.raises(Cancelled, match="enhancement cancelled"):
        enhance_volume(load_model(runtime_models["tiny-denoise"]), ct, progress=lambda d, n: calls.append(d),
                       cancel=lambda: bool(calls), threads=1)
    assert calls == [4]
