"""bfloat16 autocast for training (`precision`, `teacher_precision`): where it applies, what stays float32, and the
float32 fallback on processors without native bfloat16."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from kdviewer.distill import trainer_precision as tp
from kdviewer.distill.data import build_datasets
from kdviewer.distill.recipe import RecipeError, load_recipe
from kdviewer.distill.trainer import distill_student, train_teacher, training_step
from kdviewer.distill.trainer_checkpoint import load_checkpoint

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"
# PneumoniaMNIST, 16 images at 32x32, tiny nets (depthwise and plain convolutions, BatchNorm)
TINY = ["data.max_items=16", "data.input_size=[32, 32]", "teacher_net.arch=mobilenetv2", "teacher_net.width=0.25",
        "student_net.width=0.25", "train.batch_size=4", "distill.batch_size=4", "train.max_steps=2",
        "distill.max_steps=2", "export.int8=false"]
CPU = torch.device("cpu")


# DRIVE, 6 images at 64x64, 32x32 crops, a 2-level U-Net of base 4 with clDice (BatchNorm over many pixels: the
# classifier above normalises 4 values per channel at its last layers, where any rounding is amplified)
VESSELS = ["data.max_items=6", "data.input_size=[64, 64]", "data.patch_size=[32, 32]", "data.repeat=1",
           "teacher_net.base=4", "teacher_net.depth=2", "train.batch_size=4", "train.cldice=0.5"]


def tiny(*overrides: str):
    return load_recipe(RECIPES / "pneumonia-cxr.toml", [*TINY, *overrides])


def vessels(*overrides: str):
    return load_recipe(RECIPES / "retina-vessels.toml", [*VESSELS, *overrides])


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process runs as if on an x86 CPU with AVX512-BF16 (bfloat16 is computed either way; natively or not
    only changes the speed)."""
    monkeypatch.setattr(tp.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(tp, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})


def test_native_bfloat16_is_read_from_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tp.platform, "machine", lambda: "x86_64")
    assert tp.native_bf16(CPU, {"avx2", "avx512_bf16"}) and tp.native_bf16(CPU, {"amx_bf16"})
    assert not tp.native_bf16(CPU, {"avx2", "fma", "avx512f", "avx512_vnni"})  # AVX-512 without BF16: emulated
    assert not tp.native_bf16(torch.device("meta"), {"avx512_bf16"})
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\nprocessor\t: 1\n", encoding="ascii")
    assert tp.cpu_flags(info) == {"fpu", "sse2", "avx2", "avx512_bf16"}
    assert tp.cpu_flags(tmp_path / "missing") == set()
    monkeypatch.setattr(tp.platform, "machine", lambda: "arm64")
    assert not tp.native_bf16(CPU, {"avx512_bf16"})


def test_bf16_falls_back_to_float32_with_a_reason() -> None:
    assert tp.resolve_precision("fp32", CPU, {"avx512_bf16"}) == ("fp32", "")
    effective, why = tp.resolve_precision("bf16", CPU, set())
    assert effective == "fp32" and "no native bfloat16" in why


def test_to_float_casts_nested_outputs() -> None:
    out = tp.to_float({"a": [torch.ones(2, dtype=torch.bfloat16), (torch.zeros(1, dtype=torch.float16),)],
                       "n": torch.arange(3), "s": "text"})
    assert out["a"][0].dtype == torch.float32 and out["a"][1][0].dtype == torch.float32
    assert out["n"].dtype == torch.int64 and out["s"] == "text" and isinstance(out["a"][1], tuple)


def _conv_dtypes(model: nn.Module) -> tuple[list[torch.dtype], list[torch.utils.hooks.RemovableHandle]]:
    """The output dtypes of `model`'s first convolution, recorded by a hook (remove the handles after)."""
    seen: list[torch.dtype] = []
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return seen, [first.register_forward_hook(lambda _m, _i, o: seen.append(o.dtype))]


