"""benchmarks/bench_runtime.py: each shipped student and no-KD baseline is timed against its own teacher."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kdviewer.runtime import scan_models

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_runtime  # noqa: E402


def test_every_shipped_student_and_baseline_has_its_teacher() -> None:
    scan = scan_models([(REPO / "models", "shipped")])
    if not scan.models:
        pytest.skip("no shipped models")
    ids = {m.id for m in scan.models}
    for m in scan.models:
        teacher = bench_runtime.teacher_of(m, scan)
        if m.role == "teacher":
            assert teacher is None
            continue
        # a baseline is paired by its recipe, so the teacher is the one of its own task, never another's
        assert teacher in ids and teacher.split("-")[:2] == m.id.split("-")[:2], (m.id, teacher)


@pytest.mark.parametrize("plain_wins", [True, False])
def test_the_note_names_the_models_run_without_the_blocked_layout(monkeypatch, plain_wins) -> None:
    """Part 1's note after the table says which models the runtime chose to run plain (no NCHWc rewrite)."""
    from kdviewer.runtime import session as runtime_session

    scan = scan_models([(REPO / "models", "shipped")])
    small = [m for m in scan.models if m.onnx_path.stat().st_size <= runtime_session.TUNE_MAX_BYTES
             and m.input_hw[0] * m.input_hw[1] <= 96 * 96][:2]   # small and quick: timed both ways
    if len(small) < 2:
        pytest.skip("no small shipped classifiers")
    runtime_session.clear_sessions()
    monkeypatch.setattr(runtime_session, "plain_is_faster", lambda blocked, plain, feed: plain_wins)
    note = bench_runtime.plain_layout_note(small, 1)
    runtime_session.clear_sessions()
    if plain_wins:
        assert note.endswith(f"faster here) for {small[0].id}, {small[1].id}; blocked for the rest.")
    else:
        assert note.endswith("every model blocked (onnxruntime's NCHWc rewrite).")
