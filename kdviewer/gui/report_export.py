"""The "Export report" action shared by the two comparison views (on the study, on a labelled folder)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog


class ReportExport:
    """Mixin for a widget with `result`, `logic.export(result, out_dir, pngs)`, `plot_pngs()`, `status`
    and `show_error`: writes report.html (plots as PNG) and cases.csv."""

    def choose_export(self) -> None:
        """Ask for a folder and write the report there."""
        path = QFileDialog.getExistingDirectory(self, "Write the report into", "")
        if path:
            self.export(path)

    def export(self, out_dir: str | Path) -> dict[str, Path] | None:
        """Write the report into `out_dir`; None (and a dialog) when it cannot be written."""
        if self.result is None:
            return None
        try:
            written = self.logic.export(self.result, out_dir, self.plot_pngs())
        except OSError as exc:
            self.show_error(self.window(), "Could not write the report", str(exc))
            return None
        extra = f" and {Path(written['csv']).name}" if written.get("csv") else ""
        self.status.setText(f"Report written: {written['html']}{extra}")
        return written
