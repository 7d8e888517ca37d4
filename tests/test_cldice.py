"""Soft clDice (Shit et al. 2021): the soft skeleton, the loss's response to broken and blotted tubes, the recipe key
and the term in a training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdviewer.distill.losses import cldice_loss, dice_loss, soft_skeleton
from kdviewer.distill.recipe import RecipeError, load_recipe
from kdviewer.distill.trainer import train_teacher

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"


def bar() -> torch.Tensor:
    """(1, 1, 20, 20): a horizontal tube 3 px thick (rows 9-11, columns 2-17)."""
    t = torch.zeros(1, 1, 20, 20)
    t[0, 0, 9:12, 2:18] = 1
    return t


def logits_of(mask: torch.Tensor) -> torch.Tensor:
    """Two-class logits that are confident about `mask` (1, 1, H, W)."""
    fg = torch.where(mask.bool(), 10.0, -10.0)
    return torch.cat([-fg, fg], dim=1)


def test_soft_skeleton_of_a_tube_is_its_centre_line() -> None:
    skel = soft_skeleton(bar(), iterations=3)
    rows = (skel[0, 0] > 0.5).nonzero()[:, 0]
    assert set(rows.tolist()) == {10}  # only the middle row of the three
    assert 10 <= int((skel[0, 0] > 0.5).sum()) <= 16
    assert float(soft_skeleton(torch.zeros(1, 1, 8, 8)).sum()) == 0.0


def test_cldice_is_zero_when_right_and_punishes_a_break_more_than_dice_does() -> None:
    truth = bar()
    target = truth[:, 0].long()
    assert cldice_loss(logits_of(truth), target).item() == pytest.approx(0.0, abs=1e-6)
    cut = truth.clone()
    cut[..., 9:11] = 0  # the tube broken in two: 6 of 48 pixels lost
    assert cldice_loss(logits_of(cut), target).item() > 0.05
    blot = truth.clone()
    blot[0, 0, 2:18, 8:12] = 1  # a blob across the tube: the predicted skeleton leaves the truth
    assert cldice_loss(logits_of(blot), target).item() > cldice_loss(logits_of(truth), target).item() + 0.02
    # pixels outside `valid` do not count: the same break, masked out, is no error
    valid = torch.ones(1, 20, 20, dtype=torch.bool)
    valid[:, :, 6:14] = False
    assert cldice_loss(logits_of(cut), target, valid=valid).item() < cldice_loss(logits_of(cut), target).item()
    assert dice_loss(logits_of(cut), target).item() > 0  # Dice sees the lost pixels too, as a share of area


def test_cldice_gradient_is_finite() -> None:
    logits = torch.randn(2, 2, 32, 32, requires_grad=True)
    target = (torch.rand(2, 32, 32) > 0.8).long()
    cldice_loss(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


TINY_SEGMENT = ["data.max_items=4", "data.input_size=[64, 64]", "data.patch_size=[32, 32]", "teacher_net.base=4",
                "teacher_net.depth=2", "train.batch_size=2", "train.max_steps=1"]


def test_the_term_is_added_to_the_segmenters_loss(tmp_path: Path) -> None:
    """The same first step (same net, same batch) with and without `cldice`: the loss grows by the weighted term."""
    def first_loss(*extra: str) -> float:
        r = load_recipe(RECIPES / "retina-vessels.toml", [*TINY_SEGMENT, *extra])
        run = train_teacher(r, tmp_path / f"run{len(extra)}", progress="none", export=False)
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
        return next(e["loss"] for e in events if e["event"] == "step")

    plain, with_term = first_loss(), first_loss("train.cldice=0.5")
    assert 0.0 < with_term - plain <= 0.5 + 1e-6


@pytest.mark.parametrize(("recipe", "value"), [("retina-vessels", "-1"), ("retina-vessels", "nan"),
                                               ("pneumonia-cxr", "0.5")])
def test_a_bad_or_misplaced_weight_is_named(recipe: str, value: str) -> None:
    with pytest.raises(RecipeError, match="distill.cldice"):
        load_recipe(RECIPES / f"{recipe}.toml", [f"distill.cldice={value}"])
