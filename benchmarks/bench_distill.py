"""Distillation benchmark (issue 3): images/s of one KD training step, kdviewer's trainer vs a bare torch loop.

    .venv/bin/python benchmarks/bench_distill.py [--batch 32] [--threads 2] [--quick]

Cases: ResNet-50 → MobileNetV2 (Hinton KD) at 28², 64², 224² and U-Net → unet_small (pixel KD + Dice/CE)
at 256², 1 channel, 2 classes, random in-memory tensors; each with the teacher run live and with its
outputs cached. kdviewer's side is the trainer's own `DistillStep`, as `trainer.training_step` builds it
for a distill run of a recipe (teacher loaded from a checkpoint by `load_teacher`, optimizer and schedule
from the recipe, `cache_teacher` for the cached rows), given the in-memory data set through its
`datasets=` argument. The baseline is a bare loop doing the same arithmetic: teacher forward under
no_grad (or its logits precomputed), student forward, the same loss written inline, backward, AdamW
step. A second, identical bare loop runs in the same alternation as a control: its ratio to the first
(bare/bare) is this run's noise floor, printed beside the kdviewer ratio and as its own row. All start
from the same weights and batch; their first-step losses are printed side by side. Steps of the three
alternate, after warm-up, so that the noise of the shared machine falls on all. Prints a table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy
import torch
import torch.nn.functional as F
from _common import REPO, load_average, median_iqr, print_table
from torch.utils.data import default_collate

GOAL_RATIO = 1.5  # bare images/s / kdviewer images/s (kdviewer at most 1.5x slower)
LR, WEIGHT_DECAY = 2e-3, 1e-4  # DistillConfig defaults, used by both sides


@dataclass(frozen=True)
class Case:
    """One row pair of the table: a teacher → student KD step at one input size."""

    label: str
    task: str          # classify | segment
    teacher: str       # registry names (kdviewer.distill.nets)
    student: str
    size: int          # H = W, pixels
    method: str        # hinton | pixel
    temperature: float
    alpha: float
    steps: int         # timed steps per side (full run)
    quick_steps: int   # timed steps per side (--quick)


CASES = (
    Case("ResNet-50 → MobileNetV2, Hinton KD", "classify", "resnet50", "mobilenetv2", 28, "hinton", 4.0, 0.5, 5, 3),
    Case("ResNet-50 → MobileNetV2, Hinton KD", "classify", "resnet50", "mobilenetv2", 64, "hinton", 4.0, 0.5, 5, 3),
    Case("ResNet-50 → MobileNetV2, Hinton KD", "classify", "resnet50", "mobilenetv2", 224, "hinton", 4.0, 0.5, 3, 2),
    Case("U-Net → unet_small, pixel KD + Dice/CE", "segment", "unet", "unet_small", 256, "pixel", 2.0, 0.5, 3, 2),
)


# -- the bare baseline: the same arithmetic, written inline --------------------------------------------------

def bare_hinton(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temp: float, alpha: float) -> torch.Tensor:
    """alpha·CE(y, s) + (1 − alpha)·T²·KL(softmax(t/T) ‖ softmax(s/T)), batchmean."""
    kl = F.kl_div(F.log_softmax(s / temp, 1), F.log_softmax(t / temp, 1), reduction="batchmean", log_target=True)
    return alpha * F.cross_entropy(s, y) + (1 - alpha) * temp**2 * kl


def bare_pixel(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temp: float, alpha: float) -> torch.Tensor:
    """alpha·(batch Dice of the foreground + CE) + (1 − alpha)·T²·mean over pixels of KL(p_t ‖ p_s)."""
    p = F.softmax(s, 1)[:, 1:]
    g = F.one_hot(y, s.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(p.dtype)
    dice = 1 - ((2 * (p * g).sum((0, 2, 3)) + 1e-5) / (p.sum((0, 2, 3)) + g.sum((0, 2, 3)) + 1e-5)).mean()
    log_ps, log_pt = F.log_softmax(s / temp, 1), F.log_softmax(t / temp, 1)
    kd = (log_pt.exp() * (log_pt - log_ps)).sum(1).mean() * temp**2
    return alpha * (dice + F.cross_entropy(s, y)) + (1 - alpha) * kd


BARE_LOSS = {"hinton": bare_hinton, "pixel": bare_pixel}


def bare_step(case: Case, batch: dict, teacher_state: dict, student_state: dict, cached: bool
              ) -> Callable[[], float]:
    """A closure doing one bare KD step on `batch` (nets built from the registry, weights as given)."""
    from kdviewer.distill.nets import create_model

    def net(name: str, state: dict) -> torch.nn.Module:
        model = create_model(name, in_channels=1, num_classes=2, input_size=(case.size, case.size))
        model.load_state_dict(state)
        return model

    teacher = net(case.teacher, teacher_state).eval().requires_grad_(False)
    student = net(case.student, student_state).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    x, y = batch["image"], batch["target"]
    loss_fn = BARE_LOSS[case.method]
    precomputed = None
    if cached:
        with torch.no_grad():
            precomputed = teacher(x)

    def step() -> float:
        if precomputed is None:
            with torch.no_grad():
                t = teacher(x)
        else:
            t = precomputed
        loss = loss_fn(student(x), t, y, case.temperature, case.alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


# -- kdviewer: the trainer's own step -----------------------------------------------------------------------

class _InMemory(torch.utils.data.Dataset):
    """Items {"image": (1, H, W) float32, "target": () or (H, W) int64}, as distill.data gives them."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def random_items(case: Case, n: int) -> list[dict]:
    """n random images in [0, 1) with random labels (class per image, or per pixel for segment)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, case.size, case.size, generator=g)
    shape = (n,) if case.task == "classify" else (n, case.size, case.size)
    targets = torch.randint(0, 2, shape, generator=g)
    return [{"image": images[i], "target": targets[i]} for i in range(n)]


def kdviewer_step(case: Case, batch_size: int, cached: bool, workdir: Path
                  ) -> tuple[Callable[[], float], dict, dict, dict]:
    """(step, batch, teacher state, student's initial state): `step()` is the `DistillStep` of a distill run
    of a recipe, built by `trainer.training_step` on random in-memory items, called on one batch."""
    from kdviewer.distill.recipe import recipe_from_dict
    from kdviewer.distill.trainer import training_step
    from kdviewer.distill.trainer_checkpoint import save_checkpoint
    from kdviewer.distill.trainer_models import build_net

    spec = {"name": case.teacher, "kwargs": {}, "in_channels": 1, "num_classes": 2,
            "input_size": [case.size, case.size]}
    torch.manual_seed(1)
    teacher_state = build_net(spec).state_dict()
    ckpt = save_checkpoint({"model": teacher_state, "net": spec}, workdir / f"teacher-{case.teacher}-{case.size}.pt")
    recipe = recipe_from_dict({
        "name": "bench", "task": case.task, "teacher": str(ckpt), "device": "cpu", "seed": 0,
        "data": {"path": str(workdir), "input_size": [case.size, case.size], "channels": 1},
        "teacher_net": {"arch": case.teacher}, "student_net": {"arch": case.student},
        "distill": {"method": case.method, "temperature": case.temperature, "alpha": case.alpha,
                    "batch_size": batch_size, "epochs": 1, "optimizer": "adamw", "lr": LR,
                    "weight_decay": WEIGHT_DECAY, "schedule": "none", "cache_teacher": cached},
    })
    items = _InMemory(random_items(case, batch_size))
    meta = {"in_channels": 1, "num_classes": 2, "class_names": ["0", "1"], "input_size": [case.size, case.size]}
    step = training_step(recipe, "distill", datasets=(items, items, meta))
    if (step.cache is not None) != cached:
        raise RuntimeError(f"the trainer chose {'cached' if step.cache is not None else 'live'} teacher outputs")
    step.model.train()
    # "index": the items' place in the training split, the key of the teacher-output cache.
    batch = default_collate([{**items[i], "index": i} for i in range(batch_size)])
    student_state = copy.deepcopy(step.model.state_dict())
    return (lambda: step(batch)), batch, teacher_state, student_state


# -- measuring ----------------------------------------------------------------------------------------------

SIDES = ("kdviewer", "bare", "bare copy")


def measure(case: Case, batch_size: int, cached: bool, warmup: int, steps: int, workdir: Path) -> dict:
    """Wall and process-CPU step times (s) of kdviewer, the bare loop and an identical copy of the bare loop
    (the control), interleaved in a rotating order after `warmup` untimed steps each, and their first losses.
    CPU time (all threads of this process) is less disturbed by other work on the machine."""
    kd, batch, teacher_state, student_state = kdviewer_step(case, batch_size, cached, workdir)
    sides = dict(zip(SIDES, (kd, *(bare_step(case, batch, teacher_state, student_state, cached)
                                    for _ in range(2))), strict=True))
    first = {}
    for name, step in sides.items():
        torch.manual_seed(0)  # the same dropout masks in the first step of all
        first[name] = step()  # with cached outputs, kdviewer's first step fills its cache
        for _ in range(warmup - 1):
            step()
    times: dict[str, list[float]] = {name: [] for name in SIDES}
    cpu: dict[str, list[float]] = {name: [] for name in SIDES}
    for i in range(steps):
        for name in SIDES[i % 3:] + SIDES[:i % 3]:  # each side goes first, second and third in turn
            t0, c0 = time.perf_counter(), time.process_time()
            sides[name]()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    del kd, sides
    gc.collect()
    return {"times": times, "cpu": cpu, "first_loss": first}


# -- reporting ----------------------------------------------------------------------------------------------

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def versions() -> str:
    """Library versions, threads and the revision of the code measured (the trainer is still changing)."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "kdviewer/distill"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    distill = REPO / "kdviewer" / "distill"
    files = ", ".join(f"{name} {_sha(distill / name)}"
                      for name in ("trainer.py", "trainer_step.py", "trainer_kd.py", "losses.py"))
    return (f"Python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}; "
            f"torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), "
            f"oneDNN {torch.backends.mkldnn.is_available()}\n"
            f"kdviewer {rev.strip()}{' + uncommitted changes in kdviewer/distill' if dirty else ''}; "
            f"sha256[:12] {files}")


def _fmt(times: list[float], batch_size: int) -> str:
    mid, iqr = median_iqr(times)
    return f"{batch_size / mid:.1f} img/s ({mid * 1000:.0f} ms/step, IQR {iqr * 1000:.0f})"


def _ratio(r: dict, clock: str, side: str) -> float:
    """Median step time of `side` / that of the bare loop (= bare img/s / `side` img/s)."""
    return median_iqr(r[clock][side])[0] / median_iqr(r[clock]["bare"])[0]


def table_rows(results: list[tuple[Case, bool, dict]], batch_size: int, warmup: int) -> list[list[str]]:
    """Per case and teacher-output mode, two rows: kdviewer vs bare (ratio, the noise floor beside it, the
    goal, the verdict), then the control, bare copy vs bare, measured in the same alternation."""
    rows = []
    for case, cached, r in results:
        kd, bare, copy_ = (r["times"][name] for name in SIDES)
        ratio, noise = _ratio(r, "times", "kdviewer"), _ratio(r, "times", "bare copy")
        loss = r["first_loss"]
        mode, steps = "cached" if cached else "live", f"{warmup} + {len(kd)}"
        rows.append([case.label, f"{case.size}²", mode, steps, _fmt(kd, batch_size), _fmt(bare, batch_size),
                     f"{ratio:.2f}×", f"{noise:.2f}×", f"{_ratio(r, 'cpu', 'kdviewer'):.2f}×",
                     f"{loss['kdviewer']:.4f} / {loss['bare']:.4f}", f"≤ {GOAL_RATIO}×",
                     "PASS" if ratio <= GOAL_RATIO else "MISS"])
        rows.append(["  control: bare loop copy (bare/bare)", f"{case.size}²", mode, steps, _fmt(copy_, batch_size),
                     _fmt(bare, batch_size), f"{noise:.2f}×", "", f"{_ratio(r, 'cpu', 'bare copy'):.2f}×",
                     f"{loss['bare copy']:.4f} / {loss['bare']:.4f}", "noise floor", ""])
    return rows


NOTES = """
How it is measured:
- kdviewer: `trainer.training_step(recipe, "distill", datasets=(items, items, meta))`, the DistillStep a
  distill run builds (recipe from a dict, teacher checkpoint written and read back by load_teacher with
  weights_only, AdamW and the schedule from the recipe, distill.cache_teacher = true for the cached rows), on
  random in-memory items. One step = `step(batch)` on a pre-collated batch (with "index"): student forward,
  teacher forward or cache look-up + stack, Distiller.loss, zero_grad, backward, AdamW step, LR-schedule
  step, float(loss). The DataLoader, events and checkpoints of a run's epoch loop are not timed.
- bare: registry nets with the same weights, teacher forward under no_grad (cached: logits computed once
  before timing), student forward, the loss written inline, zero_grad(set_to_none), backward, AdamW step.
- control: a second bare loop, built identically, timed in the same rotation (each of the three sides goes
  first, second and third in turn). Its ratio to the bare loop ("bare/bare") would be 1.00× on a quiet
  machine; how far it strays is this run's noise floor, so a kdviewer ratio within that distance of
  1.00× is no measurable overhead.
- The first (untimed) step of all sides starts from the same weights, batch and RNG state: "first loss"
  shows they compute the same loss. In cached rows kdviewer's first step also fills its teacher-output cache.
- Images/s = batch / median step time; ratio = median step time / bare median step time
  (= bare img/s / kdviewer img/s; goal: kdviewer within 1.5× of bare); PASS/MISS is on this wall-time ratio.
  "same, CPU time": the ratio of median process CPU times per step (all threads), a check less disturbed
  when other jobs load the machine (a load average above the CPU count means steps wait for a core).
- ResNet-50 and MobileNetV2 pick their small-input stem (stride 1, no max-pool) at ≤ 64 px, as in kdviewer's
  recipes, so 64² costs about as much as a 256² ImageNet-stem input.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 32, --quick 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side before timing (default 1)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per side for every case (default: 5 below 224², 3 at 224² and 256²)")
    parser.add_argument("--quick", action="store_true", help="batch 8 and 2-3 timed steps: a smoke run")
    args = parser.parse_args(argv)
    batch_size = args.batch or (8 if args.quick else 32)
    torch.set_num_threads(args.threads)
    print(f"kdviewer distillation benchmark{' (--quick)' if args.quick else ''}, {datetime.now(UTC):%Y-%m-%d %H:%M} "
          f"UTC, {platform.node()}, {os.cpu_count()} CPUs")
    print(versions())
    print(f"Batch {batch_size}, 1 channel, 2 classes, random inputs; {args.warmup} warm-up step(s) per side, then "
          f"the timed steps of the three sides (kdviewer, bare, bare copy) rotate. Load average before: "
          f"{load_average()}.")
    steps_note = args.steps or ", ".join(f"{c.size}²: {c.quick_steps if args.quick else c.steps}" for c in CASES)
    print(f"Timed steps per side: {steps_note} (few at 224²/256²: a ResNet-50/U-Net step takes seconds on this CPU; "
          "medians of so few steps are rough).\n")
    results = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        for case in CASES:
            steps = args.steps or (case.quick_steps if args.quick else case.steps)
            for cached in (False, True):
                t0 = time.perf_counter()
                results.append((case, cached, measure(case, batch_size, cached, args.warmup, steps, Path(tmp))))
                print(f"  measured {case.teacher} → {case.student} {case.size}² {'cached' if cached else 'live'} "
                      f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print_table(["case", "input", "teacher outputs", "steps (warm-up + timed)", "kdviewer DistillStep",
                 "bare torch loop (same run)", "bare/kdviewer", "noise: bare/bare", "same, CPU time",
                 "first loss kdviewer / bare", "goal", "result"],
                table_rows(results, batch_size, args.warmup))
    print(f"\nTotal {time.perf_counter() - t_start:.0f} s. Load average after: {load_average()} "
          f"(on {os.cpu_count()} CPUs; above that, other work shares them).")
    print(NOTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
