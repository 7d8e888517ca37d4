"""[data].degrade.realizations: a fixed pool of K low-dose realisations per slice (CT denoising)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from phantoms import paired_draws, write_phantoms

from kdviewer.distill import data_samples
from kdviewer.distill.data import DataConfigError, build_datasets
from kdviewer.distill.data_samples import clear_realization_cache, low_dose_pool, realization_seed
from kdviewer.imaging.degrade import low_dose_pair

torch.set_num_threads(1)

SIZE = 32


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small grey phantoms (a disc with a few blobs), as a plain-images folder."""
    return write_phantoms(tmp_path_factory.mktemp("plain"), SIZE)


@pytest.fixture(autouse=True)
def _empty_cache():
    clear_realization_cache()
    yield
    clear_realization_cache()


def _data(slices: Path, **degrade) -> dict:
    return {"path": str(slices), "layout": "plain_images", "input_size": [SIZE, SIZE], "window": [128, 256],
            "val_fraction": 0.34, "degrade": {"kind": "low_dose", "photons": 1e4, "angles": 30, **degrade}}


def _canonical(a: np.ndarray) -> bytes:
    """The same bytes for an image and its flips / quarter turns."""
    return min(np.ascontiguousarray(np.rot90(f, k)).tobytes() for f in (a, a[::-1]) for k in range(4))


def test_training_draws_come_from_k_fixed_realizations(slices: Path):
    train, _, _ = build_datasets(_data(slices, realizations=3), "denoise", None)
    target, pool = low_dose_pool(train.items[0], train.cfg)
    assert len(pool) == 3 and target.dtype == np.float32 and target.shape == (SIZE, SIZE)
    assert not target.flags.writeable and len({p.tobytes() for p in pool}) == 3
    seen = set()
    for epoch in range(24):
        train.set_epoch(epoch)
        s = train[0]
        assert s["image"].shape == s["target"].shape == (1, SIZE, SIZE)
        image, tgt = s["image"][0].numpy(), s["target"][0].numpy()
        seen.add(_canonical(image))
        assert _canonical(tgt) == _canonical(target)  # the target moves with the image
    assert seen <= {_canonical(p) for p in pool} and len(seen) == 3
    # Realisation k is the documented low-dose pair, seeded by (seed, item key, k).
    item = train.items[0]
    clean = np.asarray(item.load().image, dtype=np.float32)
    noisy, _ = low_dose_pair(clean, 1e4, 30, np.random.default_rng(realization_seed(train.cfg, item, 1)))
    np.testing.assert_array_equal(pool[1], np.clip((noisy - 0.0) / 256, 0, 1).astype(np.float32))


def test_pool_is_computed_once_and_keyed_by_config(slices: Path, monkeypatch: pytest.MonkeyPatch):
    train, _, _ = build_datasets(_data(slices, realizations=2, target="clean"), "denoise", None)
    twin, _, _ = build_datasets(_data(slices, realizations=2, target="clean"), "denoise", None)
    other, _, _ = build_datasets(_data(slices, realizations=2, target="clean", photons=1e3), "denoise", None)
    first = low_dose_pool(train.items[0], train.cfg)
    assert low_dose_pool(twin.items[0], twin.cfg) is first
    assert not np.array_equal(low_dose_pool(other.items[0], other.cfg)[1][0], first[1][0])
    calls = []
    monkeypatch.setattr(data_samples, "low_dose_realizations", lambda *a, **k: calls.append(1))
    for epoch in range(3):
        train.set_epoch(epoch)
        train[0]  # served from the pool: no new projection
    assert not calls


def test_patches_are_cropped_from_the_pool(slices: Path):
    train, _, _ = build_datasets({**_data(slices, realizations=2), "patch_size": [16, 16]}, "denoise", None)
    s = train[1]
    assert s["image"].shape == s["target"].shape == (1, 16, 16)
    train.set_epoch(1)
    assert train[1]["image"].shape == (1, 16, 16)


def test_validation_is_fixed_across_epochs_and_as_without_a_pool(slices: Path):
    _, val, _ = build_datasets(_data(slices, realizations=4), "denoise", None)
    _, val0, _ = build_datasets(_data(slices), "denoise", None)
    v = val[0]
    val._val_cache.clear()
    val.set_epoch(5)
    assert torch.equal(v["image"], val[0]["image"]) and torch.equal(v["target"], val[0]["target"])
    assert torch.equal(v["image"], val0[0]["image"])


