"""The model registry: find model cards, check them against the schema and their file's sha256.

A model is ``<id>.onnx`` with its card ``<id>.json`` beside it (DESIGN.md, "Models and their cards").
Cards are looked for in the repository's ``models/`` (shipped) and in the user's data directory
(``platformdirs.user_data_dir("kdviewer")/models``; ``$KDVIEWER_HOME/models`` when that variable is set).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdviewer.modelcard import ModelCard, ModelCardError, load_card, sha256_file
from kdviewer.runtime.errors import ModelIntegrityError, ModelNotFoundError

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "models"

# (path, size, mtime_ns) -> sha256, so listing the registry twice hashes each file once.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True, eq=False)
class Model:
    """A model whose card passed the schema and whose file matched the card's sha256.

    card: the checked `ModelCard`; card_path / onnx_path: where they are; origin: "shipped", "user"
    or "path" (given on the command line).
    """

    card: ModelCard = field(repr=False)
    card_path: Path
    onnx_path: Path
    origin: str = "path"

    @property
    def id(self) -> str:
        return self.card.id

    @property
    def task(self) -> str:
        return self.card.task

    @property
    def role(self) -> str:
        return self.card.role

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.card.output.get("labels") or ())

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m.upper() for m in (self.card.input.get("modalities") or ()))

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """(N, C, H, W) as the card states it; N is usually None (dynamic)."""
        return tuple(self.card.input["shape"])

    @property
    def channels(self) -> int:
        return int(self.input_shape[1] or 1)

    @property
    def input_hw(self) -> tuple[int, int]:
        """(H, W) pixels of one model input (the tile size for fully convolutional models)."""
        _, _, h, w = self.input_shape
        return int(h or 64), int(w or 64)

    @property
    def preprocess(self) -> dict[str, Any]:
        """The card's ``input.preprocess`` with its channels and slices, for `preprocess_image`."""
        slices = int(self.card.input.get("slices") or 1)
        return {"channels": self.channels, "slices": slices, **(self.card.input.get("preprocess") or {})}

    @property
    def postprocess(self) -> dict[str, Any]:
        return dict(self.card.postprocess or {})

    @property
    def slices(self) -> int:
        """Neighbouring slices stacked as channels (1 = 2-D, 3 = 2.5-D)."""
        return int(self.card.input.get("slices") or 1)

    @property
    def spacing_mm(self) -> tuple[float, ...] | None:
        """In-plane (x, y) (optionally z) mm the model expects, or None for "as it comes"."""
        s = self.card.input.get("spacing_mm")
        return None if s is None else tuple(float(v) for v in s)

    def fits(self, modality: str | None, task: str | None = None) -> bool:
        """True when the card lists `modality` (or lists none) and the task matches (None: any)."""
        if task is not None and self.task != task:
            return False
        return not modality or not self.modalities or modality.upper() in self.modalities


def user_models_dir(override: str | Path | None = None) -> Path:
    """The user's model folder: `override`, else ``$KDVIEWER_HOME/models``, else platformdirs."""
    if override is not None:
        return Path(override)
    home = os.environ.get("KDVIEWER_HOME")
    if home:
        return Path(home) / "models"
    import platformdirs

    return Path(platformdirs.user_data_dir("kdviewer")) / "models"


