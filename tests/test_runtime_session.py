"""onnxruntime sessions: cache, threads, float16 weights upcast, models that cannot be loaded."""

from __future__ import annotations

import numpy as np
import psutil
import pytest
from runtime_models import runtime_models, write_card  # noqa: F401

from kdviewer.runtime import ModelLoadError, default_threads, get_session, load_model
from kdviewer.runtime import session as runtime_session
from kdviewer.runtime.session import load_session, make_runner, upcast_float16


def test_default_threads_are_the_physical_cores():
    assert default_threads() == (psutil.cpu_count(logical=False) or 1)


def test_sessions_are_cached_per_model_and_thread_count(runtime_models):  # noqa: F811
    model = load_model(runtime_models["tiny-seg"])
    s1 = get_session(model, threads=1)
    assert get_session(model, threads=1) is s1
    assert get_session(model, threads=2) is not s1
    assert s1.get_session_options().intra_op_num_threads == 1


def test_sessions_do_not_spin_between_runs(runtime_models):  # noqa: F811
    """Idle worker threads sleep: a session held beside others (teacher and student in turns) leaves them the
    cores (onnxruntime's default spins, and was measured to double the next session's latency)."""
    options = get_session(load_model(runtime_models["tiny-seg"]), threads=2).get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_both_conv_layouts_give_the_same_result_and_say_which_they_are(runtime_models):  # noqa: F811
    """layout "blocked" (onnxruntime's NCHWc rewrite) and "plain" (without it) compute the same logits; the
    session names its plan; an unknown layout is a ValueError."""
    model = load_model(runtime_models["tiny-seg"])
    blocked, plain = load_session(model, 1, layout="blocked"), load_session(model, 1, layout="plain")
    assert (blocked.kdviewer_layout, plain.kdviewer_layout) == ("blocked", "plain")
    x = {blocked.get_inputs()[0].name: np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)}
    np.testing.assert_allclose(plain.run(None, x)[0], blocked.run(None, x)[0], atol=1e-5)
    with pytest.raises(ValueError, match="layout"):
        load_session(model, 1, layout="nchwc")


@pytest.mark.parametrize("plain_wins", [True, False])
def test_auto_layout_keeps_the_plan_that_timed_faster(runtime_models, monkeypatch, plain_wins):  # noqa: F811
    """A small, quick model is timed both ways on its card's input shape and the faster plan kept."""
    seen = []

    def fake(blocked, plain, feed):
        seen.append(({k: v.shape for k, v in feed.items()}, blocked.kdviewer_layout, plain.kdviewer_layout))
        return plain_wins

    monkeypatch.setattr(runtime_session, "plain_is_faster", fake)
    session = load_session(load_model(runtime_models["tiny-seg"]), 1)
    assert session.kdviewer_layout == ("plain" if plain_wins else "blocked")
    assert seen == [({session.get_inputs()[0].name: (1, 1, 32, 32)}, "blocked", "plain")]


@pytest.mark.parametrize("limit", ["TUNE_MAX_BYTES", "TUNE_MAX_RUN_MS"])
def test_auto_layout_leaves_large_or_slow_models_blocked_untimed(runtime_models, monkeypatch, limit):  # noqa: F811
    """Files over TUNE_MAX_BYTES (teachers) and models slower than TUNE_MAX_RUN_MS a run are not timed both
    ways (the wide nets are never faster plain, and the timing would slow their loading)."""
    def never(*_args):
        raise AssertionError("timed both ways")

    monkeypatch.setattr(runtime_session, "plain_is_faster", never)
    monkeypatch.setattr(runtime_session, limit, 0)
    assert load_session(load_model(runtime_models["tiny-seg"]), 1).kdviewer_layout == "blocked"


