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


# onnxruntime rewrites convolutions into a blocked layout (NCHWc, 8 channels a block with AVX2, 16 with AVX-512)
# and pads every other width up to a whole block, reordering each padded output back to plain NCHW for the next
# thin layer. Wide nets (teachers) gain a lot from it; a thin student (4-10 channels at full resolution) can run
# faster without it (measured on an AVX-512 CPU: the shipped vessel U-Net ~20 % faster plain, its teacher ~1.7x
# slower). Which is faster depends on the CPU, so small, quick models are timed both ways on this machine at
# load (about 20 runs, under a second for the students; teachers are never faster plain and are not timed).
LAYOUTS = ("auto", "blocked", "plain")
TUNE_MAX_BYTES = 4 << 20        # files up to 4 MB (about 1 M float32 parameters) are timed ...
TUNE_MAX_RUN_MS = 150.0         # ... when one blocked run takes at most this long (else: blocked)
_PLAIN_MARGIN = 0.9             # plain is kept only when its fastest run is at least 10 % below blocked's
_NCHWC = "NchwcTransformer"


def _probe_input(model: Model, session) -> dict[str, np.ndarray]:
    """One batch-1 input of the card's shape (`Model.channels`, `Model.input_hw`), random normal."""
    shape = (1, model.channels, *model.input_hw)
    return {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def run_ms(session, feed: dict[str, np.ndarray]) -> float:
    """Wall time (ms) of one run of `session` on `feed`."""
    t0 = time.perf_counter()
    session.run(None, feed)
    return (time.perf_counter() - t0) * 1e3


def layout_of(model: Model, threads: int | None = None) -> str:
    """The convolution plan ("blocked" | "plain") of `model`'s cached session (`get_session`)."""
    return str(getattr(get_session(model, threads), "kdviewer_layout", "blocked"))


def plain_is_faster(blocked, plain, feed: dict[str, np.ndarray], rounds: int = 5) -> bool:
    """Whether `plain` (no NCHWc rewrite) runs `feed` clearly faster than `blocked`: after a warm-up run each,
    `rounds` alternating rounds of 2 timed runs each; plain's fastest run must beat blocked's fastest by
    `_PLAIN_MARGIN` (the fastest: other work on the machine only ever adds time, so the minimum is the steadiest
    estimate of what each plan costs while a viewer or a benchmark may be busy beside it)."""
    plain.run(None, feed)
    b_times, p_times = [], []
    for _ in range(rounds):
        for session, times in ((blocked, b_times), (plain, p_times)):
            times += [run_ms(session, feed), run_ms(session, feed)]
    return min(p_times) < _PLAIN_MARGIN * min(b_times)


def load_session(model: Model, threads: int | None = None, *, dynamic_spatial: bool = False,
                 layout: str = "auto"):
    """A new onnxruntime `InferenceSession` for `model` (CPU), float16 weights upcast first;
    `dynamic_spatial`: accept inputs of any height and width (`free_spatial_dims`).

    `layout`: "blocked" (onnxruntime's NCHWc rewrite of convolutions, its default), "plain" (without it), or
    "auto": a model file up to `TUNE_MAX_BYTES` whose run takes up to `TUNE_MAX_RUN_MS` is timed both ways on
    this machine and the clearly faster plan kept (see `LAYOUTS`' comment); any other stays blocked. The chosen
    plan is the session's ``kdviewer_layout`` attribute (`layout_of` for a cached one).

    Raises `ModelLoadError` with onnxruntime's reason when it cannot load the file.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
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

    def create(plan: str):
        disabled = [_NCHWC] if plan == "plain" else None
        try:
            session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"],
                                           disabled_optimizers=disabled)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail/InvalidGraph/InvalidProtobuf/...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(model.onnx_path, f"onnxruntime cannot load this model: {reason}") from exc
        session.kdviewer_layout = plan
        return session

    if layout != "auto":
        return create(layout)
    blocked = create("blocked")
    if len(data) > TUNE_MAX_BYTES:
        return blocked
    try:
        feed = _probe_input(model, blocked)
        blocked.run(None, feed)                          # warm-up: the first run allocates
        if run_ms(blocked, feed) > TUNE_MAX_RUN_MS:
            return blocked
        plain = create("plain")
        return plain if plain_is_faster(blocked, plain, feed) else blocked
    except ModelLoadError:
        raise
    except Exception:  # noqa: BLE001 - a model that fails on a probe input fails the same way when used
        return blocked


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
