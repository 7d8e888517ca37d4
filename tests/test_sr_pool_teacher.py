"""Super-resolution KD with the teacher's whole-slice outputs (`[distill] cache_teacher = true`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from phantoms import paired_draws, write_phantoms

from kdviewer.distill.data import build_datasets

torch.set_num_threads(1)

SIZE = 32


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small grey phantoms (a disc with a few blobs, on a ramp), as a plain-images folder."""
    return write_phantoms(tmp_path_factory.mktemp("plain_sr"), SIZE, seed=3, ramp=2.0)


def _data(root: Path, **extra) -> dict:
    return {"path": str(root), "layout": "plain_images", "input_size": [SIZE, SIZE], "normalize": "window",
            "window": [128, 256], "degrade": {"kind": "downsample", "factor": 2}, "patch_size": [16, 16],
            "augment": {"hflip": True, "vflip": True}, "repeat": 3, **extra}


def test_the_teacher_rides_along_flipped_and_cut_with_unchanged_draws(slices: Path):
    """The teacher runs once per slice on the whole low-res image; every draw (flips, aligned crop) is the
    same as without it, and the teacher's output is flipped and cut exactly like the target."""
    plain, val, _ = build_datasets(_data(slices), "super_resolve", None)
    train, _, _ = build_datasets(_data(slices), "super_resolve", None)
    calls = []

    def teacher(stack: np.ndarray) -> np.ndarray:  # nearest x2: commutes with flips, so it shows the cut
        calls.append(stack.shape)
        return stack.repeat(2, axis=-2).repeat(2, axis=-1) + 0.5

    assert train.can_pool_teacher and not val.can_pool_teacher
    train.attach_pool_teacher(teacher)
    for _, b in paired_draws(plain, train):
        assert b["teacher"].shape == (1, 16, 16)
        torch.testing.assert_close(b["teacher"], b["image"].repeat_interleave(2, -2).repeat_interleave(2, -1)
                                   + 0.5, rtol=0, atol=0)
    assert calls == [(1, 1, SIZE // 2, SIZE // 2)] * len(train.items)
    with pytest.raises(ValueError, match="training set"):
        val.attach_pool_teacher(teacher)


def test_only_flips_may_ride_along(slices: Path):
    """A rotation or zoom interpolates the high-res slice before downsampling: the whole-slice output would
    not be the teacher's output for that draw, so the set refuses a pool teacher (the trainer computes live)."""
    train, _, _ = build_datasets(_data(slices, augment={"hflip": True, "rotate_deg": 10}), "super_resolve", None)
    assert not train.can_pool_teacher
    with pytest.raises(ValueError, match="flips only"):
        train.attach_pool_teacher(lambda x: x)


def test_distill_takes_the_teacher_outputs_from_the_whole_slice(slices: Path, tmp_path: Path):
    """`cache_teacher = true` on the super-resolution recipe: the step's teacher outputs are the teacher's
    output on the whole low-res slice in its stored orientation, flipped and cut like the patch. A CNN is not
    flip-equivariant: they equal the live teacher on the patch taken back to the slice's orientation (away
    from the patch border), and no other orientation."""
    from kdviewer.distill.recipe import load_recipe
    from kdviewer.distill.trainer import train_teacher, training_step

    recipes = Path(__file__).resolve().parents[1] / "resources" / "recipes"
    sets = [f"data.path={slices}", "data.input_size=[96, 96]", "data.patch_size=[64, 64]",
            "data.window=[128, 256]", "teacher_net.num_blocks=1", "teacher_net.channels=4",
            "student_net.num_blocks=1", "student_net.channels=4", "train.batch_size=2", "distill.batch_size=2"]
    teacher = train_teacher(load_recipe(recipes / "ct-superres.toml", [*sets, "train.max_steps=1"]),
                            tmp_path / "t", progress="none", export=False)
    recipe = load_recipe(recipes / "ct-superres.toml", [*sets, f"teacher={teacher}", "distill.cache_teacher=true"])
    datasets = build_datasets(recipe.data.table(), "super_resolve", recipe.recipe_dir)
    step = training_step(recipe, "distill", datasets=datasets)
    matches = []
    for index in range(4):
        sample = datasets[0][index]
        assert "teacher" in sample and sample["teacher"].shape == sample["target"].shape
        batch = {k: v[None] for k, v in sample.items()}
        out, _ = step.teacher_outputs(batch)
        # high-res pixels within reach of the patch border: 8 low-res (9x9 head, one block's two 3x3 convs,
        # fuse, upsampling conv), then the 9x9 tail at high resolution
        r = 2 * 8 + 4 + 2
        found = []
        for h in (False, True):
            for v in (False, True):
                def g(a: torch.Tensor, h=h, v=v) -> torch.Tensor:
                    a = a.flip(-1) if h else a
                    return a.flip(-2) if v else a
                with torch.no_grad():
                    live = step.teacher(g(batch["image"]))
                inner = (g(out) - live)[..., r:-r, r:-r].abs().max()
                found.append(bool(inner < 1e-5))
        matches.append(sum(found))
    assert matches == [1, 1, 1, 1], matches
