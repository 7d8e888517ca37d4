"""Python's cycle collector, run only from the GUI thread's event loop while the viewer runs.

The interpreter collects reference cycles wherever an allocation crosses a generation's threshold: in a
loader or inference thread, or in the middle of building a pyqtgraph item. A cycle that holds the graphics
items of a closed view (a ViewBox and its children) is then destroyed there, and PySide6 can crash with a
segmentation fault (seen once in this suite, in `ViewBox.__init__`; pyqtgraph ships its own
`util.garbage_collector.GarbageCollector` for this, and mantidimaging's GUI tests hit the same ViewBox
crashes). `GuiThreadCollector` turns automatic collection off and collects, from a timer in the GUI
thread, the generations whose counts are past the thresholds the interpreter would have used; `stop()`
restores what was there before.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadCollector(QObject):
    """Automatic garbage collection off; due generations collected every `interval_ms` in this thread."""

    def __init__(self, interval_ms: int = 1000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        self._threshold = gc.get_threshold()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect_due)
        gc.disable()
        self._timer.start(interval_ms)
        self.active = True

    def collect_due(self) -> int:
        """Collect the oldest generation whose count is past its threshold (and the younger ones with it, as
        the interpreter does); returns the number of unreachable objects found."""
        counts = gc.get_count()
        due = -1
        for generation in range(3):
            if self._threshold[generation] and counts[generation] > self._threshold[generation]:
                due = generation
            else:
                break
        return gc.collect(due) if due >= 0 else 0

    def stop(self) -> None:
        """Stop the timer; automatic collection back as it was before."""
        if not self.active:
            return
        self._timer.stop()
        self.active = False
        if self._was_enabled:
            gc.enable()


def install(app: QObject) -> GuiThreadCollector:
    """The collector of `app` (made once, in the GUI thread, owned by `app`)."""
    existing = app.findChild(GuiThreadCollector)
    if isinstance(existing, GuiThreadCollector) and existing.active:
        return existing
    return GuiThreadCollector(parent=app)
