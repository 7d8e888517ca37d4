"""Labelled data sets on the real folders in ../shared/datasets: layouts, pairing, splits, dedup."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdviewer.errors import KdviewerError
from kdviewer.study import datasets_volume
from kdviewer.study.datasets import (
    DatasetLayoutError,
    detect_layout,
    open_dataset,
    readme_licence,
    split_items,
)


@pytest.mark.parametrize("folder, layout", [
    ("pneumoniamnist", "medmnist"),
    ("pneumoniamnist/pneumoniamnist.npz", "medmnist"),
    ("brain-tumor-mri", "class_folders"),
    ("busi", "image_mask_pairs"),
    ("drive", "drive"),
    ("drive/training", "drive"),
    ("ircadb-liver17", "volume_labels"),
    ("tcia-lung-ct", "plain_images"),
    ("pacsman-synthetic", "plain_images"),
])
def test_each_shared_folder_is_detected(datasets_dir: Path, folder: str, layout: str):
    assert detect_layout(datasets_dir / folder) == layout


def test_a_folder_in_no_layout_says_what_was_looked_for(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetLayoutError) as err:
        open_dataset(tmp_path)
    assert isinstance(err.value, KdviewerError)
    message = str(err.value)
    assert str(tmp_path) in message
    for expected in ("MedMNIST", "1st_manual", "_mask.png", "class sub-folders", "DICOM"):
        assert expected in message


def test_medmnist_counts_and_class_names_follow_the_readme(datasets_dir: Path):
    pneu = open_dataset(datasets_dir / "pneumoniamnist")
    assert pneu.splits == ("train", "val")
    assert pneu.class_names == ("normal", "pneumonia")
    assert Counter(it.label for it in pneu.items("train")) == {0: 1214, 1: 3494}
    sample = pneu.items("val")[0].load()
    assert sample.image.shape == (28, 28) and sample.image.dtype == np.uint8
    breast = open_dataset(datasets_dir / "breastmnist")
    assert breast.class_names[0] == "malignant"  # 0 = malignant, 1 = normal or benign
    assert "malignant: 21" in breast.summary()


def test_class_folders_give_four_balanced_classes(datasets_dir: Path):
    ds = open_dataset(datasets_dir / "brain-tumor-mri", task="classify")
    assert ds.class_names == ("glioma", "meningioma", "notumor", "pituitary")
    assert Counter(it.label for it in ds.items("train")) == {0: 241, 1: 241, 2: 241, 3: 241}
    assert ds.items("train")[0].load().image.ndim in (2, 3)


def test_busi_extra_masks_are_merged_and_rgb_masks_binarised(datasets_dir: Path):
    ds = open_dataset(datasets_dir / "busi", task="segment")
    items = {it.key: it for it in ds.items("all")}
    assert len(items) == 30
    sample = items["benign/benign (315)"].load()
    folder = datasets_dir / "busi" / "benign"
    first = np.array(Image.open(folder / "benign (315)_mask.png").convert("L")) > 0
    second = np.array(Image.open(folder / "benign (315)_mask_1.png").convert("L")) > 0
    assert (second & ~first).any(), "the extra mask must add pixels for this test to mean anything"
    np.testing.assert_array_equal(sample.mask.astype(bool), first | second)
    assert set(np.unique(sample.mask)) <= {0, 1}
    normal = items["normal/normal (1)"].load()
    assert normal.mask.dtype == np.uint8 and normal.mask.max() == 0
    assert "1 extra mask" in ds.summary()


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def test_drive_pairs_by_leading_number_across_naming_schemes(datasets_dir: Path, tmp_path: Path):
    train = datasets_dir / "drive" / "training"
    # A test part named as DRIVE names it: 01_test.tif, 01_manual1.gif, 01_test_mask.gif.
    test = tmp_path / "drive" / "test"
    _link(train / "images" / "21_training.tif", test / "images" / "01_test.tif")
    _link(train / "1st_manual" / "21_manual1.gif", test / "1st_manual" / "01_manual1.gif")
    _link(train / "mask" / "21_training_mask.gif", test / "mask" / "01_test_mask.gif")
    _link(train / "images" / "22_training.tif", test / "images" / "02_test.tif")  # no manual: skipped
    ds = open_dataset(tmp_path / "drive")
    assert ds.layout == "drive" and ds.splits == ("test",)
    (item,) = ds.items("test")
    sample = item.load()
    reference = open_dataset(train).items("train")[0].load()
    np.testing.assert_array_equal(sample.mask, reference.mask)
    assert sample.image.shape == (584, 565, 3) and sample.fov.dtype == bool
    assert 0.6 < sample.fov.mean() < 0.75 and 0.05 < sample.mask.mean() < 0.12
    assert "[2]" in ds.summary()


def test_volume_labels_read_each_case_once(datasets_dir: Path):
    ds = open_dataset(datasets_dir / "ircadb-liver17", task="segment")
    items = ds.items("all")
    assert len(items) == 119 and ds.mask_names == ("background", "liver")
    assert {it.group for it in items} == {"ircadb-liver17"}
    assert [it.slice_index for it in items] == list(range(119))
    datasets_volume._case_volumes.cache_clear()
    middle = items[60].load()
    assert middle.image.shape == (512, 512) and middle.mask.any()
    assert 60 < middle.image[middle.mask > 0].mean() < 140  # contrast-enhanced liver, ~99 HU (README)
    assert not items[0].load().mask.any()
    items[61].load_slices(3)
    assert datasets_volume._case_volumes.cache_info().misses == 1
    assert middle.spacing_mm == pytest.approx((0.743, 0.743), abs=1e-3)


def test_plain_dicom_series_gives_slices_in_hu(datasets_dir: Path):
    ds = open_dataset(datasets_dir / "tcia-lung-ct")
    assert ds.task_hint == "restore" and len(ds.items("all")) == 100
    img = ds.items("all")[50].load().image
    assert img.dtype == np.float32 and img.min() <= -1000 and img.max() > 200


def _write_case(folder: Path, seed: int, n: int = 6) -> None:
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    arr = np.random.default_rng(seed).integers(-1000, 1000, size=(n, 8, 8)).astype(np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(folder / "ct.nii.gz"))
    np.savez_compressed(folder / "seg.npz", seg=(arr > 0).astype(np.uint8))


def test_several_cases_split_by_case_and_npz_labels(tmp_path: Path):
    for k in range(4):
        _write_case(tmp_path / f"case{k}", seed=k)
    ds = open_dataset(tmp_path)
    assert ds.layout == "volume_labels" and len(ds.items("all")) == 24
    sample = ds.items("all")[0].load()
    np.testing.assert_array_equal(sample.mask, (sample.image > 0).astype(np.uint8))
    split = split_items(ds.items("all"), 0.25, seed=0)
    assert split.unit == "case"
    assert not {it.group for it in split.train} & {it.group for it in split.val}
    assert len({it.group for it in split.val}) == 1


def test_slices_of_one_volume_split_by_whole_blocks(datasets_dir: Path):
    items = open_dataset(datasets_dir / "ircadb-liver17").items("all")
    train, val = split_items(items, 0.2, seed=3, block_size=16)
    val_blocks = {it.slice_index // 16 for it in val}
    train_blocks = {it.slice_index // 16 for it in train}
    assert val and not val_blocks & train_blocks
    assert len(val) == sum(min(16, 119 - 16 * b) for b in val_blocks)


def test_split_is_stratified_and_seeded(datasets_dir: Path):
    items = open_dataset(datasets_dir / "breastmnist").items("train")
    first = split_items(items, 0.2, seed=7)
    again = split_items(items, 0.2, seed=7)
    other = split_items(items, 0.2, seed=8)
    assert [it.key for it in first.val] == [it.key for it in again.val]
    assert [it.key for it in first.val] != [it.key for it in other.val]
    total, in_val = Counter(it.label for it in items), Counter(it.label for it in first.val)
    for label in total:
        assert abs(in_val[label] - 0.2 * total[label]) <= 1
    assert not {it.key for it in first.train} & {it.key for it in first.val}


def test_identical_images_are_dropped_before_splitting(datasets_dir: Path, tmp_path: Path):
    source = datasets_dir / "brain-tumor-mri" / "train"
    for cls in ("glioma", "pituitary"):
        (tmp_path / cls).mkdir()
        for f in sorted((source / cls).iterdir())[:5]:
            shutil.copy(f, tmp_path / cls / f.name)
    first = sorted((tmp_path / "glioma").iterdir())[0]
    shutil.copy(first, tmp_path / "glioma" / "copy_of_first.jpg")
    ds = open_dataset(tmp_path)
    split = split_items(ds.items("all"), 0.3, seed=0)
    assert split.dropped == 1
    assert len(split.train) + len(split.val) == 10


def test_readme_licences(datasets_dir: Path):
    assert readme_licence(datasets_dir / "pneumoniamnist") == "CC BY 4.0"
    assert readme_licence(datasets_dir / "ircadb-liver17") == "CC BY-NC-ND 3.0"
    assert readme_licence(datasets_dir / "tcia-lung-ct") == "CC BY 3.0"
    assert readme_licence(datasets_dir / "drive").startswith("see ")  # DRIVE states terms, not a licence
