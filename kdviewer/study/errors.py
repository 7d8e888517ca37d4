"""Typed errors of the study layer: every one names the file and the reason."""

from __future__ import annotations

from pathlib import Path

from kdviewer.errors import KdviewerError


class StudyError(KdviewerError):
    """Base class of every problem met while reading a study."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class PathNotFoundError(StudyError):
    """The path does not exist."""


class UnsupportedFormatError(StudyError):
    """The file is not an image format kdviewer can read."""


class CorruptFileError(StudyError):
    """The file is of a known format but damaged (zero bytes, truncated, undecodable pixels)."""


class NoSeriesFoundError(StudyError):
    """A folder (or file) held no readable image series."""


class VolumeTooLargeError(StudyError):
    """The volume would not fit in the memory available; refused before allocating."""
