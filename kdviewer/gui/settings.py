"""What the viewer remembers between runs (QSettings, organisation "kdviewer").

Tests pass their own `QSettings(path, QSettings.IniFormat)` so the user's settings are never touched.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10


def default_settings() -> QSettings:
    """The user's settings store: organisation and application "kdviewer"."""
    return QSettings("kdviewer", "kdviewer")


def file_settings(path: str | Path) -> QSettings:
    """A settings store in an INI file (for tests and portable installs)."""
    return QSettings(str(path), QSettings.Format.IniFormat)


class ViewerSettings:
    """Typed access to the remembered values: recent files, layout, window geometry, last window."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else default_settings()

    def recent_files(self) -> list[str]:
        """Most recent first."""
        value = self.store.value("recent_files", [])
        if isinstance(value, str):  # QSettings returns a lone string for a one-item list
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str | Path) -> list[str]:
        """Put `path` first in the recent files (at most MAX_RECENT); returns the new list."""
        path = str(Path(path).resolve())
        files = [path] + [p for p in self.recent_files() if p != path]
        files = files[:MAX_RECENT]
        self.store.setValue("recent_files", files)
        return files

    def clear_recent(self) -> None:
        """Forget the recent files."""
        self.store.setValue("recent_files", [])

    @property
    def layout(self) -> str:
        return str(self.store.value("layout", "1x3"))

    @layout.setter
    def layout(self, value: str) -> None:
        self.store.setValue("layout", value)

    def geometry(self) -> QByteArray | None:
        """The main window's saved geometry, if any."""
        value = self.store.value("geometry")
        return value if isinstance(value, QByteArray) else None

    def set_geometry(self, geometry: QByteArray, window_state: QByteArray) -> None:
        """Remember the main window's geometry and its docks/toolbars."""
        self.store.setValue("geometry", geometry)
        self.store.setValue("window_state", window_state)

    def window_state(self) -> QByteArray | None:
        value = self.store.value("window_state")
        return value if isinstance(value, QByteArray) else None

    @property
    def last_dir(self) -> str:
        return str(self.store.value("last_dir", str(Path.home())))

    @last_dir.setter
    def last_dir(self, value: str) -> None:
        self.store.setValue("last_dir", value)

    def sync(self) -> None:
        """Write to disk now."""
        self.store.sync()
