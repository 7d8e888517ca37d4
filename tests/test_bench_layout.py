"""benchmarks/bench_layout.py: each stage's net sees the batch and crop its stage trains on, and the two layouts
time the same arithmetic (same weights, same batch, same loss)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from kdviewer.distill.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_layout  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _recipe(name: str):
    return load_recipe(REPO / "resources" / "recipes" / f"{name}.toml")


def test_shapes_follow_each_stage() -> None:
    denoise = _recipe("ct-denoise")
    assert bench_layout._shape(denoise, "train") == (8, 1, 48, 48)      # the teacher's own crops
    assert bench_layout._shape(denoise, "distill") == (8, 1, 96, 96)    # [data] patch_size
    sr = _recipe("ct-superres")
    assert bench_layout._shape(sr, "distill")[2:] == (48, 48)           # the nets see the low-resolution crop
    pneumonia = _recipe("pneumonia-cxr")
    assert bench_layout._shape(pneumonia, "train")[2:] == tuple(pneumonia.data.input_size)


def test_layouts_compute_the_same_step() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    x = torch.randn(2, 1, 16, 16)
    steps = {nhwc: bench_layout._stepper(net, x, nhwc) for nhwc in (False, True)}
    for _ in range(3):  # same loss step after step: same start, same update, only the memory order differs
        (t0, a), (t1, b) = steps[False](), steps[True]()
        assert t0 > 0 and t1 > 0 and a == pytest.approx(b, rel=1e-5)
    # the stepper trains a copy: the given net is untouched, so both layouts start from the same weights
    assert all(p.grad is None for p in net.parameters())


def test_unknown_recipe_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_layout.main(["no-such-recipe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no recipe no-such-recipe")
