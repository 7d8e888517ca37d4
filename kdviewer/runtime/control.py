"""Progress and cancel for every task: a ``progress(done, total)`` callback and a cancel flag.

`cancel` may be a ``threading.Event`` (or anything with ``is_set()``) or a function returning True
once the caller wants to stop; tasks check it between batches and raise `Cancelled`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdviewer.runtime.errors import Cancelled

Progress = Callable[[int, int], Any] | None
CancelFlag = Any  # threading.Event | Callable[[], bool] | None


def is_cancelled(cancel: CancelFlag) -> bool:
    """True when the caller asked to stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def check_cancel(cancel: CancelFlag, what: str = "inference") -> None:
    """Raise `Cancelled` when the caller asked to stop."""
    if is_cancelled(cancel):
        raise Cancelled(what)


def report(progress: Progress, done: int, total: int) -> None:
    """Call ``progress(done, total)`` when a callback was given."""
    if progress is not None:
        progress(int(done), int(total))
