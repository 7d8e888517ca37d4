"""A shipped ONNX model (a zoo teacher, or one a researcher was given) as the frozen teacher of a KD run.

The zoo ships teachers as ONNX with a card, not as PyTorch checkpoints; a researcher who wants a student for
their own data should not have to retrain the teacher first. Output-based KD (Hinton, DKD, pixel, CWD,
restoration) needs only the teacher's outputs, which onnxruntime gives on the training batch. Feature methods
(FitNets, attention transfer) need inner layers and are refused with a clear reason.

The card's preprocessing must be the recipe's: the batch the student sees is fed to the teacher as it is.
The file's sha256 is checked against its card before anything is loaded (`runtime.registry.load_model`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdviewer.distill.recipe import Recipe, RecipeError
from kdviewer.distill.trainer_kd import FEATURE_METHODS
from kdviewer.errors import KdviewerError
from kdviewer.imaging.preprocess import OPTIONAL_DEFAULTS, optional_steps
from kdviewer.runtime.errors import RuntimeLayerError
from kdviewer.runtime.registry import Model, names_model_file, resolve_model

# Tasks whose nets are fully convolutional: the teacher may see training patches of any size.
_DENSE_TASKS = ("segment", "denoise", "super_resolve")


def find_onnx_teacher(recipe: Recipe) -> Model | None:
    """The ONNX model named by `recipe.teacher` (a .onnx / card .json path, or a model id such as
    "liver-ct-teacher"), sha256-checked; None when it names a run folder or checkpoint instead.
    Raises `RecipeError` when it names a model file that is missing or fails its card or sha256 check."""
    given = recipe.teacher.strip()
    path = Path(given).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, recipe.recipe_dir / path]
    if names_model_file(given):
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise RecipeError(recipe.source, "teacher", f"{given}: no such model file")
        try:
            return resolve_model(found)
        except KdviewerError as exc:
            raise RecipeError(recipe.source, "teacher", str(exc)) from None
    if not given or any(c.exists() for c in candidates) or "/" in given or "\\" in given:
        return None  # a run folder or a checkpoint (or nothing: the run-folder check says so)
    try:
        return resolve_model(given)
    except KdviewerError:
        return None


class OnnxTeacherNet(nn.Module):
    """A frozen module whose forward runs the ONNX model in onnxruntime on the (CPU) batch."""

    def __init__(self, model: Model, session: Any) -> None:
        super().__init__()
        self.onnx_model = model
        self._session = session
        self._input = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self._session.run(None, {self._input: batch})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)


def check_compatible(model: Model, recipe: Recipe) -> None:
    """Refuse (`RecipeError` on `teacher`) a model that cannot teach this recipe's student as it stands."""
    method = recipe.distill.method

    def refuse(reason: str) -> None:
        raise RecipeError(recipe.source, "teacher", f"{model.id}: {reason}")

    if model.task != recipe.task:
        refuse(f"a {model.task} model cannot teach a {recipe.task} recipe")
    if method in FEATURE_METHODS or recipe.distill.features:
        refuse(f"'{method}' needs the teacher's inner layers, which an ONNX model does not expose: use an "
               "output method (hinton, dkd, pixel, cwd, restoration) or a run folder (best.pt) as teacher")
    if recipe.task in ("classify", "segment") and model.card.output.get("kind", "logits") != "logits":
        refuse(f"KD needs logits, but its output is {model.card.output.get('kind')!r}")
    pre, data = model.preprocess, recipe.data
    if str(pre.get("normalize")) != data.normalize:
        refuse(f"it expects '{pre.get('normalize')}' normalisation, the recipe gives '{data.normalize}'")
    if data.normalize == "window" and [float(v) for v in pre.get("window") or ()] != [
            float(v) for v in data.window or ()]:
        refuse(f"its window is {pre.get('window')}, the recipe's is {list(data.window or ())}")
    if model.channels != data.channels * data.slices:
        refuse(f"it takes {model.channels} input channels, the recipe gives {data.channels * data.slices}")
    theirs_steps, ours_steps = optional_steps(pre), optional_steps({"grey": data.grey, "clahe": data.clahe})
    for key, default in OPTIONAL_DEFAULTS.items():
        theirs, ours = theirs_steps.get(key, default), ours_steps.get(key, default)
        if theirs != ours:
            refuse(f"its preprocessing has {key} = {theirs!r}, the recipe's data.{key} = {ours!r}")
    if recipe.task not in _DENSE_TASKS and tuple(model.input_hw) != tuple(data.input_size):
        refuse(f"it takes {model.input_hw[0]}x{model.input_hw[1]} inputs, the recipe gives "
               f"{data.input_size[0]}x{data.input_size[1]}")


def load_onnx_teacher(model: Model, recipe: Recipe, threads: int = 1) -> OnnxTeacherNet:
    """The checked model as a frozen teacher module; dense tasks accept any spatial size (training patches)."""
    from kdviewer.runtime.session import load_session

    check_compatible(model, recipe)
    try:
        session = load_session(model, threads, dynamic_spatial=recipe.task in _DENSE_TASKS)
    except RuntimeLayerError as exc:
        raise RecipeError(recipe.source, "teacher", f"{model.id}: {exc.reason}") from None
    return OnnxTeacherNet(model, session).eval().requires_grad_(False)


def onnx_teacher_spec(model: Model) -> dict[str, Any]:
    """A `net_spec`-like description of an ONNX teacher (no feature layers; `name` says it is ONNX)."""
    arch = dict(model.card.architecture or {})
    return {"name": f"onnx:{arch.get('name', 'model')}", "kwargs": {}, "in_channels": model.channels,
            "num_classes": max(len(model.labels), 2), "input_size": list(model.input_hw),
            "parameters": arch.get("parameters")}
