"""The files of a run folder besides checkpoints and events: the resolved recipe, run.json, meta.json, metrics.json."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from kdviewer.distill.events import json_safe
from kdviewer.distill.recipe import Recipe, dump_recipe
from kdviewer.distill.trainer_checkpoint import git_revision
from kdviewer.errors import KdviewerError


def resolved(recipe: Recipe) -> Recipe:
    """The recipe with its data path (and teacher) made absolute, as the run folder keeps it."""
    data = dataclasses.replace(recipe.data, path=str(recipe.data_path()))
    teacher = recipe.teacher
    if teacher:
        with contextlib.suppress(KdviewerError):
            from kdviewer.distill.trainer_models import resolve_teacher_path

            path = resolve_teacher_path(recipe)
            teacher = str(path.parent if path.name == "best.pt" else path)
    return dataclasses.replace(recipe, data=data, teacher=teacher)


def recipe_changes(stored: Path, recipe: Recipe) -> list[str]:
    """Keys whose values differ between a run's recipe.toml and `recipe` (epochs and max_steps may change)."""
    if not stored.is_file():
        return []
    before = _flat(tomllib.loads(stored.read_text(encoding="utf-8")))
    after = _flat(tomllib.loads(dump_recipe(resolved(recipe))))
    free = {f"{stage}.{key}" for stage in ("train", "distill") for key in ("epochs", "max_steps")}
    return sorted(k for k in before.keys() | after.keys() if k not in free and before.get(k) != after.get(k))


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and key not in ("augment", "degrade", "simulate"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def write_run_files(run_dir: Path, recipe: Recipe, stage: str, role: str, meta: dict[str, Any], *,
                    world_size: int, teacher: dict[str, str] | None, teacher_outputs: str,
                    precision: str = "fp32") -> None:
    """Start a run folder: recipe.toml (resolved), run.json (revision, stage, teacher, the trained net's
    precision as run on this device), meta.json (the data)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "last.pt").exists():
        raise KdviewerError(f"{run_dir}: already holds a run (last.pt); use --resume or another --out")
    (run_dir / "events.jsonl").unlink(missing_ok=True)
    (run_dir / "recipe.toml").write_text(dump_recipe(resolved(recipe)), encoding="utf-8")
    run = {"stage": stage, "role": role, "revision": git_revision(),
           "started": datetime.now(UTC).isoformat(timespec="seconds"),
           "world_size": world_size, "torch": torch.__version__, "teacher": teacher,
           "teacher_outputs": teacher_outputs, "precision": precision}
    _write_json(run_dir / "run.json", run)
    _write_json(run_dir / "meta.json", {k: v for k, v in meta.items() if _jsonable(v)})


def write_metrics(run_dir: Path, primary: str, best: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """metrics.json: the metric that picks the best checkpoint, the best epoch and every validation so far."""
    _write_json(run_dir / "metrics.json", json_safe({"primary": primary, "best": best, "history": history}))


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