def test_plain_layout_is_chosen_only_when_clearly_faster(runtime_models, monkeypatch):  # noqa: F811
    """plain_is_faster compares the fastest of alternating runs and needs plain 10 % ahead (noise is no reason);
    a slow run of plain (other work on the machine) does not count against it."""
    model = load_model(runtime_models["tiny-seg"])
    blocked, plain = load_session(model, 1, layout="blocked"), load_session(model, 1, layout="plain")
    feed = {blocked.get_inputs()[0].name: np.zeros((1, 1, 32, 32), np.float32)}
    clock = {"blocked": [10.0], "plain": [9.5]}
    monkeypatch.setattr(runtime_session, "run_ms", lambda s, f: clock[s.kdviewer_layout][0])
    assert not runtime_session.plain_is_faster(blocked, plain, feed)     # 5 % ahead: within the margin
    clock["plain"] = [8.5]
    assert runtime_session.plain_is_faster(blocked, plain, feed)
    times = iter([10.0, 10.0, 30.0, 8.5] * 5)                            # blocked, blocked, plain, plain, ...
    monkeypatch.setattr(runtime_session, "run_ms", lambda s, f: next(times))
    assert runtime_session.plain_is_faster(blocked, plain, feed)


def test_float16_weights_are_upcast_and_give_the_float32_result(runtime_models):  # noqa: F811
    import onnx

    fp16 = load_model(runtime_models["tiny-denoise-fp16"])
    stored = onnx.load(str(fp16.onnx_path))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in stored.graph.initializer)
    upcast = onnx.load_from_string(upcast_float16(fp16.onnx_path.read_bytes()))
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in upcast.graph.initializer)
    x = np.random.default_rng(0).random((2, 1, 40, 24), dtype=np.float32)
    ref = make_runner(load_model(runtime_models["tiny-denoise"]), threads=1)(x)
    np.testing.assert_allclose(make_runner(fp16, threads=1)(x), ref, atol=2e-3)


def test_fully_float16_graph_runs_with_float32_input(runtime_models, tmp_path):  # noqa: F811
    """A graph computing in float16 end to end (inputs and outputs too) becomes float32 throughout."""
    import onnx
    from onnx import numpy_helper

    src = onnx.load(str(runtime_models["tiny-denoise"].with_suffix(".onnx")))
    for t in src.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for vi in list(src.graph.input) + list(src.graph.output):
        vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    for node in src.graph.node:  # the residual's constant 0.1 is float32 in the export
        for a in node.attribute:
            if a.t.data_type == onnx.TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16)))
    path = tmp_path / "half.onnx"
    onnx.save(src, str(path))
    model = load_model(write_card(path, "half", "denoise", input_shape=[None, 1, 32, 32], kind="image",
                                  weights="float16"))
    x = np.random.default_rng(1).random((1, 1, 32, 32), dtype=np.float32)
    ref = make_runner(load_model(runtime_models["tiny-denoise"]), threads=1)(x)
    np.testing.assert_allclose(make_runner(model, threads=1)(x), ref, atol=2e-3)


def test_model_onnxruntime_cannot_load_gives_a_message_naming_the_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf" * 10)
    model = load_model(write_card(path, "broken", "classify", input_shape=[None, 1, 8, 8], labels=["a", "b"]))
    with pytest.raises(ModelLoadError, match=r"broken\.onnx: onnxruntime cannot load"):
        get_session(model, threads=1)
    half = load_model(write_card(path, "broken", "classify", input_shape=[None, 1, 8, 8], labels=["a", "b"],
                                 weights="float16"))
    with pytest.raises(ModelLoadError, match=r"broken\.onnx: not an ONNX model"):
        get_session(half, threads=1)


def test_input_the_graph_rejects_is_a_model_input_error(runtime_models):  # noqa: F811
    from kdviewer.runtime import ModelInputError

    run = make_runner(load_model(runtime_models["tiny-cls"]), threads=1)
    with pytest.raises(ModelInputError, match=r"tiny-cls\.onnx: onnxruntime failed on an input of shape \(1, 3, 64, 64\)"):
        run(np.zeros((1, 3, 64, 64), np.float32))
