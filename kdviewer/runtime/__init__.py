"""Run distilled models on the CPU with onnxruntime: registry, sessions, and the tasks.

No Qt, no torch: the gui and the CLI call these same functions (`classify_image`, `segment_volume`,
`enhance_volume`, `evaluate_model`). Exports live in `kdviewer.runtime.export`.
"""

from kdviewer.modelcard import ModelCardError
from kdviewer.runtime.classify import ClassificationResult, classify_image
from kdviewer.runtime.enhance import EnhancementResult, enhance_volume
from kdviewer.runtime.errors import (
    Cancelled,
    ModelInputError,
    ModelIntegrityError,
    ModelLoadError,
    ModelNotFoundError,
    RuntimeLayerError,
)
from kdviewer.runtime.registry import (
    Model,
    RegistryScan,
    load_model,
    resolve_model,
    scan_models,
    user_models_dir,
)
from kdviewer.runtime.segment import SegmentationResult, segment_volume
from kdviewer.runtime.session import clear_sessions, default_threads, get_session

__all__ = [
    "Cancelled", "ClassificationResult", "EnhancementResult", "Model", "ModelCardError", "ModelInputError",
    "ModelIntegrityError", "ModelLoadError", "ModelNotFoundError", "RegistryScan", "RuntimeLayerError",
    "SegmentationResult", "classify_image", "clear_sessions", "default_threads", "enhance_volume",
    "get_session", "load_model", "resolve_model", "scan_models", "segment_volume", "user_models_dir",
]
