"""onnxruntime sessions, one per (model file, thread count), created once and kept.

Float16 weights (teachers are shipped that way to keep ``models/`` small) are upcast to float32 in
memory before the session is created: the CPU provider has few float16 kernels, and float32 compute
is what the student/teacher comparison measures.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdviewer.runtime.errors import ModelInputError, ModelLoadError
from kdviewer.runtime.registry import Model

_SESSIONS: dict[tuple[str, str, int], object] = {}
_LOCK = threading.Lock()
_FLOAT16, _FLOAT = 10, 1  # onnx.TensorProto.FLOAT16, FLOAT


def default_threads() -> int:
    """The machine's physical cores (psutil), at least 1: onnxruntime's intra-op threads by default."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except ImportError:
        n = None
    return max(1, int(n or os.cpu_count() or 1))


def _upcast_graph(graph) -> int:
    """Turn every float16 tensor, cast and type of `graph` (and its subgraphs) into float32; count changes."""
    import onnx
    from onnx import numpy_helper

    changed = 0

    def fix_tensor(t) -> None:
        nonlocal changed
        if t.data_type == _FLOAT16:
            arr = numpy_helper.to_array(t).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
            changed += 1

    def fix_type(vi) -> None:
        nonlocal changed
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.elem_type == _FLOAT16:
            tt.elem_type = _FLOAT
            changed += 1

    for t in graph.initializer:
        fix_tensor(t)
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        fix_type(vi)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                fix_tensor(attr.t)
            elif attr.type == onnx.AttributeProto.TENSORS:
                for t in attr.tensors:
                    fix_tensor(t)
            elif attr.type == onnx.AttributeProto.GRAPH:
                changed += _upcast_graph(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    changed += _upcast_graph(g)
            elif attr.name in ("to", "dtype") and attr.type == onnx.AttributeProto.INT and attr.i == _FLOAT16:
                attr.i = _FLOAT  # Cast(to=float16) becomes a float32 no-op the optimiser removes
                changed += 1
    return changed


def upcast_float16(model_bytes: bytes, path: Path | None = None) -> bytes:
    """The serialized model with float16 initializers, constants, casts and I/O made float32.

    Raises `ModelLoadError` when the bytes are not an ONNX model or onnx is not installed.
    """
    try:
        import onnx
    except ImportError as exc:
        raise ModelLoadError(path, "this model stores float16 weights; upcasting them needs the "
                             "'onnx' package (pip install onnx)") from exc
    try:
        proto = onnx.load_from_string(model_bytes)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise ModelLoadError(path, f"not an ONNX model ({type(exc).__name__}: {exc})") from exc
    _upcast_graph(proto.graph)
    return proto.SerializeToString()


def _needs_upcast(model: Model) -> bool:
    return str(model.card.file.get("weights", "")).lower() in ("float16", "fp16", "half")


def free_spatial_dims(model_bytes: bytes, path: Path | None = None) -> bytes:
    """The serialized model with the height and width of its inputs and outputs made symbolic (and the
    inferred inner shapes dropped), so that a fully convolutional graph exported at one size runs at any."""
    try:
        import onnx
    except ImportError as exc:
        raise ModelLoadError(path, "running this model at another size needs the 'onnx' package") from exc
    try:
        proto = onnx.load_from_string(model_bytes)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise ModelLoadError(path, f"not an ONNX model ({type(exc).__name__}: {exc})") from exc
    for kind, values in (("in", proto.graph.input), ("out", proto.graph.output)):
        for vi in values:
            dims = vi.type.tensor_type.shape.dim
            for axis, name in ((2, "height"), (3, "width")):
                if len(dims) == 4:
                    dims[axis].Clear()
                    dims[axis].dim_param = f"{kind}_{name}"
    del proto.graph.value_info[:]
    return proto.SerializeToString()


def load_session(model: Model, threads: int | None = None, *, dynamic_spatial: bool = False):
    """A new onnxruntime `InferenceSession` for `model` (CPU), float16 weights upcast first;
    `dynamic_spatial`: accept inputs of any height and width (`free_spatial_dims`).

    Raises `ModelLoadError` with onnxruntime's reason when it cannot load the file.
    """
    import onnxruntime as ort

    threads = threads or default_threads()
    data = Path(model.onnx_path).read_bytes()
    if _needs_upcast(model):
        data = upcast_float16(data, model.onnx_path)
    if dynamic_spatial:
        data = free_spatial_dims(data, model.onnx_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # No busy-waiting worker threads after a run: the viewer holds several sessions (a teacher and its student
    # compared in turns, one model per task), and a spinning pool of the last session steals the cores from the
    # next one (measured: a vessel student run in turns with 17 other sessions 120 ms, alone or without spinning
    # 36-58 ms; the compare panel's teacher / student alternation read it 75-81 ms).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail/InvalidGraph/InvalidProtobuf/...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(model.onnx_path, f"onnxruntime cannot load this model: {reason}") from exc


def get_session(model: Model, threads: int | None = None):
    """The cached session of `model` with `threads` intra-op threads (default: physical cores)."""
    threads = int(threads or default_threads())
    key = (str(Path(model.onnx_path).resolve()), str(model.card.file["sha256"]), threads)
    with _LOCK:
        session = _SESSIONS.get(key)
    if session is None:
        session = load_session(model, threads)
        with _LOCK:
            session = _SESSIONS.setdefault(key, session)
    return session


def clear_sessions() -> None:
    """Forget every cached session (e.g. after models were re-exported)."""
    with _LOCK:
        _SESSIONS.clear()


def make_runner(model: Model, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function (N, C, H, W) float32 -> the model's first output, as float32.

    An input the graph rejects (wrong channels or size) raises `ModelInputError` naming the model file.
    """
    session = get_session(model, threads)
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        try:
            out = session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's InvalidArgument, Fail, ...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelInputError(model.onnx_path, f"onnxruntime failed on an input of shape "
                                  f"{tuple(batch.shape)}: {reason}") from exc
        return np.asarray(out, dtype=np.float32)

    return run


def timed(run: Callable[[np.ndarray], np.ndarray]) -> tuple[Callable[[np.ndarray], np.ndarray], list[float]]:
    """Wrap `run` so each call's wall time (ms) is appended to the returned list."""
    times: list[float] = []

    def wrapped(batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = run(batch)
        times.append((time.perf_counter() - t0) * 1000.0)
        return out

    return wrapped, times
