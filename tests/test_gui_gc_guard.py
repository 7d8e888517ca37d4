"""The viewer's cycle collection: off automatically, run from the GUI thread's timer, restored by stop()."""

from __future__ import annotations

import gc
import threading
import weakref

from kdviewer.gui import gc_guard
from kdviewer.gui.app import make_application


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cycle collector frees it


def test_collection_waits_for_the_gui_threads_timer(qtbot):
    collector = gc_guard.GuiThreadCollector(interval_ms=50)
    try:
        assert not gc.isenabled()
        refs: list[weakref.ref] = []

        def make_garbage() -> None:  # a worker thread allocating well past generation 0's threshold
            for _ in range(5 * gc.get_threshold()[0]):
                refs.append(weakref.ref(_Node()))

        worker = threading.Thread(target=make_garbage)
        worker.start()
        worker.join()
        assert all(r() is not None for r in refs)  # nothing collected in the worker
        qtbot.waitUntil(lambda: all(r() is None for r in refs), timeout=5000)  # the timer collected them
    finally:
        collector.stop()
    assert not gc.isenabled()  # the conftest fixture's own collector still runs for this Qt test


def test_collect_due_follows_the_thresholds(qtbot):
    collector = gc_guard.GuiThreadCollector(interval_ms=60_000)  # the timer stays out of the way
    try:
        gc.collect()
        assert collector.collect_due() == 0  # nothing due right after a full collection
        refs = [weakref.ref(_Node()) for _ in range(2 * gc.get_threshold()[0])]
        assert collector.collect_due() >= len(refs)
        assert all(r() is None for r in refs)
    finally:
        collector.stop()
        collector.stop()  # twice: harmless


def test_the_application_collects_in_its_gui_thread(qtbot):
    app = make_application()
    collector = gc_guard.install(app)
    assert collector.active and collector.parent() is app
    assert gc_guard.install(app) is collector  # one per application
    collector.stop()
    assert gc_guard.install(app) is not collector  # a stopped one is replaced
    gc_guard.install(app).stop()
