"""data.repeat: each training item gives several fresh random samples per epoch; validation is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdviewer.distill.data import DataConfigError, build_datasets

torch.set_num_threads(1)


def _drive(datasets_dir: Path, **extra):
    return build_datasets({"path": str(datasets_dir / "drive"), "channels": 1, "patch_size": [32, 32],
                           "input_size": [128, 128], "augment": {"hflip": True}, "max_items": 3, **extra},
                          "segment", None)


def test_repeat_multiplies_training_samples_with_distinct_patches(datasets_dir: Path):
    train1, val1, _ = _drive(datasets_dir)
    train4, val4, _ = _drive(datasets_dir, repeat=4)
    assert len(train4) == 4 * len(train1) and len(val4) == len(val1)
    n = len(train1)
    # index i and i + n come from the same image, but are different random patches
    for i in range(n):
        a, b = train4[i]["image"], train4[i + n]["image"]
        assert a.shape == b.shape == (1, 32, 32)
        assert not torch.equal(a, b)
    # the first n samples are the repeat=1 ones (same item, same rng key), so repeat=1 runs are unchanged
    assert all(torch.equal(train4[i]["image"], train1[i]["image"]) for i in range(n))
    assert torch.equal(val4[0]["image"], val1[0]["image"])


@pytest.mark.parametrize("bad", [0, -2, 1.5, "4", True])
def test_bad_repeat_is_refused_naming_the_key(datasets_dir: Path, bad):
    with pytest.raises(DataConfigError, match="data.repeat"):
        _drive(datasets_dir, repeat=bad)
