"""Data-parallel distillation: `torchrun --nproc-per-node 2 -m kdviewer distill ...` on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from kdviewer.distill.recipe import load_recipe
from kdviewer.distill.trainer import train_teacher
from kdviewer.modelcard import load_card

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "resources" / "recipes" / "pneumonia-cxr.toml"
TINY = ["teacher_net.arch=mobilenetv2", "teacher_net.width=0.25", "student_net.width=0.25", "data.max_items=16",
        "data.input_size=[32, 32]", "train.batch_size=4", "distill.batch_size=4"]


def torchrun() -> list[str]:
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


def test_two_cpu_processes_distil_and_export_once(tmp_path: Path) -> None:
    teacher = train_teacher(load_recipe(RECIPE, [*TINY, "train.max_steps=1"]), tmp_path / "teacher",
                            progress="none", export=False)
    out = tmp_path / "student"
    sets = [arg for item in [*TINY, f"teacher={teacher}"] for arg in ("--set", item)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "kdviewer",
                             "distill", str(RECIPE), *sets, "--max-steps", "2", "--out", str(out),
                             "--progress", "json"],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("done") == 1, "only rank 0 writes events"
    assert events[0]["world_size"] == 2
    assert kinds.count("step") == 2
    card = load_card(out / "pneumonia-cxr-student.json")
    assert (out / card.file["name"]).is_file() and card.teacher == "pneumonia-cxr-teacher"
