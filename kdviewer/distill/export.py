"""Export a run to ONNX with its model card (`<id>.onnx`, `<id>.json`, `<id>.md` in the run folder).

The ONNX graph has a dynamic batch axis, is checked against torch in onnxruntime on real validation
inputs (the largest absolute difference goes in the card), and optionally gets an INT8 sibling
(`<id>-int8.onnx` with its own card), kept only if it is faster and its validation metrics drop by at most one
point (`kdviewer.distill.export_int8`). `quantize_exported` re-makes that INT8 model for an exported model (its
card), on the data its card's recipe names: to re-check or re-make a shipped model's INT8 on another CPU.

Float16 weights (`weights="float16"`): every float32 initialiser is stored as float16 and a `Cast`
node turns it back into float32 when the model loads, so the graph still takes and computes in float32
(half the file, no fp16 arithmetic). The card's `file.weights` says "float16".
"""

from __future__ import annotations

import json
import time
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch.utils.data import DataLoader

from kdviewer.distill.events import json_safe
from kdviewer.distill.recipe import RecipeError, dump_recipe, load_recipe, recipe_from_dict
from kdviewer.distill.trainer_checkpoint import load_checkpoint
from kdviewer.distill.trainer_models import build_net
from kdviewer.distill.trainer_tasks import task_adapter
from kdviewer.errors import KdviewerError
from kdviewer.modelcard import INTENDED_USE, ModelCard, load_card, save_card, sha256_file
from kdviewer.runtime.segment import postprocess_limits

Log = Callable[[str], None]
# "one point" of each metric an INT8 model must hold (classify: AUC and accuracy; segment: Dice; enhance: PSNR, dB)
ONE_POINT = {"auc": 0.01, "accuracy": 0.01, "dice": 0.01, "psnr": 0.5}


class ExportError(KdviewerError):
    """A run that cannot be exported (missing files, or an ONNX model that does not match torch)."""