def test_zero_realizations_is_fresh_noise_as_before(slices: Path):
    train0, _, _ = build_datasets(_data(slices, realizations=0), "denoise", None)
    plain, _, _ = build_datasets(_data(slices), "denoise", None)
    for epoch in (0, 1):
        train0.set_epoch(epoch)
        plain.set_epoch(epoch)
        assert torch.equal(train0[0]["image"], plain[0]["image"])
    train0.set_epoch(0)
    a = train0[0]["image"]
    train0.set_epoch(1)
    assert not torch.equal(a, train0[0]["image"])
    # Today's recipe: the training rng (seed, epoch, index) draws the noise of the whole slice.
    item = train0.items[0]
    clean = np.asarray(item.load().image, dtype=np.float32)
    noisy, _ = low_dose_pair(clean, 1e4, 30, train0.rng_for(0))
    np.testing.assert_array_equal(train0[0]["image"][0].numpy(), np.clip(noisy / 256, 0, 1).astype(np.float32))
    assert not data_samples._REALIZATIONS


@pytest.mark.parametrize("degrade, match", [
    ({"realizations": -1}, "realizations must be an integer >= 0"),
    ({"realizations": 2.5}, "realizations must be an integer >= 0"),
    ({"realizations": "4"}, "realizations must be an integer >= 0"),
    ({"realizations": True}, "realizations must be an integer >= 0"),
    ({"kind": "gaussian", "realizations": 2}, "realizations is for kind = 'low_dose'"),
])
def test_bad_realizations_name_the_key(slices: Path, degrade: dict, match: str):
    with pytest.raises(DataConfigError, match=match):
        build_datasets(_data(slices, **degrade), "denoise", None)


def test_interpolating_augmentation_is_refused_with_a_pool(slices: Path):
    with pytest.raises(DataConfigError, match="realizations.*rotate_deg"):
        build_datasets({**_data(slices, realizations=2), "augment": {"rotate_deg": 10, "hflip": True}},
                       "denoise", None)
    build_datasets({**_data(slices, realizations=2), "augment": {"hflip": True}}, "denoise", None)


def test_a_pool_teacher_rides_along_with_unchanged_draws(slices: Path):
    """The teacher runs once per slice (on its whole pool) and its output is cut exactly like the image."""
    data = {**_data(slices, realizations=2), "patch_size": [16, 16]}
    plain, val, _ = build_datasets(data, "denoise", None)
    train, _, _ = build_datasets(data, "denoise", None)
    calls = []

    def teacher(stack: np.ndarray) -> np.ndarray:  # any pixel-wise function shows where each output came from
        calls.append(stack.shape)
        return 2 * stack + 0.25

    train.attach_pool_teacher(teacher)
    for _, b in paired_draws(plain, train):
        assert b["teacher"].shape == (1, 16, 16)
        torch.testing.assert_close(b["teacher"], 2 * b["image"] + 0.25)
    assert calls == [(2, 1, SIZE, SIZE)] * len(train.items)
    with pytest.raises(ValueError, match="training set"):
        val.attach_pool_teacher(teacher)


def test_distill_takes_the_teacher_outputs_from_the_pool(slices: Path, tmp_path: Path):
    """`cache_teacher = true` on a pooled denoising recipe: the step's teacher outputs are the teacher's
    whole-slice outputs cut (and flipped / turned) like the patch. A CNN is not flip-equivariant, so they equal
    the live teacher on the patch taken back to the slice's orientation, away from the patch border."""
    from kdviewer.distill.recipe import load_recipe
    from kdviewer.distill.trainer import train_teacher, training_step

    recipes = Path(__file__).resolve().parents[1] / "resources" / "recipes"
    sets = [f"data.path={slices}", "data.input_size=[32, 32]", "data.patch_size=[16, 16]", "data.window=[128, 256]",
            "data.degrade.angles=30", "teacher_net.depth=3", "teacher_net.channels=4", "student_net.depth=3",
            "student_net.channels=4", "train.batch_size=2", "distill.batch_size=2"]
    teacher = train_teacher(load_recipe(recipes / "ct-denoise.toml", [*sets, "train.max_steps=1"]),
                            tmp_path / "t", progress="none", export=False)
    recipe = load_recipe(recipes / "ct-denoise.toml", [*sets, f"teacher={teacher}", "distill.cache_teacher=true"])
    datasets = build_datasets(recipe.data.table(), "denoise", recipe.recipe_dir)
    step = training_step(recipe, "distill", datasets=datasets)
    sample = datasets[0][3]
    assert "teacher" in sample
    batch = {k: v[None] for k, v in sample.items()}
    out, _ = step.teacher_outputs(batch)
    r = 3  # the receptive-field radius of a 3-layer 3x3 net
    matches = []
    for flip in (False, True):
        for turns in range(4):
            def g(a: torch.Tensor, flip=flip, turns=turns) -> torch.Tensor:
                return torch.rot90(a.flip(-1) if flip else a, turns, dims=(-2, -1))
            with torch.no_grad():
                live = step.teacher(g(batch["image"]))
            inner = (g(out) - live)[..., r:-r, r:-r].abs().max()
            matches.append(bool(inner < 1e-5))
            if inner < 1e-5:
                assert (g(out) - live).abs().max() > 1e-5  # at the patch border the whole-slice output differs
    assert sum(matches) == 1, matches
