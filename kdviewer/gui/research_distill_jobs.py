"""The Distil tab's job area: the selected job (status, progress, curves), the job list and the job's log.

`DistilJobViewMixin` builds these widgets and keeps them up to date; the tab (`research_distill.DistilTab`)
mixes it in and gives it `history`, `jobs` (followed), `_selected`, `_log_key`, `_replays`, `_cancelling`,
`_total_steps` and the actions it calls (`cancel_selected`, `resume_selected`, `_note_totals`).
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from kdviewer.gui import distil_logic as logic
from kdviewer.gui.job_curves import JobCurves
from kdviewer.jobs import Job, JobHistoryError, JobRecord, JobState, attach_job


class DistilJobViewMixin:
    """The job half of `DistilTab` (a `QWidget`): the selected job, the job list, the log."""

    def _build_jobs(self) -> tuple[QWidget, QWidget]:
        """The selected job's box (status, progress, curves) and the job list beside the log."""
        job_box = QGroupBox("Job")
        job_layout = QVBoxLayout(job_box)
        self.status_label = QLabel("No job selected.")
        self.status_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("stop the job; it leaves a checkpoint to resume from")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(self.resume_selected)
        top = QHBoxLayout()
        top.addWidget(self.status_label, 1)
        top.addWidget(self.cancel_button)
        top.addWidget(self.resume_button)
        job_layout.addLayout(top)
        job_layout.addWidget(self.progress_bar)
        self.curves = JobCurves()
        job_layout.addWidget(self.curves, 1)

        self.job_table = QTableWidget(0, 4)
        self.job_table.setHorizontalHeaderLabels(["Name", "State", "Started", "Best"])
        self.job_table.verticalHeader().setVisible(False)
        self.job_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.job_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.job_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.job_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.job_table.itemSelectionChanged.connect(self._on_row_selected)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.log_view.setFont(QFont("monospace", 8))
        self.log_view.setPlaceholderText("The log of the selected job.")
        lists = QSplitter(Qt.Orientation.Horizontal)
        lists.addWidget(self.job_table)
        lists.addWidget(self.log_view)
        lists.setSizes([500, 500])
        return job_box, lists

    # -- the job list and the selected job ------------------------------------------------------------

    def selected_record(self) -> JobRecord | None:
        if self._selected is None:
            return None
        try:
            return self.history.get(self._selected)
        except JobHistoryError:
            return None

    def _refresh_table(self, select: str | None = None) -> None:
        rows = logic.job_rows(self.history.list())
        wanted = select or self._selected
        if wanted is not None and wanted not in {r.id for r in rows}:
            wanted = next((r.id for r in rows if self._supersedes(r.id, wanted)), wanted)
        self.job_table.blockSignals(True)
        self.job_table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for col, text in enumerate((row.name, row.state, row.started, row.best)):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, row.id)
                if col == 1 and row.state.startswith(("failed", "interrupted", "cancelled")):
                    item.setForeground(Qt.GlobalColor.darkRed)
                self.job_table.setItem(i, col, item)
        self.job_table.blockSignals(False)
        ids = [r.id for r in rows]
        if wanted in ids:
            self.job_table.selectRow(ids.index(wanted))
            if wanted != self._selected:
                self._select(wanted)
        elif rows and self._selected is None:
            self.job_table.selectRow(0)
            self._select(ids[0])
        self._update_buttons()

    def _supersedes(self, job_id: str, old_id: str) -> bool:
        """Whether `job_id` resumed `old_id` (directly or through other resumes)."""
        seen = set()
        while job_id and job_id not in seen:
            seen.add(job_id)
            try:
                job_id = self.history.get(job_id).resumed_from or ""
            except JobHistoryError:
                return False
            if job_id == old_id:
                return True
        return False

    def _on_row_selected(self) -> None:
        items = self.job_table.selectedItems()
        if items:
            self._select(items[0].data(Qt.ItemDataRole.UserRole))

    def _select(self, job_id: str) -> None:
        self._selected = job_id
        self._log_key = None
        job = self.jobs.get(job_id) or self._replay(job_id)
        if job is not None:
            self._show_job(job)
        self._update_buttons()

    def _replay(self, job_id: str) -> Job | None:
        """A finished job's `Job`, its log read again, for its curves."""
        if job_id not in self._replays:
            try:
                job = attach_job(self.history.get(job_id))
            except (JobHistoryError, ValueError):
                return None
            self._note_totals(job_id, job.poll())
            self._replays[job_id] = job
        return self._replays[job_id]

    def _show_job(self, job: Job) -> None:
        self.curves.set_progress(job.progress)
        self._show_status(job)
        self._show_log()

    def _show_status(self, job: Job) -> None:
        p = job.progress
        state = job.state
        parts = [f"<b>{job.name}</b>", p.stage or (job.argv[0] if job.argv else "")]
        total = self._total_steps.get(job.id) or (p.epochs or 0) * (p.steps_per_epoch or 0)
        if p.epoch is not None and p.epochs:
            parts.append(f"epoch {min(p.epoch + 1, p.epochs)}/{p.epochs}")
        if p.step is not None:
            parts.append(f"step {p.step}" + (f"/{total}" if total else ""))
        if p.loss is not None:
            parts.append(f"loss {p.loss:.4g}")
        best = logic.best_text(p.best_val, None if p.best_epoch is None else p.best_epoch + 1)
        if best:
            parts.append(f"best {best}")
        if state is JobState.RUNNING:
            parts.append("cancelling… (saving a checkpoint)" if job.id in self._cancelling
                         else (logic.eta_text(p.eta_s) or "starting…"))
        else:
            parts.append(state.value + (f": {job.error_message}" if state is JobState.FAILED and job.error_message
                                        else ""))
        if p.warning:   # its first clause; the log holds all of it
            parts.append(f"<span style='color:#b35c00'>warning: {html.escape(p.warning.split(':')[0])} "
                         "(see the log)</span>")
        self.status_label.setText(" · ".join(x for x in parts if x))
        if total and p.step is not None:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(p.step, total))
        else:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(1 if state is JobState.DONE else 0)

    def _show_log(self) -> None:
        record = self.selected_record()
        if record is None:
            self.log_view.clear()
            return
        paths = [Path(record.log_path or Path(record.run_dir) / "job.log"),
                 Path(record.stderr_path or Path(record.run_dir) / "stderr.log")]
        key = (record.id, *(_size(p) for p in paths))
        if key == self._log_key:
            return
        self._log_key = key
        bar = self.log_view.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        self.log_view.setPlainText(logic.log_text(record))
        if at_end:
            bar.setValue(bar.maximum())

    def _update_buttons(self) -> None:
        job = self.jobs.get(self._selected or "")
        record = self.selected_record()
        self.cancel_button.setEnabled(job is not None and job.id not in self._cancelling)
        self.resume_button.setEnabled(record is not None and record.resumable and record.id not in self.jobs
                                      and not self._resumed(record.id))

    def _resumed(self, job_id: str) -> bool:
        return any(r.resumed_from == job_id for r in self.history.list())

def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
