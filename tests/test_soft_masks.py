"""Soft training masks (`data.mask_resize = "soft"`): class shares on the input grid, moved with the image,
and losses that read them as probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdviewer.distill.augment import AugmentConfig, augment_arrays
from kdviewer.distill.data import DataConfigError, build_datasets
from kdviewer.distill.losses import cldice_loss, dice_ce_loss, dice_loss
from kdviewer.distill.recipe import load_recipe
from kdviewer.distill.trainer import distill_student, train_teacher
from kdviewer.imaging.resample import class_shares

RECIPE = Path(__file__).resolve().parents[1] / "resources" / "recipes" / "retina-vessels.toml"
# DRIVE, 4 images at 64x64, 32x32 patches, two-level U-Nets, one step each
TINY_SEGMENT = ["data.max_items=4", "data.input_size=[64, 64]", "data.patch_size=[32, 32]", "teacher_net.base=4",
                "teacher_net.depth=2", "student_net.base=4", "student_net.depth=2", "train.batch_size=2",
                "distill.batch_size=2", "train.max_steps=1", "distill.max_steps=1"]


def _diagonal_vessel(h: int = 584, w: int = 565) -> np.ndarray:
    """DRIVE's grid with a 1-px vessel running down at a slant (one pixel per row)."""
    mask = np.zeros((h, w), dtype=np.uint8)
    rows = np.arange(h)
    mask[rows, (rows * 0.9).astype(int)] = 1
    return mask


def test_class_shares_keep_a_one_pixel_vessel_that_nearest_neighbour_breaks():
    from kdviewer.imaging.resample import resize_2d

    mask = _diagonal_vessel()
    shares = class_shares(mask, (512, 512))
    assert shares.shape == (2, 512, 512) and shares.dtype == np.float32
    np.testing.assert_allclose(shares.sum(axis=0), 1.0, atol=1e-5)
    assert shares.min() >= 0 and shares.max() <= 1
    scale = 512 * 512 / mask.size
    assert abs(shares[1].sum() - mask.sum() * scale) / (mask.sum() * scale) < 0.02  # its area, to scale
    inner = slice(8, 504)  # away from the grid's first and last rows
    assert shares[1, inner].sum(axis=1).min() > 0.8  # some of the vessel in every row
    nearest = resize_2d(mask, (512, 512), order=0)
    assert (nearest[inner].sum(axis=1) == 0).sum() > 20  # nearest neighbour leaves rows with no vessel: gaps


def test_class_shares_have_one_plane_per_class_even_when_absent():
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[5:10, 5:10] = 2
    shares = class_shares(mask, (20, 20), n_classes=4)
    assert shares.shape == (4, 20, 20)
    assert shares[1].max() == 0 and shares[3].max() == 0 and shares[2].max() > 0.9
    assert class_shares(np.zeros((8, 8), np.uint8), (4, 4)).shape == (2, 4, 4)


def test_soft_shares_move_with_the_image_and_stay_probabilities():
    rng = np.random.default_rng(0)
    mask = np.zeros((48, 48), dtype=np.uint8)
    mask[10:30, 5:20] = 1
    shares = class_shares(mask, (48, 48))
    image = mask[None].astype(np.float32)
    cfg = AugmentConfig.from_dict({"hflip": True, "vflip": True, "rotate_deg": 30, "scale": [0.8, 1.2]})
    for _ in range(5):
        out, (s, hard) = augment_arrays(image, [shares, mask], cfg, rng, intensity=False)
        assert s.shape == (2, 48, 48) and s.dtype == np.float32
        np.testing.assert_allclose(s.sum(axis=0), 1.0, atol=1e-5)
        np.testing.assert_allclose(s[1], out[0], atol=1e-5)  # the same warp as the image
        assert ((s[1] > 0.5) == (hard > 0)).mean() > 0.97


def _drive_table(datasets_dir: Path, **extra) -> dict:
    return {"path": str(datasets_dir / "drive"), "input_size": [96, 96], "patch_size": [32, 32],
            "augment": {"hflip": True, "rotate_deg": 10}, "max_items": 2, **extra}


def test_drive_trains_on_soft_targets_and_validates_on_labels(datasets_dir: Path):
    train, val, _ = build_datasets(_drive_table(datasets_dir, mask_resize="soft"), "segment", None)
    t, v = train[0], val[0]
    assert t["target"].shape == (2, 32, 32) and t["target"].dtype == torch.float32
    torch.testing.assert_close(t["target"].sum(0), torch.ones(32, 32))
    frac = t["target"][1]
    assert ((frac > 0.02) & (frac < 0.98)).any()  # partial shares at a vessel's edge
    assert v["target"].shape == (96, 96) and v["target"].dtype == torch.int64
    plain, _, _ = build_datasets(_drive_table(datasets_dir), "segment", None)
    assert plain[0]["target"].dtype == torch.int64 and plain[0]["target"].shape == (32, 32)


def test_mask_resize_is_checked(datasets_dir: Path):
    with pytest.raises(DataConfigError, match="data.mask_resize"):
        build_datasets(_drive_table(datasets_dir, mask_resize="bilinear"), "segment", None)
    with pytest.raises(DataConfigError, match="data.mask_resize"):
        build_datasets({"path": "pneumoniamnist", "mask_resize": "soft"}, "classify", datasets_dir)


def test_a_recipe_takes_mask_resize():
    r = load_recipe(RECIPE, overrides=['data.mask_resize="soft"'])
    assert r.data.table()["mask_resize"] == "soft"


def test_losses_read_one_hot_shares_as_the_labels_themselves():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16)
    labels = torch.randint(0, 3, (2, 16, 16))
    valid = torch.rand(2, 16, 16) > 0.2
    onehot = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    for loss in (dice_loss, dice_ce_loss, cldice_loss):
        torch.testing.assert_close(loss(logits, onehot, valid=valid), loss(logits, labels, valid=valid))


def test_soft_targets_pull_towards_their_shares():
    """With a 30 % share everywhere, the soft cross-entropy is least where the net says 30 %, not 0 or 1."""
    share = torch.full((1, 1, 8, 8), 0.3)
    target = torch.cat([1 - share, share], dim=1)

    def ce_at(p: float) -> float:
        logit = torch.log(torch.tensor(p / (1 - p)))
        logits = torch.cat([torch.zeros(1, 1, 8, 8), logit.expand(1, 1, 8, 8)], dim=1)
        return float(dice_ce_loss(logits, target, dice_weight=0.0))

    values = {p: ce_at(p) for p in (0.1, 0.3, 0.5, 0.9)}
    assert min(values, key=values.get) == 0.3
    assert values[0.3] == pytest.approx(-(0.3 * np.log(0.3) + 0.7 * np.log(0.7)), rel=1e-5)


def test_teacher_and_pixel_kd_student_train_on_soft_masks(tmp_path: Path):
    tiny = [*TINY_SEGMENT, 'data.mask_resize="soft"']
    teacher = train_teacher(load_recipe(RECIPE, tiny), tmp_path / "t", progress="none", export=False)
    run = distill_student(load_recipe(RECIPE, [*tiny, f"teacher={teacher}"]), tmp_path / "s", progress="none")
    best = json.loads((run / "metrics.json").read_text())["best"]["val"]
    assert 0.0 <= best["dice"] <= 1.0
    onnx_file = next(run.glob("*.onnx"))
    card = json.loads(onnx_file.with_suffix(".json").read_text())
    assert card["training"]["options"]["mask_resize"] == "soft"  # the card says how the targets were made
