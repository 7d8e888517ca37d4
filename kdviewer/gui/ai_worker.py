"""Run one model off the event loop: a QThread around a runtime task with progress and cancel.

The task is any function ``work(progress, cancel) -> result`` (the AI panel passes
`AiPanelLogic.run`); `cancel` is a ``threading.Event`` the runtime checks between batches. A cancelled
task emits `cancelled` and never `succeeded`, even when the cancel came after its last batch, so a
cancelled run leaves no result behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QThread, Signal

from kdviewer.runtime.errors import Cancelled, ModelLoadError

Work = Callable[[Callable[[int, int], None], threading.Event], object]


class TaskThread(QThread):
    """Signals: progress(done, total); then one of succeeded(result), failed(title, message), cancelled()."""

    progress = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()

    def __init__(self, work: Work, parent=None) -> None:
        super().__init__(parent)
        self.work = work
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        """Ask the task to stop at its next batch (no result will be emitted)."""
        self.cancel_event.set()

    @property
    def is_cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def _progress(self, done: int, total: int) -> None:
        self.progress.emit(int(done), int(total))

    def run(self) -> None:  # noqa: D102 - QThread entry point
        try:
            result = self.work(self._progress, self.cancel_event)
        except Cancelled:
            self.cancelled.emit()
            return
        except ModelLoadError as exc:
            self.failed.emit("Could not load the model", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any failure becomes a dialog; the viewer keeps running
            self.failed.emit("The model could not run", str(exc) or type(exc).__name__)
            return
        if self.cancel_event.is_set():
            self.cancelled.emit()
        else:
            self.succeeded.emit(result)
