"""Building the nets of a run from its recipe, and loading a frozen teacher from a run folder or checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdviewer.distill.nets import create_model
from kdviewer.distill.recipe import NetConfig, Recipe, RecipeError, load_recipe
from kdviewer.distill.trainer_checkpoint import load_checkpoint


def net_spec(net: NetConfig, recipe: Recipe, meta: dict[str, Any]) -> dict[str, Any]:
    """Everything `create_model` needs, as a plain dict that is stored in every checkpoint."""
    kwargs: dict[str, Any] = net.kwargs()
    if recipe.task == "super_resolve":
        kwargs["scale"] = int(meta.get("scale") or recipe.data.degrade.get("factor", 2))
    n_classes = int(meta.get("num_classes") or len(meta.get("class_names") or []) or 2)
    size = meta.get("input_size") or recipe.data.input_size
    return {"name": net.arch, "kwargs": kwargs, "in_channels": int(meta["in_channels"]),
            "num_classes": n_classes if recipe.task in ("classify", "segment") else 2,
            "input_size": [int(v) for v in size]}


def build_net(spec: dict[str, Any], key: str | None = None, source: Path | None = None) -> nn.Module:
    """The (randomly initialised) net described by `net_spec`; a bad option is a `RecipeError` on `key`."""
    try:
        return create_model(spec["name"], in_channels=spec["in_channels"], num_classes=spec["num_classes"],
                            input_size=tuple(spec["input_size"]), **spec["kwargs"])
    except (ValueError, TypeError) as exc:
        raise RecipeError(source, key, f"{spec['name']}: {exc}") from None


@dataclass(frozen=True)
class Teacher:
    """A frozen teacher: the module (eval mode, no gradients), its net spec, its model id and where it came from."""

    model: nn.Module
    spec: dict[str, Any]
    id: str
    path: Path


def resolve_teacher_path(recipe: Recipe) -> Path:
    """The teacher checkpoint of a recipe: `teacher` is a run folder (its best.pt) or a checkpoint file."""
    if not recipe.teacher:
        raise RecipeError(recipe.source, "teacher", "distill needs a teacher: --set teacher=RUN_DIR (or a .pt "
                          "file, an ONNX model's .onnx / .json, or a model id such as liver-ct-teacher)")
    given = Path(recipe.teacher).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, recipe.recipe_dir / given]
    for path in candidates:
        if path.is_dir():
            if (path / "best.pt").is_file():
                return path / "best.pt"
            raise RecipeError(recipe.source, "teacher", f"{path} is a folder without best.pt (not a finished run)")
        if path.is_file():
            return path
    raise RecipeError(recipe.source, "teacher", f"{recipe.teacher}: no such run folder or checkpoint")


def load_teacher(recipe: Recipe, device: torch.device) -> Teacher:
    """Load the recipe's teacher, frozen: eval mode and `requires_grad_(False)`.

    A run folder or checkpoint is loaded with `weights_only=True`; an ONNX model (a path to its .onnx or card,
    or a model id of the registry) runs in onnxruntime after its sha256 check (`distill.onnx_teacher`).
    """
    from kdviewer.distill.onnx_teacher import find_onnx_teacher, load_onnx_teacher, onnx_teacher_spec

    onnx_model = find_onnx_teacher(recipe)
    if onnx_model is not None:
        net = load_onnx_teacher(onnx_model, recipe, threads=max(1, torch.get_num_threads()))
        return Teacher(net, onnx_teacher_spec(onnx_model), onnx_model.id, onnx_model.onnx_path)
    path = resolve_teacher_path(recipe)
    ckpt = load_checkpoint(path)
    spec = ckpt.get("net")
    teacher_id = str(ckpt.get("id") or path.stem)
    run_recipe = path.parent / "recipe.toml"
    if run_recipe.is_file():  # a run folder: its recipe says which net the teacher is
        theirs = load_recipe(run_recipe)
        teacher_id = f"{theirs.name}-teacher"
        if spec is None:
            raise RecipeError(path, "net", "the checkpoint does not describe its network")
        spec = {"name": theirs.teacher_net.arch, **spec}  # the checkpoint's own net name, where it has one
    if spec is None:
        raise RecipeError(path, "net", "the checkpoint does not describe its network")
    model = build_net(spec, "teacher", path)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval().requires_grad_(False)
    return Teacher(model, spec, teacher_id, path)
