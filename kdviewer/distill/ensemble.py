"""A teacher made of several trained teachers: `kdviewer ensemble RUN RUN [RUN ...] --out DIR`.

Hinton et al. (2015) distil an ensemble into one small model: an ensemble of nets trained alike from different
seeds is better than any of them (on BreastMNIST's 78 validation images, five MobileNetV2s of AUC 0.88-0.93
averaged to 0.96), so it is a stronger teacher at the cost of running K nets while the student trains.

`ensemble_runs` checks that the runs are finished teacher runs of one recipe's data (the same [data] table, so
the same split, preprocessing and classes) and writes a run folder like `kdviewer train`'s: best.pt holds the
members' best weights as one `nets.ensemble.Ensemble` (mean logit: the normalised geometric mean of the
members' distributions at every temperature), validated on the recipe's validation split; recipe.toml,
meta.json are the first member's, run.json lists the members. Then `kdviewer distill --set teacher=DIR` distils
it (output methods only) and `kdviewer export DIR` writes its ONNX and card.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from kdviewer.distill.events import json_safe
from kdviewer.distill.recipe import load_recipe
from kdviewer.distill.trainer_checkpoint import git_revision, load_checkpoint, save_checkpoint
from kdviewer.distill.trainer_models import build_net
from kdviewer.distill.trainer_run import write_metrics
from kdviewer.distill.trainer_tasks import task_adapter
from kdviewer.errors import KdviewerError

Log = Callable[[str], None]


class EnsembleError(KdviewerError):
    """Runs that cannot make one ensemble (missing, unfinished, not teachers, or of different data)."""


def ensemble_runs(run_dirs: Sequence[str | Path], out: str | Path, log: Log | None = None) -> Path:
    """Write the ensemble of the teacher runs `run_dirs` (>= 2) into the run folder `out`; returns `out`."""
    log = log or (lambda message: None)
    runs = [Path(r).expanduser().resolve() for r in run_dirs]
    if len(runs) < 2:
        raise EnsembleError("an ensemble needs at least two teacher runs")
    if len(set(runs)) != len(runs):
        raise EnsembleError("a run is given twice: an ensemble's members are different runs")
    out = Path(out).expanduser().resolve()
    if out in runs:
        raise EnsembleError(f"{out}: the ensemble's folder must not be one of its members")
    if (out / "best.pt").exists():
        raise EnsembleError(f"{out}: already holds a run (best.pt); choose another --out")
    recipes, ckpts = [], []
    for run in runs:
        for name in ("recipe.toml", "run.json", "meta.json", "best.pt"):
            if not (run / name).is_file():
                raise EnsembleError(f"{run}: not a finished run folder (no {name})")
        info = json.loads((run / "run.json").read_text(encoding="utf-8"))
        if info.get("stage") != "train":
            raise EnsembleError(f"{run}: a {info.get('stage')} run; an ensemble is made of teacher runs "
                                "(kdviewer train)")
        ckpt = load_checkpoint(run / "best.pt")
        if (ckpt.get("net") or {}).get("name") in (None, "ensemble"):
            raise EnsembleError(f"{run}: its checkpoint does not describe one plain network")
        recipes.append(load_recipe(run / "recipe.toml"))
        ckpts.append(ckpt)
    first = recipes[0]
    for run, recipe, ckpt in zip(runs[1:], recipes[1:], ckpts[1:], strict=True):
        if recipe.task != first.task or recipe.data.table() != first.data.table():
            raise EnsembleError(f"{run}: trained on other data or another split than {runs[0]} (its [data] "
                                "table differs)")
        shape = {k: ckpt["net"][k] for k in ("in_channels", "num_classes", "input_size")}
        if shape != {k: ckpts[0]["net"][k] for k in shape}:
            raise EnsembleError(f"{run}: its inputs or outputs ({shape}) differ from {runs[0]}'s")
    base = ckpts[0]["net"]
    spec = {"name": "ensemble", "kwargs": {"members": [{"name": c["net"]["name"], "kwargs": c["net"]["kwargs"]}
                                                       for c in ckpts]},
            "in_channels": base["in_channels"], "num_classes": base["num_classes"], "input_size": base["input_size"]}
    model = build_net(spec)
    for member, ckpt in zip(model.members, ckpts, strict=True):
        member.load_state_dict(ckpt["model"])
    model.eval()
    meta = json.loads((runs[0] / "meta.json").read_text(encoding="utf-8"))
    log(f"validating the ensemble of {len(runs)} teachers on the validation split")
    val = validate(model, first, meta)
    members = [{"run": str(run), "epoch": int(c.get("epoch", 0)), "val": json_safe(dict(c.get("val") or {}))}
               for run, c in zip(runs, ckpts, strict=True)]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(runs[0] / "recipe.toml", out / "recipe.toml")
    shutil.copyfile(runs[0] / "meta.json", out / "meta.json")
    run_info = {"stage": "train", "role": "teacher", "revision": git_revision(),
                "started": datetime.now(UTC).isoformat(timespec="seconds"), "torch": torch.__version__,
                "teacher": None, "teacher_outputs": "live", "ensemble": members}
    (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")
    primary = task_adapter(first.task, meta).primary
    write_metrics(out, primary, {"epoch": 0, "val": val}, [])  # the members' own: run.json "ensemble"
    # epoch: the latest of the members' best epochs; step: all the members' steps (what the ensemble cost)
    save_checkpoint({"model": model.state_dict(), "net": spec, "task": first.task, "stage": "train",
                     "id": f"{first.name}-teacher", "epoch": max(m["epoch"] for m in members),
                     "step": sum(int(c.get("step") or 0) for c in ckpts), "val": val}, out / "best.pt")
    log(f"ensemble: {primary} {val.get(primary, float('nan')):.4f} (members: "
        + ", ".join(f"{m['val'].get(primary, float('nan')):.4f}" for m in members) + ")")
    return out


def validate(model: torch.nn.Module, recipe: Any, meta: dict[str, Any]) -> dict[str, float]:
    """The task's validation metrics of `model` on the recipe's validation split, as training computes them."""
    from kdviewer.distill.data import build_datasets

    _, val_ds, data_meta = build_datasets(recipe.data.table(), recipe.task, recipe.recipe_dir)
    adapter = task_adapter(recipe.task, {**data_meta, **meta})
    loader = DataLoader(val_ds, batch_size=16, shuffle=False)

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(images)

    return dict(adapter.evaluate(predict, loader))
