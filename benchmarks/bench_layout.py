"""Memory layout of a training step: NCHW (torch's default) against NHWC (`channels_last`), per recipe net.

    .venv/bin/python benchmarks/bench_layout.py [RECIPE ...] [--threads 2] [--steps 12] [--warmup 3]

For each recipe in resources/recipes (or the names given: `ct-denoise retina-vessels`), the teacher as its
`[train]` stage trains it and the student as its `[distill]` stage does: the recipe's own net options, batch
size and training crop (the stage's `patch_size`, else `[data] patch_size`, else `[data] input_size`; the
classifiers' whole `input_size`), random inputs, two classes (the head's size hardly counts). One step =
forward, a mean-square loss on the output, backward, AdamW step; the KD loss and the teacher's forward are left
out (they are the same in both layouts or cached). The two layouts start from the same weights and batch and their steps alternate after warm-up,
so the shared machine's noise falls on both; the table gives each layout's median ms a step (and IQR) and the
ratio NCHW / NHWC (> 1: channels_last is faster), with the recipe's current `channels_last` setting beside
it. torch threads: `--threads`. Asserts nothing.
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


def _stepper(model: torch.nn.Module, x: torch.Tensor, nhwc: bool):
    model = copy.deepcopy(model).train()
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> tuple[float, float]:
        """One training step: (seconds, loss)."""
        t0 = time.perf_counter()
        out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        loss = out.float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0, loss.item()
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", help="recipe names (default: all in resources/recipes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per layout (alternating)")
    parser.add_argument("--warmup", type=int, default=3)
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
            steps = {False: _stepper(net, x, False), True: _stepper(net, x, True)}
            times: dict[bool, list[float]] = {False: [], True: []}
            for i in range(args.warmup + args.steps):
                for nhwc in ((False, True) if i % 2 == 0 else (True, False)):
                    t, _ = steps[nhwc]()
                    if i >= args.warmup:
                        times[nhwc].append(t)
            (a, a_iqr), (b, b_iqr) = median_iqr(times[False]), median_iqr(times[True])
            rows.append([name, role, f"{net.__class__.__name__}", "x".join(map(str, shape)),
                         f"{a * 1e3:.0f} ({a_iqr * 1e3:.0f})", f"{b * 1e3:.0f} ({b_iqr * 1e3:.0f})", f"{a / b:.2f}x",
                         "yes" if recipe.stage(stage).channels_last else "no"])
            print(f"  {name} {role}: NCHW {a * 1e3:.0f} ms, NHWC {b * 1e3:.0f} ms", file=sys.stderr, flush=True)
    print_table(["recipe", "net", "class", "batch (NxCxHxW)", "NCHW ms (IQR)", "NHWC ms (IQR)",
                 "NCHW / NHWC", "recipe sets channels_last"], rows)
    print(f"\n*One run: median of {args.steps} alternating training steps per layout after {args.warmup} warm-up; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {platform.machine()}; "
          f"load {load_average()}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
