"""The shared "run a task in a background `TaskThread`" part of the AI panel and the compare widgets.

`BackgroundRun` is a mixin for a QWidget that has ``thread`` (None while idle), ``progress`` (a
QProgressBar), ``status`` (a QLabel), ``show_error(parent, title, message)`` and a ``run_done(str)``
signal. `start_thread(work, text)` runs ``work(progress, cancel)``; progress drives the bar, a failure
or a cancel is shown in the status line (a failure also as a dialog), and when the thread has ended the
bar is reset, ``thread`` is None again, `_sync_buttons()` re-enables the buttons and only then
``run_done(outcome)`` announces "succeeded", "failed" or "cancelled". A widget handles its own success
in `_on_succeeded(result)` (and sets ``self._outcome = "succeeded"`` there).
"""

from __future__ import annotations

from kdviewer.gui.ai_worker import TaskThread, Work


class BackgroundRun:
    """Mixin: start / cancel / wait / is_running for one background task at a time."""

    thread: TaskThread | None
    _outcome: str | None
    progress_format: str | None = None  # e.g. "%v / %m items" once the first progress step arrives

    def _init_background_run(self) -> None:
        self.thread = None
        self._outcome = None  # of the run in progress, announced by run_done once its thread ends

    def is_running(self) -> bool:
        """True while a task runs in the background."""
        return self.thread is not None

    def start_thread(self, work: Work, text: str) -> TaskThread:
        """Run `work` in a new TaskThread, with `text` in the status line while it runs."""
        thread = TaskThread(work, self)
        thread.progress.connect(self._on_progress)
        thread.succeeded.connect(self._on_thread_succeeded)
        thread.failed.connect(self._on_failed)
        thread.cancelled.connect(self._on_cancelled)
        thread.finished.connect(self._on_finished)
        self.thread = thread
        self._outcome = "failed"  # until the thread reports otherwise
        self.progress.setRange(0, 0)  # busy until the first progress step
        self.progress.setTextVisible(True)
        self.status.setText(text)
        self._sync_buttons()
        thread.start()
        return thread

    def cancel(self) -> None:
        """Stop the running task at its next step; nothing of it is kept."""
        if self.thread is not None:
            self.thread.cancel()
            self.status.setText("Cancelling…")

    def wait(self, timeout_ms: int = 10000) -> None:
        """Cancel and wait for a running task (closing the window)."""
        if self.thread is not None:
            self.thread.cancel()
            self.thread.wait(timeout_ms)

    def _sync_buttons(self) -> None:  # the widget's button update
        raise NotImplementedError

    def _on_succeeded(self, result: object) -> None:  # the widget's own success handling
        raise NotImplementedError

    def _current_thread(self) -> bool:
        return self.thread is not None and self.sender() is self.thread

    def _on_progress(self, done: int, total: int) -> None:
        if self._current_thread() and not self.thread.is_cancelled:
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)
            if self.progress_format is not None:
                self.progress.setFormat(self.progress_format)

    def _on_thread_succeeded(self, result: object) -> None:
        if self._current_thread():
            self._on_succeeded(result)

    def _on_failed(self, title: str, message: str) -> None:
        if not self._current_thread():
            return
        self.status.setText(f"Failed: {message}")
        self._outcome = "failed"
        self.show_error(self.window(), title, message)

    def _on_cancelled(self) -> None:
        if not self._current_thread():
            return
        self.status.setText("Cancelled; no result was kept.")
        self._outcome = "cancelled"

    def _on_finished(self) -> None:
        thread = self.sender()
        outcome = None
        if thread is self.thread:
            self.thread = None
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setTextVisible(False)
            outcome, self._outcome = self._outcome, None
        if thread is not None:
            thread.deleteLater()
        self._sync_buttons()
        if outcome is not None:  # after the buttons are back: a listener sees the widget ready again
            self.run_done.emit(outcome)
