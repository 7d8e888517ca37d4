"""Model cards: the JSON file beside every `.onnx` model (schema "kdviewer.model/1", DESIGN.md).

Stdlib only: written by `distill` (export) and read and checked by `runtime` (the registry).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdviewer.errors import KdviewerError

SCHEMA = "kdviewer.model/1"
TASKS = ("classify", "segment", "denoise", "super_resolve")
ROLES = ("teacher", "student", "baseline")
INTENDED_USE = "Research use only. Not for diagnosis."
FLIP_AVERAGES = ("", "h", "v", "hv")  # postprocess.flip_average of a segmenter: kdviewer.runtime.segment.FLIP_VIEWS


class ModelCardError(KdviewerError):
    """A card file that is missing, unreadable or does not follow the schema."""


@dataclass(frozen=True)
class ModelCard:
    """One model's card; nested sections stay plain dicts, as in the JSON file."""

    id: str
    task: str
    role: str
    architecture: dict[str, Any]
    file: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]
    teacher: str | None = None
    postprocess: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    intended_use: str = INTENDED_USE
    limits: tuple[str, ...] = ()
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """The card as the JSON object of DESIGN.md (schema first)."""
        data = dataclasses.asdict(self)
        data["limits"] = list(self.limits)
        return {"schema": data.pop("schema"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build a card from a parsed JSON object; raises `ModelCardError` listing the problems."""
        problems = validate_card(data)
        if problems:
            raise ModelCardError("; ".join(problems))
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["limits"] = tuple(data.get("limits", ()))
        return cls(**kwargs)


# key -> (required, allowed types)
_FIELDS: dict[str, tuple[bool, tuple[type, ...]]] = {
    "schema": (True, (str,)),
    "id": (True, (str,)),
    "task": (True, (str,)),
    "role": (True, (str,)),
    "teacher": (False, (str, type(None))),
    "architecture": (True, (dict,)),
    "file": (True, (dict,)),
    "input": (True, (dict,)),
    "output": (True, (dict,)),
    "postprocess": (False, (dict,)),
    "training": (False, (dict,)),
    "metrics": (False, (dict,)),
    "export": (False, (dict,)),
    "intended_use": (False, (str,)),
    "limits": (False, (list, tuple)),
}


def validate_card(data: Any) -> list[str]:
    """Problems of a parsed card against schema "kdviewer.model/1" (empty list: the card is valid)."""
    if not isinstance(data, dict):
        return ["card is not a JSON object"]
    problems: list[str] = []
    for key, (required, types) in _FIELDS.items():
        if key not in data:
            if required:
                problems.append(f"missing key '{key}'")
        elif not isinstance(data[key], types):
            problems.append(f"'{key}' should be {' or '.join(t.__name__ for t in types)}")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        problems.append(f"unknown keys {unknown}")
    if problems:
        return problems
    if data["schema"] != SCHEMA:
        problems.append(f"schema is '{data['schema']}', expected '{SCHEMA}'")
    if data["task"] not in TASKS:
        problems.append(f"task '{data['task']}' is not one of {list(TASKS)}")
    if data["role"] not in ROLES:
        problems.append(f"role '{data['role']}' is not one of {list(ROLES)}")
    if not isinstance(data["architecture"].get("name"), str):
        problems.append("'architecture.name' should be a string")
    file = data["file"]
    if not isinstance(file.get("name"), str) or not file.get("name", "").endswith(".onnx"):
        problems.append("'file.name' should name an .onnx file")
    sha = file.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        problems.append("'file.sha256' should be 64 lowercase hex digits")
    if not isinstance(file.get("bytes"), int) or file.get("bytes", 0) <= 0:
        problems.append("'file.bytes' should be a positive integer")
    shape = data["input"].get("shape")
    if not (isinstance(shape, list) and len(shape) == 4
            and all(d is None or (isinstance(d, int) and d > 0) for d in shape)):
        problems.append("'input.shape' should be [batch|null, channels, height, width]")
    if not isinstance(data["output"].get("kind"), str):
        problems.append("'output.kind' should be a string")
    if data["task"] in ("classify", "segment") and not isinstance(data["output"].get("labels"), list):
        problems.append("'output.labels' should be a list for classify and segment models")
    flips = data.get("postprocess", {}).get("flip_average")
    if flips not in (None, *FLIP_AVERAGES):
        problems.append(f"'postprocess.flip_average' should be one of {', '.join(map(repr, FLIP_AVERAGES))}, "
                        f"got {flips!r}")
    return problems


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate a card file; raises `ModelCardError` naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelCardError(f"{path}: no such model card") from None
    except (OSError, ValueError) as exc:
        raise ModelCardError(f"{path}: cannot read the card: {exc}") from None
    problems = validate_card(data)
    if problems:
        raise ModelCardError(f"{path}: {'; '.join(problems)}")
    return ModelCard.from_dict(data)


def save_card(card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Write a card as indented JSON (temporary file, then rename); returns the path."""
    path = Path(path)
    problems = validate_card(card.to_dict())
    if problems:
        raise ModelCardError(f"{path}: {'; '.join(problems)}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
