"""Install a finished run's exported model into the user's model folder, where the registry finds it.

`kdviewer distill` leaves `<id>.onnx`, `<id>.json` (card) and `<id>.md` in its run folder;
`install_model(card)` copies them to `user_models_dir()` so the viewer lists the model at once.
The copy is checked (schema and sha256) before it becomes visible, and a model is never visible
half-installed: its card, the file the registry looks for, is put in place last, by a rename.
The installed card records the run folder (`training.run_dir`), so an installed teacher can be
picked as the teacher of a new distillation.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from kdviewer.modelcard import ModelCard, ModelCardError, save_card
from kdviewer.runtime.errors import RuntimeLayerError
from kdviewer.runtime.registry import SHIPPED_DIR, Model, load_model, scan_models, user_models_dir

# Files of a run folder that are JSON but no model card.
_RUN_FILES = {"run.json", "meta.json", "metrics.json"}


class InstallError(RuntimeLayerError):
    """A model cannot be installed (bad card or file, id taken by a shipped model, folder not writable)."""


def install_model(card_path: str | os.PathLike[str], user_dir: str | os.PathLike[str] | None = None) -> Model:
    """Copy a model (its card, `.onnx` and `.md`) into the user model folder and return it as the registry sees it.

    A user model with the same id is replaced (a rerun of the same recipe). Raises `InstallError`
    when the card or its file does not check out, when a shipped model has the id, or when the
    folder cannot be written; nothing is left behind then.
    """
    try:  # schema + sha256 of the run's own files, before anything is copied
        source = load_model(card_path)
    except (ModelCardError, RuntimeLayerError) as exc:
        raise InstallError(None, f"not installed: {exc}") from None
    dest = user_models_dir(user_dir)
    _refuse_shipped_id(source.id, source.card_path)
    card = source.card
    if source.card_path.parent.resolve() != dest.resolve():
        training = {**card.training, "run_dir": str(source.card_path.parent.resolve())}
        card = dataclasses.replace(card, training=training)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".install-{source.id}-", dir=dest))
    except OSError as exc:
        raise InstallError(dest, f"cannot write the user model folder: {exc.strerror or exc}") from None
    try:
        staged = _stage(source, card, staging)
        _publish(staged, dest)
    except OSError as exc:
        raise InstallError(dest, f"cannot install {source.id}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    scan = scan_models(user_dir=dest)
    for path, reason in scan.refused:
        if path.resolve() == (dest / f"{source.id}.json").resolve():
            raise InstallError(path, f"installed, but the registry refuses it: {reason}")
    return scan.get(source.id)


def run_cards(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The model cards an exported run folder holds (`<id>.json`, and `<id>-int8.json` when kept)."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise InstallError(folder, "no such run folder")
    cards = [p for p in sorted(folder.glob("*.json")) if p.name not in _RUN_FILES and p.with_suffix(".onnx").is_file()]
    if not cards:
        raise InstallError(folder, "no exported model in this run folder (no <id>.onnx beside a <id>.json card); "
                                   "has the run finished? (`kdviewer export RUN_DIR` exports it)")
    return cards


def install_run(run_dir: str | os.PathLike[str], user_dir: str | os.PathLike[str] | None = None) -> list[Model]:
    """Install every model a run folder exported (see `install_model`); returns them."""
    return [install_model(card, user_dir) for card in run_cards(run_dir)]


def _refuse_shipped_id(model_id: str, card_path: Path) -> None:
    """A user model may not take a shipped model's id (the registry would refuse it)."""
    if (SHIPPED_DIR / f"{model_id}.json").is_file():
        raise InstallError(card_path, f"id {model_id!r} is already used by a shipped model in {SHIPPED_DIR}; "
                                      "rename the recipe (name = ...) and distil again")


def _stage(source: Model, card: ModelCard, staging: Path) -> dict[str, Path]:
    """Copy the files into `staging` and check the copy as the registry will; returns suffix -> staged path."""
    staged = {".onnx": staging / source.onnx_path.name}
    shutil.copyfile(source.onnx_path, staged[".onnx"])
    markdown = source.card_path.with_suffix(".md")
    if markdown.is_file():
        staged[".md"] = staging / f"{source.id}.md"
        shutil.copyfile(markdown, staged[".md"])
    staged[".json"] = save_card(card, staging / f"{source.id}.json")
    try:
        load_model(staged[".json"])
    except (RuntimeLayerError, OSError) as exc:  # a copy that differs from the original: a full disk
        raise InstallError(staged[".json"], f"the copy does not check out: {exc}") from None
    return staged


def _publish(staged: dict[str, Path], dest: Path) -> None:
    """Move the staged files into `dest`: the old card goes first and the new card comes last, so a
    scan in between sees the model absent or complete, never a card with another model's file."""
    card = dest / staged[".json"].name
    card.unlink(missing_ok=True)
    for suffix in (".onnx", ".md"):
        if suffix in staged:
            os.replace(staged[suffix], dest / staged[suffix].name)
    os.replace(staged[".json"], card)
