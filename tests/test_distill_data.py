"""Torch data sets from a recipe's [data] table: every task, the split used, determinism, bad recipes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdviewer.distill.augment import AugmentConfig, AugmentConfigError, augment_arrays
from kdviewer.distill.data import DataConfigError, build_datasets
from kdviewer.imaging.preprocess import preprocess_image
from kdviewer.study.datasets import DatasetLayoutError

torch.set_num_threads(1)

AUG = {"hflip": True, "vflip": True, "rotate_deg": 20, "scale": [0.9, 1.1], "intensity": 0.1}


def test_medmnist_uses_its_own_val_split_and_the_runtime_preprocessing(datasets_dir: Path):
    train, val, meta = build_datasets(
        {"path": "pneumoniamnist", "input_size": [64, 64], "augment": AUG, "seed": 0},
        "classify", recipe_dir=datasets_dir)
    assert meta["split"] == "the data's own val split"
    assert meta["counts"]["val"] == len(val) == 524
    assert meta["counts"]["train"] + meta["dedup_dropped"] >= 4708 - 1
    assert meta["class_names"] == ["normal", "pneumonia"] and meta["num_classes"] == 2
    assert meta["licence"] == "CC BY 4.0" and meta["dataset_name"] == "pneumoniamnist"
    assert meta["preprocess"] == {"normalize": "minmax", "window": None, "resize": "bilinear",
                                  "channels": 1, "slices": 1}
    sample = train[0]
    assert sample["image"].shape == (1, 64, 64) and sample["image"].dtype == torch.float32
    assert sample["target"].shape == () and sample["target"].dtype == torch.int64
    # Validation samples are exactly what the runtime computes at inference.
    item = val.items[3]
    expected = preprocess_image(item.load().image, meta["preprocess"], meta["input_size"])
    np.testing.assert_array_equal(val[3]["image"].numpy(), expected)
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=8)))
    assert batch["image"].shape == (8, 1, 64, 64) and batch["target"].shape == (8,)


def test_training_augmentation_changes_per_epoch_and_repeats_with_the_seed(datasets_dir: Path):
    cfg = {"path": str(datasets_dir / "breastmnist"), "input_size": [28, 28], "augment": AUG, "seed": 1}
    train, val, _ = build_datasets(cfg, "classify", None)
    twin, _, _ = build_datasets(cfg, "classify", None)
    first = train[0]["image"]
    train.set_epoch(1)
    assert not torch.equal(first, train[0]["image"])
    train.set_epoch(0)
    assert torch.equal(first, train[0]["image"]) and torch.equal(first, twin[0]["image"])
    val.set_epoch(5)
    assert torch.equal(val[0]["image"], build_datasets(cfg, "classify", None)[1][0]["image"])


@pytest.mark.parametrize("task", ["classify", "segment"])
def test_items_are_decoded_once_and_augmented_afresh(datasets_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     task: str):
    from kdviewer.distill import data as data_mod

    cfg = ({"path": str(datasets_dir / "brain-tumor-mri"), "input_size": [48, 48], "augment": AUG, "max_items": 6}
           if task == "classify" else
           {"path": str(datasets_dir / "drive" / "training"), "input_size": [64, 64], "patch_size": [32, 32],
            "augment": AUG, "max_items": 3, "repeat": 2})
    cached, _, _ = build_datasets(cfg, task, None)
    loads = []
    name = "classify_base" if task == "classify" else "segment_base"
    real = getattr(data_mod, name)
    monkeypatch.setattr(data_mod, name, lambda item, *a: loads.append(item.key) or real(item, *a))
    per_epoch = []
    for epoch in (0, 1, 0):
        cached.set_epoch(epoch)
        per_epoch.append([cached[i] for i in range(len(cached))])
    assert len(loads) == len(cached.items)  # each image read once, not once per epoch (nor per repeat)
    assert not torch.equal(per_epoch[0][0]["image"], per_epoch[1][0]["image"])  # fresh augmentation each epoch
    monkeypatch.setattr(data_mod, "BASE_CACHE_BYTES", 0)  # nothing kept: every sample made from the file
    uncached, _, _ = build_datasets(cfg, task, None)
    for epoch, samples in zip((0, 1), per_epoch, strict=False):
        uncached.set_epoch(epoch)
        for i, sample in enumerate(samples):
            for key, value in sample.items():
                assert torch.equal(value, uncached[i][key]), (epoch, i, key)
    assert not uncached._base_cache
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(per_epoch[0], per_epoch[2], strict=True))


def test_class_folders_split_stratified_with_max_items(datasets_dir: Path):
    train, val, meta = build_datasets(
        {"path": str(datasets_dir / "brain-tumor-mri"), "input_size": [32, 32], "channels": 3,
         "val_fraction": 0.1, "max_items": 12}, "classify", None)
    assert meta["split"].startswith("split_items of 'train' by image")
    assert len(train) == 12 and len(val) == 12
    assert train[0]["image"].shape == (3, 32, 32)


def test_drive_trains_on_patches_and_validates_on_whole_images(datasets_dir: Path):
    train, val, meta = build_datasets(
        {"path": str(datasets_dir / "drive"), "channels": 3, "patch_size": [64, 64], "augment": AUG,
         "max_items": 2}, "segment", None)
    assert meta["class_names"] == ["background", "vessel"]
    t, v = train[0], val[0]
    assert t["image"].shape == (3, 64, 64) and t["target"].shape == (64, 64) and t["fov"].dtype == torch.bool
    assert v["image"].shape == (3, 584, 565) and v["fov"].float().mean() < 0.8
    assert set(v["target"].unique().tolist()) == {0, 1}


def test_drive_green_channel_with_clahe_is_what_the_runtime_computes(datasets_dir: Path):
    train, val, meta = build_datasets(
        {"path": str(datasets_dir / "drive"), "input_size": [96, 96], "patch_size": [32, 32], "grey": "green",
         "clahe": 0.01, "normalize": "zscore", "max_items": 2}, "segment", None)
    assert meta["preprocess"]["grey"] == "green" and meta["preprocess"]["clahe"] == 0.01
    raw = val.items[0].load().image
    np.testing.assert_array_equal(val[0]["image"].numpy(), preprocess_image(raw, meta["preprocess"], (96, 96)))
    luma = preprocess_image(raw, {**meta["preprocess"], "grey": "luma", "clahe": 0}, (96, 96))
    assert not np.allclose(val[0]["image"].numpy(), luma)
    assert train[0]["image"].shape == (1, 32, 32)


def test_int8_calibration_of_a_patch_trained_model_sees_whole_unaugmented_training_images(datasets_dir: Path):
    from kdviewer.distill.export_int8 import calibration_set

    train, _val, meta = build_datasets(
        {"path": str(datasets_dir / "drive"), "input_size": [96, 96], "patch_size": [32, 32], "augment": AUG,
         "normalize": "zscore", "max_items": 2}, "segment", None)
    calib = calibration_set(train)
    assert train[0]["image"].shape == (1, 32, 32) and calib[0]["image"].shape == (1, 96, 96)
    assert [i.key for i in calib.items] == [i.key for i in train.items]
    np.testing.assert_array_equal(calib[1]["image"].numpy(),
                                  preprocess_image(train.items[1].load().image, meta["preprocess"], (96, 96)))
    whole, _, _ = build_datasets({"path": "pneumoniamnist", "input_size": [32, 32], "max_items": 4}, "classify",
                                 datasets_dir)
    assert calibration_set(whole) is whole


def test_volume_slices_are_2_5d_and_split_by_blocks(datasets_dir: Path):
    train, val, meta = build_datasets(
        {"path": str(datasets_dir / "ircadb-liver17"), "input_size": [64, 64], "window": [60, 400],
         "slices": 3, "block_size": 16}, "segment", None)
    assert meta["in_channels"] == 3 and meta["preprocess"]["window"] == [60.0, 400.0]
    assert meta["split"].endswith("block of 16 slices, seed 0")
    train_blocks = {it.slice_index // 16 for it in train.items}
    assert not train_blocks & {it.slice_index // 16 for it in val.items}
    sample = val[len(val) // 2]
    assert sample["image"].shape == (3, 64, 64) and 0 <= float(sample["image"].min()) <= 1


def test_low_dose_denoising_pairs_are_windowed_and_val_noise_is_fixed(datasets_dir: Path):
    train, val, meta = build_datasets(
        {"path": str(datasets_dir / "tcia-lung-ct"), "input_size": [64, 64], "window": [0, 2000],
         "degrade": {"kind": "low_dose", "photons": 1e4}, "max_items": 2}, "denoise", None)
    assert meta["preprocess"]["normalize"] == "window"
    v1 = val[0]
    val._val_cache.clear()
    val.set_epoch(3)
    assert torch.equal(v1["image"], val[0]["image"])
    assert v1["image"].shape == v1["target"].shape == (1, 64, 64)
    assert 0 <= float(v1["target"].min()) and float(v1["target"].max()) <= 1
    assert not torch.equal(v1["image"], v1["target"])
    t0 = train[0]["image"]
    train.set_epoch(1)
    assert not torch.equal(t0, train[0]["image"])


def test_super_resolution_pairs(datasets_dir: Path):
    train, val, meta = build_datasets(
        {"path": str(datasets_dir / "tcia-lung-ct"), "input_size": [64, 64], "window": [-600, 1500],
         "degrade": {"kind": "downsample", "factor": 2}, "max_items": 2}, "super_resolve", None)
    assert meta["scale"] == 2 and meta["input_size"] == [32, 32] and meta["output_size"] == [64, 64]
    assert val[0]["image"].shape == (1, 32, 32) and val[0]["target"].shape == (1, 64, 64)


def test_super_resolution_patches_are_cut_from_the_downsampled_slice(datasets_dir: Path):
    """A training patch is the window of the whole slice's low-res image under its high-res patch, not a
    downsampled high-res patch (that would give every patch borders a whole slice does not have)."""
    from kdviewer.distill.data_config import DataConfig
    from kdviewer.distill.data_samples import restore_sample
    from kdviewer.imaging.degrade import downsample

    table = {"path": str(datasets_dir / "tcia-lung-ct"), "input_size": [64, 64], "window": [-600, 1500],
             "normalize": "window", "degrade": {"kind": "downsample", "factor": 2}, "patch_size": [16, 16],
             "max_items": 2}
    train, _, _ = build_datasets(table, "super_resolve", None)
    cfg = DataConfig.from_dict(table, "super_resolve", None)
    item = train.items[0]
    full = restore_sample(item, cfg, "super_resolve", False, AugmentConfig(), np.random.default_rng(0))
    for seed in range(4):
        s = restore_sample(item, cfg, "super_resolve", True, AugmentConfig(), np.random.default_rng(seed))
        assert s["image"].shape == (1, 8, 8) and s["target"].shape == (1, 16, 16)
        hits = [(y, x) for y in range(0, 49, 2) for x in range(0, 49, 2)
                if np.array_equal(full["target"][0, y:y + 16, x:x + 16], s["target"][0])]
        assert hits, "the high-res patch is a window of the slice at even coordinates"
        y, x = hits[0]
        np.testing.assert_array_equal(s["image"][0], full["image"][0, y // 2:y // 2 + 8, x // 2:x // 2 + 8])
        own = downsample(s["target"][0], 2)  # what cropping first would have given: differs at the borders
        assert not np.allclose(own, s["image"][0], atol=1e-4)


def test_augmentation_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    mask = np.zeros((48, 48), dtype=np.uint8)
    mask[10:30, 5:20] = 1
    image = mask[None].astype(np.float32)
    cfg = AugmentConfig.from_dict({"hflip": True, "vflip": True, "rotate_deg": 30, "scale": [0.8, 1.2]})
    for _ in range(5):
        out, (m,) = augment_arrays(image, [mask], cfg, rng, intensity=False)
        agree = ((out[0] > 0.5) == (m > 0)).mean()
        assert agree > 0.97 and m.dtype == np.uint8


def test_blur_and_noise_change_the_image_only_on_some_draws_and_never_the_mask():
    """blur / noise (each on half of the draws) soften and roughen the image; the mask stays as it was."""
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[20:40, 20:40] = 1
    image = np.where(mask > 0, 1.0, 0.0)[None].astype(np.float32)
    edge = lambda im: float(np.abs(np.diff(im[0], axis=1)).max())  # noqa: E731
    cfg = AugmentConfig.from_dict({"blur": 2.0})
    outs = [augment_arrays(image, [mask], cfg, rng) for _ in range(40)]
    assert all(np.array_equal(m, mask) for _, (m,) in outs)
    blurred = [edge(o) < 0.95 for o, _ in outs]
    assert 5 < sum(blurred) < 35  # on about half of the draws
    noisy = [augment_arrays(image, [mask], AugmentConfig.from_dict({"noise": 0.5}), rng)[0] for _ in range(40)]
    changed = [not np.array_equal(o, image) for o in noisy]
    assert 5 < sum(changed) < 35 and max(float(np.std(o - image)) for o in noisy) > 0.05
    assert all(np.array_equal(augment_arrays(image, [mask], AugmentConfig.from_dict({"noise": 0.5, "blur": 2}),
                                             rng, intensity=False)[0], image) for _ in range(10))
    with pytest.raises(AugmentConfigError, match="blur"):
        AugmentConfig.from_dict({"blur": -1})


def test_clahe_is_refused_for_restoration(datasets_dir: Path):
    with pytest.raises(DataConfigError, match="data.clahe"):
        build_datasets({"path": "tcia-lung-ct/dicom", "layout": "plain_images", "input_size": [64, 64],
                        "clahe": 0.01, "degrade": {"kind": "gaussian", "sigma": 0.05}}, "denoise", datasets_dir)


def test_blur_and_noise_are_refused_for_restoration(datasets_dir: Path):
    with pytest.raises(DataConfigError, match="degradation"):
        build_datasets({"path": "tcia-lung-ct/dicom", "layout": "plain_images", "input_size": [64, 64],
                        "window": [0, 2000], "normalize": "window", "augment": {"noise": 0.1},
                        "degrade": {"kind": "gaussian", "sigma": 0.05}}, "denoise", datasets_dir)


@pytest.mark.parametrize("data, match", [
    ({"path": "pneumoniamnist", "input_sise": [64, 64]}, "input_sise"),
    ({"input_size": [64, 64]}, "data.path"),
    ({"path": "pneumoniamnist", "normalize": "window"}, "data.window"),
    ({"path": "pneumoniamnist", "degrade": {"kind": "blur"}}, "degrade.kind"),
    ({"path": "pneumoniamnist", "grey": "red"}, "data.grey"),
    ({"path": "pneumoniamnist", "grey": "green", "channels": 3}, "data.channels"),
    ({"path": "pneumoniamnist", "clahe": 1.5}, "data.clahe"),
])
def test_bad_data_tables_name_the_key(datasets_dir: Path, data: dict, match: str):
    with pytest.raises(DataConfigError, match=match):
        build_datasets(data, "classify", datasets_dir)


def test_bad_augment_key_and_unknown_layout_folder(datasets_dir: Path, tmp_path: Path):
    with pytest.raises(AugmentConfigError, match="flip"):
        build_datasets({"path": "pneumoniamnist", "augment": {"flip": True}}, "classify", datasets_dir)
    (tmp_path / "readme.txt").write_text("nothing")
    with pytest.raises(DatasetLayoutError, match="fits no known data-set layout"):
        build_datasets({"path": str(tmp_path)}, "classify", None)
