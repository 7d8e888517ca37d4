"""NIfTI, NRRD, MetaImage and picture files: scan, load, one slice, save and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from PIL import Image

from kdviewer.study import (
    UnsupportedFormatError,
    Volume,
    load_series,
    load_volume,
    open_path,
    read_slice,
    save_volume,
)


@pytest.fixture(scope="module")
def pacsman_dicom(datasets_dir: Path) -> Volume:
    return load_volume(datasets_dir / "pacsman-synthetic" / "dicomseries")


def test_nifti_header_scan_and_load_give_simpleitk_geometry(datasets_dir: Path) -> None:
    path = datasets_dir / "pacsman-synthetic" / "bids" / "sub-000001_T1w.nii.gz"
    ref = open_path(path).series[0]
    assert ref.kind == "sitk" and ref.shape == (128, 128, 128) and ref.dtype == "int16"
    assert ref.origin == pytest.approx((64, 0, 0)) and ref.direction == pytest.approx((0, -1, 0, -1, 0, 0, 0, 0, 1))
    volume = load_series(ref)
    assert volume.array.dtype == np.int16 and set(np.unique(volume.array)) == {0, 1, 2}
    assert volume.origin == ref.origin and volume.direction == ref.direction
    assert np.array_equal(read_slice(ref, 100), volume.array[100])


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_save_volume_and_read_it_back(pacsman_dicom: Volume, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"pacsman{suffix}"
    save_volume(pacsman_dicom, path)
    again = load_volume(path)
    assert np.array_equal(again.array, pacsman_dicom.array)
    assert again.same_grid(pacsman_dicom, tol=1e-4)


def test_mhd_header_with_raw_data_file(pacsman_dicom: Volume, tmp_path: Path) -> None:
    save_volume(pacsman_dicom, tmp_path / "head.mhd")
    result = open_path(tmp_path)
    assert [s.files[0].name for s in result.series] == ["head.mhd"]
    assert [(p.name, "header" in r) for p, r in result.skipped] == [("head.raw", True)]
    assert np.array_equal(load_series(result.series[0]).array, pacsman_dicom.array)


def test_save_volume_refuses_an_unknown_extension(pacsman_dicom: Volume, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match="cannot save as .png"):
        save_volume(pacsman_dicom, tmp_path / "out.png")


def test_4d_nifti_loads_its_first_volume_with_a_warning(tmp_path: Path) -> None:
    frames = [np.full((3, 4, 5), k, dtype=np.int16) for k in (7, 9)]
    image = sitk.JoinSeries([sitk.GetImageFromArray(f) for f in frames])
    image.SetSpacing((0.5, 0.6, 2.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "bold.nii.gz"))
    ref = open_path(tmp_path / "bold.nii.gz").series[0]
    assert ref.shape == (3, 4, 5) and any("4-D image with 2 volumes" in w for w in ref.warnings)
    volume = load_series(ref)
    assert volume.shape == (3, 4, 5) and np.all(volume.array == 7)
    assert volume.spacing == pytest.approx((0.5, 0.6, 2.0))
    assert np.all(read_slice(ref, 2) == 7)


def test_real_pictures_load_as_one_slice(datasets_dir: Path) -> None:
    fundus = load_volume(datasets_dir / "drive" / "training" / "images" / "21_training.tif")  # LZW RGB TIFF
    assert fundus.array.shape == (1, 584, 565, 3) and fundus.is_color and fundus.is_2d
    assert fundus.array[0, 292, 282].sum() > 0  # inside the retina
    mri = next((datasets_dir / "brain-tumor-mri").rglob("*.jpg"))
    grey = load_volume(mri)  # a grey MRI stored as RGB JPEG is loaded as grey
    assert grey.array.ndim == 3 and grey.shape[0] == 1 and grey.array.dtype == np.uint8
    assert any("no pixel spacing" in w for w in grey.info.warnings)


def test_rgb_png_with_identical_channels_is_grey_and_colour_stays_colour(tmp_path: Path) -> None:
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "grey_rgb.png")
    colour = np.zeros((6, 10, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "red.png")
    Image.fromarray(grey).save(tmp_path / "grey.jpg", quality=100)
    result = open_path(tmp_path)
    by_name = {s.files[0].name: s for s in result.series}
    assert by_name["grey_rgb.png"].channels == 1
    assert np.array_equal(load_series(by_name["grey_rgb.png"]).array, grey[None])
    red = load_series(by_name["red.png"])
    assert red.array.shape == (1, 6, 10, 3) and red.array[0, 0, 0].tolist() == [200, 0, 0]
    assert np.abs(load_series(by_name["grey.jpg"]).array[0].astype(int) - grey).max() <= 2


def test_16_bit_png_and_tiff_keep_their_values(tmp_path: Path) -> None:
    values = (np.arange(12 * 9, dtype=np.uint16).reshape(12, 9) * 600).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "xray.png")
    tifffile.imwrite(tmp_path / "xray.tif", values)
    for name in ("xray.png", "xray.tif"):
        ref = open_path(tmp_path / name).series[0]
        assert ref.dtype == "uint16" and ref.shape == (1, 12, 9)
        assert np.array_equal(load_series(ref).array[0], values)
