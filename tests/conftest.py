"""Shared fixtures: where the real data lives, and offscreen Qt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATASETS = SHARED / "datasets"


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"expected the shared data folder at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def datasets_dir(shared_dir: Path) -> Path:
    return shared_dir / "datasets"


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for the module (small nets: less thread overhead, steadier timings beside other jobs)."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _gc_in_the_gui_thread(request):
    """Qt tests run with the viewer's cycle collection (`kdviewer.gui.gc_guard`): none in worker threads or
    in the middle of building a pyqtgraph item; after the test, one full collection here in the main thread."""
    if "qtbot" not in request.fixturenames:
        yield
        return
    import gc

    request.getfixturevalue("qapp")
    from kdviewer.gui.gc_guard import GuiThreadCollector

    collector = GuiThreadCollector()
    try:
        yield
    finally:
        collector.stop()
        collector.deleteLater()
        gc.collect()