def _validated(ckpt: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(epoch index, validation metrics) of a checkpoint's weights: a best checkpoint carries its own; a last
    checkpoint's are its final history entry (its "epoch" counts the epochs begun, one past the validated one)."""
    if "val" in ckpt:
        return int(ckpt.get("epoch", 0)), dict(ckpt.get("val") or {})
    history = ckpt.get("history") or []
    if history:
        return int(history[-1].get("epoch", 0)), dict(history[-1].get("val") or {})
    return max(int(ckpt.get("epoch", 1)) - 1, 0), {}


def export_run(run_dir: str | Path, which: str = "best", *, int8: bool | None = None,
               weights: str | None = None, log: Log | None = None) -> tuple[Path, Path]:
    """Export `run_dir/<which>.pt` to `<id>.onnx` + `<id>.json` + `<id>.md`; returns (onnx_path, card_path)."""
    run_dir = Path(run_dir).resolve()
    log = log or (lambda message: None)
    for name in ("recipe.toml", "run.json", f"{which}.pt"):
        if not (run_dir / name).is_file():
            raise ExportError(f"{run_dir}: not a finished run folder (no {name})")
    recipe = load_recipe(run_dir / "recipe.toml")
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    meta = _read_json(run_dir / "meta.json")
    ckpt = load_checkpoint(run_dir / f"{which}.pt")
    model = build_net(ckpt["net"])
    # last.pt of a run with a weight average (`ema_epochs`) holds both: the average is what the run keeps
    model.load_state_dict((ckpt.get("ema") or {}).get("model") or ckpt["model"])
    model.eval()
    weights = weights or recipe.export.weights
    model_id = f"{recipe.name}-{run['role']}"

    from kdviewer.distill.data import build_datasets

    train_ds, val_ds, data_meta = build_datasets(recipe.data.table(), recipe.task, recipe.recipe_dir)
    meta = {**meta, **{k: v for k, v in data_meta.items() if k not in meta}}
    inputs = next(iter(DataLoader(val_ds, batch_size=min(8, len(val_ds)))))["image"]  # type: ignore[arg-type]

    onnx_path = run_dir / f"{model_id}.onnx"
    _to_onnx(model, inputs, onnx_path, recipe.export.opset, weights)
    diff = _max_abs_diff(model, inputs, onnx_path)
    tolerance = 1e-3 if weights == "float32" else 5e-2
    if not np.isfinite(diff) or diff > tolerance * max(1.0, _scale(model, inputs)):
        raise ExportError(f"{onnx_path}: onnxruntime differs from torch by {diff:.3g} on validation inputs")
    log(f"exported {onnx_path.name}: max |onnxruntime - torch| = {diff:.2e}")

    card = _card(model_id, recipe, run, meta, ckpt, onnx_path, weights, diff, model)
    card_path = save_card(card, onnx_path.with_suffix(".json"))
    onnx_path.with_suffix(".md").write_text(markdown_card(card), encoding="utf-8")
    if recipe.export.int8 if int8 is None else int8:
        _export_int8(card, onnx_path, train_ds, val_ds, recipe.task, meta, log)
    return onnx_path, card_path


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _to_onnx(model: torch.nn.Module, inputs: torch.Tensor, path: Path, opset: int, weights: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    # The TorchScript exporter (dynamo=False): the torch.export-based one writes opset 18 and its conversion
    # down to 17 fails on Reduce nodes (torch 2.13, onnxscript 0.7), and the runtime targets opset 17.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (inputs[:1],), str(tmp), opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          dynamo=False)
    if weights == "float16":
        proto = onnx.load(str(tmp))
        fp16_initializers_with_cast(proto)
        onnx.save(proto, str(tmp))
    onnx.checker.check_model(str(tmp))
    tmp.replace(path)


def fp16_initializers_with_cast(proto: onnx.ModelProto) -> None:
    """Store float32 initialisers as float16, each followed by a Cast back to float32 (in place)."""
    graph = proto.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}_to_fp32"))
    for i, node in enumerate(casts):
        graph.node.insert(i, node)


def _session(path: Path, threads: int = 1, optimization: str = "all") -> Any:
    """An onnxruntime CPU session; `optimization` "all" (the runtime's default) or "basic" (no fused kernels)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimization == "all"
                                        else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _scale(model: torch.nn.Module, inputs: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model(inputs).abs().max())


def _max_abs_diff(model: torch.nn.Module, inputs: torch.Tensor, path: Path) -> float:
    with torch.no_grad():
        expected = model(inputs).numpy()
    got = _session(path).run(None, {"input": inputs.numpy()})[0]
    if got.shape != expected.shape:
        raise ExportError(f"{path}: onnxruntime output shape {got.shape} != torch {expected.shape}")
    return float(np.max(np.abs(got - expected)))


def _output_spec(task: str, meta: dict[str, Any]) -> dict[str, Any]:
    if task in ("classify", "segment"):
        return {"kind": "logits", "labels": list(meta.get("class_names") or [])}
    if task == "super_resolve":
        return {"kind": "image", "scale": int(meta.get("scale") or 2)}
    return {"kind": "image"}


def _card(model_id: str, recipe: Any, run: dict[str, Any], meta: dict[str, Any], ckpt: dict[str, Any],
          onnx_path: Path, weights: str, diff: float, model: torch.nn.Module) -> ModelCard:
    from kdviewer.distill.nets import count_parameters

    spec = ckpt["net"]
    stage_cfg = recipe.stage(run["stage"])
    kd: dict[str, Any] = {"method": "none"}
    if run["stage"] == "distill":
        d = recipe.distill
        kd = {"method": d.method, "temperature": d.temperature, "alpha": d.alpha}
        if d.method == "dkd":
            kd.update(dkd_alpha=d.dkd_alpha, dkd_beta=d.dkd_beta)
        if d.features or d.method in ("fitnets", "attention"):
            kd.update(feature_weight=d.feature_weight, features=[list(p) for p in d.features])
        kd["teacher_outputs"] = run.get("teacher_outputs", "live")
    size = [int(v) for v in spec["input_size"]]
    counts = meta.get("counts", {})
    limits = [f"trained on {counts.get('train', '?')} images, validated on {counts.get('val', '?')} "
              f"({meta.get('dataset_name', recipe.data.path)})",
              f"inputs resized to {size[0]}x{size[1]}"]
    if stage_cfg.max_steps:
        limits.append(f"quick trial: stopped after {ckpt.get('step')} optimizer steps")
    if meta.get("simulation"):
        limits.append(str(meta["simulation"]))
    limits += [str(limit) for limit in recipe.limits]
    limits += postprocess_limits(recipe.export.postprocess if recipe.task == "segment" else {})
    if weights == "float16":
        limits.append("float16 weights, cast to float32 when the model loads")
    teacher = (run.get("teacher") or {}).get("id") if run["stage"] == "distill" else None
    weight_options = _weight_options(stage_cfg, run, recipe.data.mask_resize)
    options = {"options": weight_options} if weight_options else {}  # only when the stage sets any
    return ModelCard(
        id=model_id, task=recipe.task, role=run["role"], teacher=teacher,
        architecture={"name": spec["name"], **spec["kwargs"], "parameters": count_parameters(model)},
        file={"name": onnx_path.name, "sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size,
              "weights": weights},
        input={"shape": [None, spec["in_channels"], *size], "modalities": list(recipe.modalities),
               "spacing_mm": meta.get("spacing_mm"), "preprocess": meta.get("preprocess", {}),
               "slices": recipe.data.slices},
        output=_output_spec(recipe.task, meta),
        # argmax unless the recipe thresholds p(label 1) (runtime.segment.probabilities_to_labels)
        postprocess=(({} if "threshold" in recipe.export.postprocess else {"argmax": True})
                     | dict(recipe.export.postprocess)) if recipe.task == "segment" else {},
        training={"dataset": meta.get("dataset_name", ""), "licence": meta.get("licence", ""),
                  "recipe": dump_recipe(recipe), "kd": kd, **options, "epochs": stage_cfg.epochs,
                  "epochs_done": _validated(ckpt)[0] + 1, "steps": ckpt.get("step"), "seed": recipe.seed,
                  "revision": run.get("revision", "unknown"), "stage": run["stage"]},
        metrics={"validation": json_safe(dict(_validated(ckpt)[1]))},
        export={"opset": recipe.export.opset, "max_abs_diff_vs_torch": diff, "dynamic_batch": True},
        intended_use=INTENDED_USE, limits=tuple(limits))


def _weight_options(cfg: Any, run: dict[str, Any], mask_resize: str = "nearest") -> dict[str, float | str]:
    """The stage's training options that change what the exported weights are (the card names them: soft
    training masks too), and the precision the net was trained in where it was not float32 (as run on that
    device: run.json)."""
    options: dict[str, float | str] = {key: float(getattr(cfg, key)) for key in ("cldice", "ema_epochs")
                                       if getattr(cfg, key, 0)}
    if mask_resize != "nearest":
        options["mask_resize"] = mask_resize
    if run.get("precision", "fp32") != "fp32":
        options["precision"] = f"{run['precision']} autocast"
    return options


def markdown_card(card: ModelCard) -> str:
    """A short human-readable card."""
    val = ", ".join(f"{k} {v:.4f}" for k, v in card.metrics.get("validation", {}).items()
                    if isinstance(v, (int, float)))
    kd = card.training.get("kd", {})
    lines = [f"# {card.id}", "", f"**{card.intended_use}**", "",
             f"- Task: {card.task} ({card.role}{', teacher ' + card.teacher if card.teacher else ''})",
             f"- Architecture: {card.architecture['name']}, {card.architecture['parameters']:,} parameters",
             f"- File: `{card.file['name']}` ({card.file['bytes']:,} bytes, {card.file['weights']} weights)",
             f"- Input: {card.input['shape']}, preprocess {card.input['preprocess']}",
             f"- Output: {card.output}",
             *([f"- Post-processing: {card.postprocess}"] if card.postprocess else []),
             f"- Data: {card.training.get('dataset')} (licence: {card.training.get('licence') or 'unknown'})",
             f"- Distillation: {kd}",
             *([f"- Training options: {card.training['options']}"] if card.training.get("options") else []),
             f"- Validation: {val or 'n/a'}",
             f"- ONNX opset {card.export.get('opset')}, max |onnxruntime - torch| "
             f"{card.export.get('max_abs_diff_vs_torch', float('nan')):.2e}",
             f"- Code revision: {card.training.get('revision')}", "", "## Limits", ""]
    lines += [f"- {limit}" for limit in card.limits]
    return "\n".join(lines) + "\n"


def _export_int8(card: ModelCard, onnx_path: Path, train_ds: Any, val_ds: Any, task: str,
                 meta: dict[str, Any], log: Log) -> Path | None:
    """Static INT8 quantisation calibrated on training images; kept only if the metric drops ≤ 1 point."""
    from kdviewer.distill.export_int8 import quantize_and_compare

    return quantize_and_compare(card, onnx_path, train_ds, val_ds, task_adapter(task, meta), ONE_POINT, log,
                                session=_session, timer=time.perf_counter)


def quantize_exported(card_path: str | Path, data: str | Path | None = None, log: Log | None = None) -> Path | None:
    """Re-make the INT8 sibling of an exported FP32 model from its card (`<id>.json`), on this machine.

    The model file must match the card's sha256. Calibration and validation data are the splits the card's
    training recipe makes of its data (`data` points elsewhere when the folder has moved); the run folder is not
    needed. The result is judged as at export (`quantize_and_compare`); returns the INT8 path, or None when it
    was not kept (then no `<id>-int8.*` is left beside the model). Raises ExportError (or ModelCardError).
    """
    card_path = Path(card_path).resolve()
    card = load_card(card_path)
    if card.file.get("weights") == "int8":
        raise ExportError(f"{card_path}: an INT8 model already; give the card of its FP32 model")
    onnx_path = card_path.with_name(str(card.file["name"]))
    if not onnx_path.is_file():
        raise ExportError(f"{onnx_path}: no such model file (named by {card_path.name})")
    if sha256_file(onnx_path) != card.file["sha256"]:
        raise ExportError(f"{onnx_path}: does not match the sha256 in {card_path.name}; not quantised")
    text = (card.training or {}).get("recipe")
    if not text:
        raise ExportError(f"{card_path}: the card has no training recipe to rebuild its data splits from")
    try:
        raw = tomllib.loads(str(text))
        raw["teacher"] = ""  # the teacher is not needed, and its run folder may be gone
        if data is not None:
            raw.setdefault("data", {})["path"] = str(Path(data).expanduser().resolve())
        recipe = recipe_from_dict(raw, card_path)  # a relative data path is taken from the card's folder
    except (tomllib.TOMLDecodeError, RecipeError) as exc:
        raise ExportError(f"{card_path}: the card's training recipe cannot be used ({exc})") from None
    if not recipe.data_path().exists():
        raise ExportError(f"{recipe.data_path()}: the card's training data is not here; give its folder with --data")
    from kdviewer.distill.data import build_datasets

    train_ds, val_ds, meta = build_datasets(recipe.data.table(), recipe.task, recipe.recipe_dir)
    return _export_int8(card, onnx_path, train_ds, val_ds, recipe.task, meta, log or (lambda message: None))
