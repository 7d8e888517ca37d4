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
