"""Typed errors of the runtime layer: each names the model file and the reason.

A card that fails the schema raises `kdviewer.modelcard.ModelCardError` (re-exported by `kdviewer.runtime`).
"""

from __future__ import annotations

from pathlib import Path

from kdviewer.errors import KdviewerError


class RuntimeLayerError(KdviewerError):
    """Base class of every problem met while finding, loading or running a model."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class ModelIntegrityError(RuntimeLayerError):
    """A model file is missing or its sha256 / size differs from its card (tampered or truncated)."""


class ModelLoadError(RuntimeLayerError):
    """onnxruntime cannot load the model file (corrupt graph, unsupported operator or opset)."""


class ModelNotFoundError(RuntimeLayerError):
    """No model in the registry has the id asked for."""


class ModelInputError(RuntimeLayerError):
    """The image given does not fit the model (wrong task, channels, or an empty image)."""


class Cancelled(KdviewerError):
    """The caller cancelled a running task; no partial result was returned or written."""

    def __init__(self, what: str = "inference"):
        super().__init__(f"{what} cancelled")