def test_a_bf16_step_computes_convolutions_in_bf16_and_keeps_float32_weights(bf16_cpu: None) -> None:
    seen = {}
    recipe = vessels()
    datasets = build_datasets(recipe.stage_data("train"), recipe.task, recipe.recipe_dir)
    batch = next(iter(DataLoader(datasets[0], batch_size=4)))
    for precision in ("fp32", "bf16"):
        # seeded: the same initial weights both times
        step = training_step(vessels(f"train.precision={precision}"), "train", datasets=datasets)
        assert step.precision == precision
        dtypes, handles = _conv_dtypes(step.model)
        before = [p.detach().clone() for p in step.model.parameters()]
        loss = step(dict(batch))
        for h in handles:
            h.remove()
        assert all(p.dtype == torch.float32 for p in step.model.parameters())
        assert any(not torch.equal(b, p) for b, p in zip(before, step.model.parameters(), strict=True))
        seen[precision] = (dtypes[0], loss)
    assert seen["fp32"][0] == torch.float32 and seen["bf16"][0] == torch.bfloat16
    # the same batch from the same weights: Dice + CE + clDice agree to well within bfloat16's 3 digits
    assert seen["bf16"][1] == pytest.approx(seen["fp32"][1], rel=1e-2)


def test_a_bf16_teacher_gives_float32_outputs_for_the_kd_loss(bf16_cpu: None, tmp_path: Path) -> None:
    teacher = train_teacher(tiny(), tmp_path / "teacher", progress="none")
    recipe = tiny(f"teacher={teacher}", "distill.teacher_precision=bf16")
    datasets = build_datasets(recipe.stage_data("distill"), recipe.task, recipe.recipe_dir)
    batch = next(iter(DataLoader(datasets[0], batch_size=4)))
    step = training_step(recipe, "distill", datasets=datasets)
    assert (step.precision, step.teacher_precision) == ("fp32", "bf16")
    dtypes, handles = _conv_dtypes(step.teacher)
    out, _ = step.teacher_outputs(batch)
    for h in handles:
        h.remove()
    assert dtypes == [torch.bfloat16] and out.dtype == torch.float32
    with torch.no_grad():
        reference = step.teacher(batch["image"].contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, reference, rtol=0.05, atol=0.05)


def test_runs_record_the_precision_they_trained_in(tmp_path: Path, bf16_cpu: None) -> None:
    teacher = train_teacher(tiny("train.precision=bf16"), tmp_path / "teacher", progress="none")
    run = json.loads((teacher / "run.json").read_text())
    card = json.loads(next(teacher.glob("*-teacher.json")).read_text())
    assert run["precision"] == "bf16" and card["training"]["options"]["precision"] == "bf16 autocast"
    assert all(v.dtype != torch.bfloat16 for v in load_checkpoint(teacher / "best.pt")["model"].values())
    student = distill_student(tiny(f"teacher={teacher}", "distill.teacher_precision=bf16"), tmp_path / "kd",
                              progress="none")
    run = json.loads((student / "run.json").read_text())
    card = json.loads(next(student.glob("*-student.json")).read_text())
    assert run["precision"] == "fp32" and "options" not in card["training"]  # the student itself: float32


def test_without_native_bf16_the_run_says_so_and_trains_in_float32(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tp, "cpu_flags", lambda: {"avx2"})
    out = train_teacher(tiny("train.precision=bf16"), tmp_path / "t", progress="none", export=False)
    assert json.loads((out / "run.json").read_text())["precision"] == "fp32"
    assert 'train.precision = "bf16": this CPU has no native bfloat16' in capsys.readouterr().err


@pytest.mark.parametrize("key", ["train.precision", "distill.precision", "distill.teacher_precision"])
def test_an_unknown_precision_is_a_one_line_recipe_error(key: str) -> None:
    with pytest.raises(RecipeError, match=rf"{key}.*'fp16' is not one of fp32, bf16"):
        tiny(f"{key}=fp16")


def test_an_onnx_teacher_is_said_to_run_in_float32(tmp_path: Path, bf16_cpu: None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    teacher = train_teacher(tiny(), tmp_path / "teacher", progress="none")
    onnx = next(teacher.glob("*-teacher.onnx"))
    assert training_step(tiny(f"teacher={onnx}", "distill.teacher_precision=bf16"), "distill").teacher_precision == "fp32"
    distill_student(tiny(f"teacher={onnx}", "distill.teacher_precision=bf16"), tmp_path / "kd", progress="none",
                    export=False)
    assert "this ONNX teacher runs in onnxruntime, in float32" in capsys.readouterr().err
