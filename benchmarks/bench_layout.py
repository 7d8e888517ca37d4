"""Memory layout of a training step: NCHW (torch's default) against NHWC (`channels_last`), per recipe net; or
with `--compare precision`, float32 against bfloat16 autocast (`precision = "bf16"`), both in the recipe's layout.

    .venv/bin/python benchmarks/bench_layout.py [RECIPE ...] [--threads 2] [--steps 12] [--warmup 3]
    .venv/bin/python benchmarks/bench_layout.py --compare precision [RECIPE ...]

For each recipe in resources/recipes (or the names given: `ct-denoise retina-vessels`), the teacher as its
`[train]` stage trains it and the student as its `[distill]` stage does: the recipe's own net options, batch
size and training crop (the stage's `patch_size`, else `[data] patch_size`, else `[data] input_size`; the
classifiers' whole `input_size`), random inputs, two classes (the head's size hardly counts). One step =
forward, a mean-square loss on the output, backward, AdamW step; the KD loss and the teacher's forward are left
out (they are the same in both layouts or cached). The two layouts start from the same weights and batch and their steps alternate after warm-up,
so the shared machine's noise falls on both; the table gives each layout's median ms a step (and IQR) and the
ratio NCHW / NHWC (> 1: channels_last is faster), with the recipe's current `channels_last` setting beside
it. `--compare precision` times the same steps in float32 and under bfloat16 autocast (what the trainer does with
`precision = "bf16"`), and the teacher's no-grad forward as a live KD teacher runs it (`teacher_precision`);
the ratio is float32 / bfloat16 (> 1: bfloat16 is faster), with the recipe's settings and whether this CPU has
native bfloat16 (`kdviewer.distill.trainer_precision.native_bf16`). torch threads: `--threads`. Asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time

import torch
from _common import REPO, load_average, median_iqr, print_table

from kdviewer.distill.recipe import Recipe, load_recipe
from kdviewer.distill.trainer_models import build_net, net_spec
from kdviewer.distill.trainer_precision import autocast, native_bf16

RECIPES = REPO / "resources" / "recipes"


def _in_channels(recipe: Recipe) -> int:
    """Input channels of the recipe's nets: image channels times the 2.5-D slices stacked as channels."""
    return recipe.data.channels * max(1, recipe.data.slices)


def _shape(recipe: Recipe, stage: str) -> tuple[int, int, int, int]:
    cfg = recipe.stage(stage)
    if recipe.task == "classify":
        size = recipe.data.input_size
    else:
        size = cfg.patch_size or recipe.data.patch_size or recipe.data.input_size
    if recipe.task == "super_resolve":  # the nets see the low-resolution crop
        factor = int(recipe.data.degrade.get("factor", 2))
        size = (size[0] // factor, size[1] // factor)
    return cfg.batch_size, _in_channels(recipe), int(size[0]), int(size[1])


def _nets(recipe: Recipe) -> list[tuple[str, str, torch.nn.Module]]:
    meta = {"in_channels": _in_channels(recipe), "num_classes": 2}
    return [("teacher", "train", build_net(net_spec(recipe.teacher_net, recipe, meta))),
            ("student", "distill", build_net(net_spec(recipe.student_net, recipe, meta)))]


def _stepper(model: torch.nn.Module, x: torch.Tensor, nhwc: bool, precision: str = "fp32", train: bool = True):
    """A timed training step of a copy of `model` on `x` (or, `train` False, a no-grad eval forward)."""
    model = copy.deepcopy(model).train(train)
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cpu = torch.device("cpu")

    def step() -> tuple[float, float]:
        """One training step (or forward): (seconds, loss)."""
        t0 = time.perf_counter()
        with torch.set_grad_enabled(train), autocast(precision, cpu):
            out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        loss = out.float().square().mean()
        if train:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t0, loss.item()
    return step


def _alternate(steps: dict, warmup: int, n: int) -> dict:
    """Run the two steppers in alternating order (warm-up discarded): their times in seconds."""
    keys = list(steps)
    times: dict = {k: [] for k in keys}
    for i in range(warmup + n):
        for k in (keys if i % 2 == 0 else keys[::-1]):
            t, _ = steps[k]()
            if i >= warmup:
                times[k].append(t)
    return times


def _cell(seconds: list[float]) -> tuple[float, str]:
    med, iqr = median_iqr(seconds)
    return med, f"{med * 1e3:.0f} ({iqr * 1e3:.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", help="recipe names (default: all in resources/recipes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per layout (alternating)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compare", choices=("layout", "precision"), default="layout")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.recipes or sorted(p.stem for p in RECIPES.glob("*.toml"))
    rows = []
    for name in names:
        path = RECIPES / f"{name}.toml"
        if not path.is_file():
            print(f"error: no recipe {name} in {RECIPES}", file=sys.stderr)
            return 2
        recipe = load_recipe(path)
        for role, stage, net in _nets(recipe):
            shape = _shape(recipe, stage)
            torch.manual_seed(0)
            x = torch.randn(shape)
            cfg = recipe.stage(stage)
            if args.compare == "layout":
                pairs = [(role, x.shape, {False: _stepper(net, x, False), True: _stepper(net, x, True)},
                          "yes" if cfg.channels_last else "no")]
            else:
                pairs = [(role, x.shape, {p: _stepper(net, x, cfg.channels_last, p) for p in ("fp32", "bf16")},
                          cfg.precision)]
                if role == "teacher":  # its forward as a live KD teacher, on the student's batch
                    xs = torch.randn(_shape(recipe, "distill"))
                    pairs.append(("teacher forward (KD)", xs.shape,
                                  {p: _stepper(net, xs, recipe.distill.channels_last, p, train=False)
                                   for p in ("fp32", "bf16")}, recipe.distill.teacher_precision))
            for label, shape_run, steps, setting in pairs:
                times = _alternate(steps, args.warmup, args.steps)
                (a, a_cell), (b, b_cell) = (_cell(v) for v in times.values())
                rows.append([name, label, net.__class__.__name__, "x".join(map(str, shape_run)), a_cell, b_cell,
                             f"{a / b:.2f}x", setting])
                print(f"  {name} {label}: {a * 1e3:.0f} / {b * 1e3:.0f} ms", file=sys.stderr, flush=True)
    if args.compare == "layout":
        heads = ["NCHW ms (IQR)", "NHWC ms (IQR)", "NCHW / NHWC", "recipe sets channels_last"]
    else:
        heads = ["float32 ms (IQR)", "bfloat16 ms (IQR)", "float32 / bfloat16", "recipe's precision"]
    print_table(["recipe", "net", "class", "batch (NxCxHxW)", *heads], rows)
    what = "layout" if args.compare == "layout" else "precision"
    native = "" if args.compare == "layout" else f"; native bfloat16: {native_bf16(torch.device('cpu'))}"
    print(f"\n*One run: median of {args.steps} alternating training steps per {what} after {args.warmup} warm-up; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {platform.machine()}{native}; "
          f"load {load_average()}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
