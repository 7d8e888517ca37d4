"""A teacher and its student: check that they can be compared, and what each costs (size, parameters).

Used by `kdviewer.runtime.compare` (on a study) and `kdviewer.runtime.compare_dataset` (on a labelled
folder). A pair must share a task (and, for classification, the number of classes); a student whose
card names another teacher is refused unless the caller allows it, and then a warning says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kdviewer.runtime.errors import RuntimeLayerError
from kdviewer.runtime.registry import Model


class ModelPairError(RuntimeLayerError):
    """Two models that cannot be compared: different tasks or classes, or a student of another teacher."""


@dataclass(frozen=True)
class ModelSummary:
    """One side of a comparison: id, role, task, parameters (the card's, else counted in the file),
    file_bytes (the .onnx on disk) and latency_ms (measured in the comparison's run)."""

    id: str
    role: str
    task: str
    parameters: int | None
    file_bytes: int
    latency_ms: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"id": self.id, "role": self.role, "task": self.task, "parameters": self.parameters,
                "file_bytes": self.file_bytes, "latency_ms": self.latency_ms}


def count_parameters(model: Model) -> int | None:
    """The card's ``architecture.parameters`` when positive, else the element count of the file's initializers."""
    given = model.card.architecture.get("parameters")
    if isinstance(given, int) and given > 0:
        return given
    try:
        import onnx
    except ImportError:
        return None
    proto = onnx.load(str(model.onnx_path), load_external_data=False)
    total = 0
    for init in proto.graph.initializer:
        n = 1
        for d in init.dims:
            n *= int(d)
        total += n
    return total


def model_summary(model: Model, latency_ms: float = float("nan")) -> ModelSummary:
    """The `ModelSummary` of a model (its file's size and its parameter count)."""
    return ModelSummary(model.id, model.role, model.task, count_parameters(model),
                        int(model.onnx_path.stat().st_size), float(latency_ms))


def check_pair(teacher: Model, student: Model, allow_unpaired: bool = False) -> tuple[str, ...]:
    """Warnings about comparing `student` with `teacher`; raises `ModelPairError` when they cannot be compared.

    Refused: different tasks; classifiers with different numbers of classes; a student whose card names
    no teacher or another one (allowed with `allow_unpaired`, then a warning).
    """
    if teacher.task != student.task:
        raise ModelPairError(student.card_path, f"cannot compare a {student.task} student ({student.id}) with a "
                             f"{teacher.task} teacher ({teacher.id}): the tasks differ")
    warnings: list[str] = []
    if teacher.task == "classify" and teacher.labels and student.labels and len(teacher.labels) != len(student.labels):
        raise ModelPairError(student.card_path, f"{student.id} has {len(student.labels)} classes, {teacher.id} "
                             f"{len(teacher.labels)}: their probabilities cannot be compared")
    if teacher.labels and student.labels and teacher.labels != student.labels:
        warnings.append(f"label names differ: {teacher.id} {list(teacher.labels)}, "
                        f"{student.id} {list(student.labels)}; compared by index")
    named = student.card.teacher
    if named != teacher.id:
        what = f"names teacher {named!r}" if named else "names no teacher"
        if not allow_unpaired:
            raise ModelPairError(student.card_path, f"the card of {student.id} {what}, not {teacher.id!r} "
                                 "(allow an unpaired comparison to compare them anyway)")
        warnings.append(f"unpaired: the card of {student.id} {what}, not {teacher.id!r}")
    if teacher.role != "teacher":
        warnings.append(f"{teacher.id} has role {teacher.role!r}, not teacher")
    return tuple(warnings)


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-12) -> float:
    """KL(p‖q) in nats of two probability vectors (K,) (or rows (N, K): one value per row); 0 when equal."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0)
    q = np.clip(np.asarray(q, dtype=np.float64), eps, 1.0)
    p, q = p / p.sum(axis=-1, keepdims=True), q / q.sum(axis=-1, keepdims=True)
    out = np.maximum((p * (np.log(p) - np.log(q))).sum(axis=-1), 0.0)
    return float(out) if out.ndim == 0 else out
