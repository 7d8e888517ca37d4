"""Loading off the event loop: scan, first slice, full volume with progress, then thumbnails.

A `LoadThread` runs the study functions (`open_path`, `read_slice`, `load_series`) in a QThread and
reports through signals, so the window keeps painting while a series decodes. A newer load makes
an older one stop at its next progress step (`cancel()`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QThread, Signal

from kdviewer.gui.render import thumbnail_uint8


class _Cancelled(Exception):
    """Raised inside load_series' progress callback to stop a superseded load."""


class LoadThread(QThread):
    """Scan `path` (or take `refs` already scanned) and load series number `series`.

    Signals, in order: scanned(ScanResult) (only when scanning), first_slice(SeriesRef, (y, x) array
    of the middle slice), progress(done, total), loaded(Volume), thumbnail(series number, (h, w) uint8);
    failed(message) instead when something goes wrong (the error's one-line text).
    """

    scanned = Signal(object)
    first_slice = Signal(object, object)
    progress = Signal(int, int)
    loaded = Signal(object)
    thumbnail = Signal(int, object)
    failed = Signal(str)

    def __init__(self, path: str | Path | None = None, refs: tuple | None = None, series: int = 0,
                 thumbnails: bool = True, parent=None) -> None:
        super().__init__(parent)
        self.path = None if path is None else Path(path)
        self.refs = refs
        self.series = series
        self.thumbnails = thumbnails
        self._cancelled = False

    def cancel(self) -> None:
        """Ask the thread to stop at its next step; its later signals are not emitted."""
        self._cancelled = True

    def _progress(self, done: int, total: int) -> None:
        if self._cancelled:
            raise _Cancelled
        self.progress.emit(int(done), int(total))

    def run(self) -> None:  # noqa: D102 - QThread entry point
        from kdviewer.study.open import load_series, open_path, read_slice

        try:
            refs = self.refs
            if refs is None:
                result = open_path(self.path)
                refs = result.series
                if self._cancelled:
                    return
                self.scanned.emit(result)
            ref = refs[self.series]
            first = read_slice(ref, ref.shape[0] // 2)
            if self._cancelled:
                return
            self.first_slice.emit(ref, first)
            volume = load_series(ref, progress=self._progress)
            if self._cancelled:
                return
            self.loaded.emit(volume)
        except _Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - every failure becomes a dialog, never a crash
            if not self._cancelled:
                self.failed.emit(str(exc) or type(exc).__name__)
            return
        if self.thumbnails:
            self._emit_thumbnails(refs, read_slice)

    def _emit_thumbnails(self, refs, read_slice) -> None:
        for number, ref in enumerate(refs):
            if self._cancelled:
                return
            try:
                plane = np.asarray(read_slice(ref, ref.shape[0] // 2))
            except Exception:  # noqa: BLE001 - a series without a thumbnail is still listed
                continue
            self.thumbnail.emit(number, thumbnail_uint8(plane))
