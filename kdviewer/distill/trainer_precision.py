"""Mixed precision for training: bfloat16 autocast where the processor computes it natively.

`[train]/[distill] precision = "bf16"` runs the trained net's forward (and `[distill] teacher_precision = "bf16"`
a live torch teacher's) under `torch.autocast(dtype=torch.bfloat16)`: convolutions and matrix products take
bfloat16 inputs and accumulate in float32, the weights, the optimizer's state, the losses and validation stay in
float32 (Kalamkar et al. 2019, "A study of BFLOAT16 for deep learning training"). On a CPU with AVX512-BF16 or
AMX, oneDNN's bfloat16 convolutions made a ResNet-50 or U-Net training step 1.7-1.8x faster
(`benchmarks/bench_layout.py --compare precision`); depthwise convolutions (MobileNetV2) were slower, so recipes ask for it per net.
Where the device has no native bfloat16 (an AVX2 laptop, where it would be emulated and slow), the run trains in
float32 and says so once: the recipe still runs everywhere. Float32 steps take ~1.7x as long there, so a recipe may
carry a shorter schedule for that case (`[without_bf16.train]` / `[without_bf16.distill]`, e.g. fewer epochs), which
`schedule_for_device` puts in place of the stage's own.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Any

import torch

from kdviewer.distill.recipe import Recipe, apply_without_bf16, stage_precisions

_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first processor's feature flags (Linux); an empty set where they cannot be read."""
    try:
        with cpuinfo.open(encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device, flags: set[str] | None = None) -> bool:
    """True where bfloat16 arithmetic is native on `device`: a CUDA GPU that supports it, or an x86 CPU with
    AVX512-BF16 or AMX (read from /proc/cpuinfo; False where that cannot be read)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)


def resolve_precision(requested: str, device: torch.device, flags: set[str] | None = None) -> tuple[str, str]:
    """The precision a run will use for `requested` on `device`, and why it differs ("" when it does not)."""
    if requested == "bf16" and not native_bf16(device, flags):
        return "fp32", ("this GPU has no native bfloat16" if device.type == "cuda"
                        else "this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
    return requested, ""


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """A bfloat16 autocast region for "bf16", nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_float(value: Any) -> Any:
    """`value` with every floating tensor in it (a tensor, or lists / tuples / dicts of them) as float32, so that
    losses and metrics are computed in float32 after a bfloat16 forward."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, (list, tuple)):
        return type(value)(to_float(v) for v in value)
    if isinstance(value, dict):
        return {k: to_float(v) for k, v in value.items()}
    return value


def schedule_for_device(recipe: Recipe, stage: str, device: torch.device,
                        flags: set[str] | None = None) -> tuple[Recipe, str]:
    """The recipe `stage` runs with on `device`: where the stage asks for bfloat16 and the device computes it in
    float32, `[without_bf16.<stage>]`'s keys replace the stage's (a shorter float32 schedule that keeps the
    recipe's time budget); else the recipe as it is. The second value says what changed ("" when nothing)."""
    table = recipe.without_bf16.get(stage)
    if not table or "bf16" not in stage_precisions(recipe, stage) or native_bf16(device, flags):
        return recipe, ""
    changed = apply_without_bf16(recipe, stage)
    keys = ", ".join(f"{stage}.{k} = {getattr(changed.stage(stage), k)!r}" for k in table)
    return changed, f"[without_bf16.{stage}]: {keys} (bfloat16 is not native here: the float32 schedule)"