def model_dirs(user_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """(folder, origin) pairs searched by the registry: shipped first, then the user's."""
    return [(SHIPPED_DIR, "shipped"), (user_models_dir(user_dir), "user")]


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, cached on (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


def verify_file(card: ModelCard, onnx_path: Path) -> None:
    """Check the model file's size and sha256 against its card; raises `ModelIntegrityError`."""
    expected = card.file
    if not onnx_path.is_file():
        raise ModelIntegrityError(onnx_path, "model file named by the card is missing")
    size = onnx_path.stat().st_size
    if expected.get("bytes") is not None and int(expected["bytes"]) != size:
        raise ModelIntegrityError(onnx_path, f"model file has {size} bytes, its card says {expected['bytes']}: "
                                  "the file was changed or truncated; refusing to run it")
    digest = sha256_of(onnx_path)
    if digest != str(expected["sha256"]).lower():
        raise ModelIntegrityError(onnx_path, f"sha256 {digest[:12]}… differs from its card's "
                                  f"{str(expected['sha256'])[:12]}…: the file was changed; refusing to run it")


def load_model(path: str | Path, origin: str = "path", verify: bool = True) -> Model:
    """A `Model` from its card (``.json``) or its ``.onnx`` (the card beside it, same stem).

    Raises `ModelCardError` for a bad card and `ModelIntegrityError` for a file that does not match it.
    """
    path = Path(path)
    card_path = path.with_suffix(".json") if path.suffix.lower() == ".onnx" else path
    card = load_card(card_path)
    if Path(card.file["name"]).name != card.file["name"]:
        raise ModelCardError(f"{card_path}: file.name {card.file['name']!r} must name a file beside the card")
    onnx_path = card_path.parent / card.file["name"]
    if verify:
        verify_file(card, onnx_path)
    return Model(card=card, card_path=card_path, onnx_path=onnx_path, origin=origin)


@dataclass(frozen=True)
class RegistryScan:
    """What `scan_models` found: the usable models and, per refused card, (card path, reason)."""

    models: tuple[Model, ...]
    refused: tuple[tuple[Path, str], ...]

    def get(self, model_id: str) -> Model:
        """The model with `model_id`; raises `ModelNotFoundError` listing the ids known."""
        for m in self.models:
            if m.id == model_id:
                return m
        refused = [str(p) for p, _ in self.refused if p.stem == model_id]
        hint = f" (its card was refused: {refused[0]})" if refused else ""
        known = ", ".join(m.id for m in self.models) or "none"
        raise ModelNotFoundError(None, f"no model {model_id!r} in the registry{hint}; known: {known}")

    def fitting(self, modality: str | None, task: str | None = None) -> list[Model]:
        """Models whose card lists `modality` (or none) for `task` (None: any task)."""
        return [m for m in self.models if m.fits(modality, task)]


def _cards_in(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return ()
    return sorted(p for p in folder.glob("*.json") if p.with_suffix(".onnx").exists()
                  or _looks_like_card(p))


def _looks_like_card(path: Path) -> bool:
    try:
        return '"kdviewer.model/' in path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False


def scan_models(dirs: Sequence[tuple[Path, str]] | None = None, *, user_dir: str | Path | None = None,
                verify: bool = True) -> RegistryScan:
    """Every model in `dirs` (default: `model_dirs(user_dir)`); bad cards and files are refused, not raised.

    A user model with the id of a shipped one is refused (ids must be unique).
    """
    models: list[Model] = []
    refused: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    for folder, origin in dirs if dirs is not None else model_dirs(user_dir):
        for card_path in _cards_in(Path(folder)):
            try:
                model = load_model(card_path, origin=origin, verify=verify)
            except (ModelCardError, ModelIntegrityError) as exc:
                refused.append((card_path, str(exc)))
                continue
            if model.id in seen:
                refused.append((card_path, f"{card_path}: id {model.id!r} already used by {seen[model.id]}"))
                continue
            seen[model.id] = card_path
            models.append(model)
    return RegistryScan(tuple(models), tuple(refused))


MODEL_SUFFIXES = (".onnx", ".json")  # a model named by its file or its card


def names_model_file(value: str | Path) -> bool:
    """True when `value` names a model by its file (.onnx) or card (.json) rather than by a registry id
    (or, for a KD teacher, a run folder or checkpoint)."""
    return Path(str(value).strip()).suffix.lower() in MODEL_SUFFIXES


def resolve_model(name: str | Path, *, user_dir: str | Path | None = None) -> Model:
    """A registry id, or a path to an ``.onnx`` / card ``.json``; verified. The one way the CLI picks a model."""
    p = Path(name)
    if names_model_file(p) or p.exists():
        return load_model(p)
    return scan_models(user_dir=user_dir).get(str(name))
