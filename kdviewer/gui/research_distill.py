"""The research panel's "Distil" tab: a form that becomes a recipe, background jobs with live curves, a job list.

A thin face over `distil_logic` (form -> recipe -> plan) and `kdviewer.jobs` (detached `kdviewer train|distill`
processes): training never runs in the viewer's process, so the viewer stays responsive and a job outlives
it. A `QTimer` polls the jobs followed (every 250 ms: `Job.poll()` reads the new lines of `job.log` and never
blocks); a cancelled job is polled until its state is final (the trainer writes a resumable checkpoint).
The job list is `JobHistory` in the user data folder: a viewer opened later re-attaches to jobs that still
run and offers to resume those that were interrupted. A finished run's model is installed into the user
model folder (`install_model`) and announced by `model_installed(id)`, so the AI panel can rescan.

The form lives in `research_distill_form`, the job area (selected job, job list, log) in
`research_distill_jobs`; this module wires them to the jobs.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QSplitter, QVBoxLayout, QWidget

from kdviewer.errors import KdviewerError
from kdviewer.gui import distil_logic as logic
from kdviewer.gui.research_distill_form import ERROR_STYLE, DistilFormMixin
from kdviewer.gui.research_distill_jobs import DistilJobViewMixin
from kdviewer.jobs import (
    EpochEvent,
    Job,
    JobHistory,
    JobHistoryError,
    JobRecord,
    JobState,
    StartEvent,
    attach_job,
    resume_job,
    start_job,
)

POLL_MS = 250
INSTALLED_MARKER = ".installed"     # in a run folder: its model was installed once (not again on reopen)


class DistilTab(DistilFormMixin, DistilJobViewMixin, QWidget):
    """Distil a student from local data in the background. `main_window` (optional) gives the settings store
    and the error dialog; tests pass `settings`, `data_dir` (job history, runs; default: the user data folder)
    and `user_models_dir` instead, and replace `ask_folder` / `ask_save_path` to answer the choosers."""

    # A job already leaves one core to the viewer (torch threads: all cores but one). `job_niceness` > 0 also
    # lowers its priority (nice of the process and of its session's autogroup). Off by default: measured with
    # benchmarks/bench_event_loop.py on a busy 2-core machine, nice 10 cut the job's progress about tenfold
    # for an event-loop gain lost in the noise at moderate load.
    job_niceness = 0

    model_installed = Signal(str)      # id of a model installed into the user model folder
    job_started = Signal(str)          # job id
    job_finished = Signal(str, str)    # job id, final state

    def __init__(self, parent: QWidget | None = None, main_window: Any = None, *,
                 settings: QSettings | None = None, data_dir: str | Path | None = None,
                 user_models_dir: str | Path | None = None) -> None:
        super().__init__(parent)
        self.main_window = main_window
        if settings is None and main_window is not None:
            settings = main_window.settings.store
        self.settings = settings
        self.data_dir = Path(data_dir) if data_dir is not None else logic.user_data_dir()
        self.user_models_dir = user_models_dir
        self.history = JobHistory(self.data_dir / "jobs.json")
        self.jobs: dict[str, Job] = {}           # followed: running, or cancelled and not yet final
        self._replays: dict[str, Job] = {}       # finished jobs re-read for their curves
        self._selected: str | None = None
        self._preview: logic.DataPreview | None = None
        self._preview_future: Future | None = None
        self._preview_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="distil-preview")
        self._name_edited = False
        self._log_key: tuple | None = None
        self._cancelling: set[str] = set()
        self._total_steps: dict[str, int] = {}   # job id -> optimizer steps of its current stage
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll_jobs)
        self._build()
        self._set_task(logic.TASKS[0])
        self._restore_settings()
        self._open_history()

    # -- choosers (tests replace these) ---------------------------------------------------------------

    def ask_folder(self, title: str, start: str) -> str:
        """A folder chosen by the user ("" when cancelled)."""
        return QFileDialog.getExistingDirectory(self, title, start)

    def ask_open_path(self, title: str, start: str) -> str:
        """A teacher checkpoint file chosen by the user ("" when cancelled)."""
        return QFileDialog.getOpenFileName(self, title, start, "Checkpoints (*.pt);;All files (*)")[0]

    def ask_save_path(self, title: str, start: str) -> str:
        """Where to save a recipe ("" when cancelled)."""
        return QFileDialog.getSaveFileName(self, title, start, "Recipes (*.toml)")[0]

    def show_error(self, title: str, message: str) -> None:
        """An error outside the form (installing a model): the main window's dialog, else the form's line."""
        if self.main_window is not None:
            self.main_window.show_error(self, title, message)
        else:
            self.form_error.setText(message)

    # -- building -----------------------------------------------------------------------------------

    def _build(self) -> None:
        form_area = self._build_form()
        job_box, lists = self._build_jobs()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(form_area)
        splitter.addWidget(job_box)
        splitter.addWidget(lists)
        splitter.setSizes([420, 320, 200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self._update_buttons()

    # -- jobs ---------------------------------------------------------------------------------------

    def start(self) -> Job | None:
        """Write the recipe and plan into the output folder and start its first command; None if the form is wrong."""
        self.form_error.setStyleSheet(ERROR_STYLE)
        form = self._checked_form()
        if form is None:
            return None
        try:
            plan = logic.write_plan(form)
            stage = logic.next_stage(plan, self.history.list())
            if stage is None:
                raise logic.DistilFormError("output folder: its runs already have jobs; choose another folder")
            job = self._start_stage(stage)
        except KdviewerError as exc:
            self.form_error.setText(str(exc))
            return None
        self._name_edited = False
        self._fresh_name()   # the next start gets fresh run folders
        return job

    def _start_stage(self, stage: logic.Stage) -> Job:
        job = start_job(stage.argv, stage.run_dir, name=stage.name, env=logic.job_env())
        if self.job_niceness:
            logic.lower_priority(job.pid, self.job_niceness)
        self._follow(job, new=True)
        return job

    def _follow(self, job: Job, *, new: bool) -> None:
        if new:
            self.history.add(job)
        self.jobs[job.id] = job
        self._refresh_table(select=job.id)
        self.job_started.emit(job.id)
        if not self.timer.isActive():
            self.timer.start()

    def cancel_selected(self) -> None:
        """Ask the selected job to stop (it saves a resumable checkpoint); it is polled until its state is final."""
        job = self.jobs.get(self._selected or "")
        if job is not None:
            job.cancel()
            self._cancelling.add(job.id)
            self._update_buttons()
            self._show_status(job)

    def resume_selected(self) -> Job | None:
        """Start the selected interrupted, cancelled or failed job again with --resume."""
        record = self.selected_record()
        if record is None or not record.resumable or record.id in self.jobs:
            return None
        try:
            job = resume_job(record, env=logic.job_env())
        except KdviewerError as exc:
            self.show_error("Cannot resume the job", str(exc))
            return None
        if self.job_niceness:
            logic.lower_priority(job.pid, self.job_niceness)
        self._follow(job, new=True)
        return job

    def poll_jobs(self) -> None:
        """One timer tick: read the jobs' new events, keep the history up to date, settle finished jobs."""
        for job in list(self.jobs.values()):
            events = job.poll()
            self._note_totals(job.id, events)
            state = job.state
            if state is not JobState.RUNNING:
                del self.jobs[job.id]
                self._finished(job)
            elif any(isinstance(e, EpochEvent | StartEvent) for e in events):
                self.history.update(job)   # the list shows the best metric so far
                self._refresh_table()
        current = self.jobs.get(self._selected or "")
        if current is not None:
            self._show_job(current)
        if not self.jobs:
            self.timer.stop()

    def _note_totals(self, job_id: str, events: list) -> None:
        """Keep the step total a start event announces (`--max-steps` makes it less than epochs x steps)."""
        for event in events:
            if isinstance(event, StartEvent) and isinstance(event.raw.get("total_steps"), int):
                self._total_steps[job_id] = event.raw["total_steps"]

    def _finished(self, job: Job) -> None:
        """A job reached its final state: record it, install its model, start the plan's next command."""
        self.history.update(job)
        self._replays.pop(job.id, None)
        self._cancelling.discard(job.id)
        if job.state is JobState.DONE:
            self._install_and_continue(job.run_dir, job.progress.card)
        self._refresh_table()
        if self._selected == job.id:
            self._show_job(job)
        self.job_finished.emit(job.id, job.state.value)

    def _install(self, run_dir: Path, card: str | None) -> None:
        """Install a finished run's exported model into the user model folder; announce it."""
        from kdviewer.runtime.install import install_model

        if not card:
            return
        marker = Path(run_dir) / INSTALLED_MARKER
        try:
            model = install_model(card, user_dir=self.user_models_dir)
        except KdviewerError as exc:
            _write_quietly(marker, f"not installed: {exc}\n")   # said once; `kdviewer models install` retries
            self.show_error("Cannot install the model", str(exc))
            return
        _write_quietly(marker, model.id + "\n")
        if model.role == "teacher":
            self.refresh_teachers()
        self.model_installed.emit(model.id)

    def _open_history(self) -> None:
        """Load the job list: follow again the jobs that still run, install models that finished meanwhile,
        and start a plan's next command when its teacher finished while no viewer watched."""
        try:
            records = self.history.load()
        except JobHistoryError as exc:
            self.log_view.setPlainText(str(exc))
            records = []
        for record in records:
            if record.state == JobState.RUNNING:
                self.jobs[record.id] = attach_job(record)
        for record in records:
            if record.state == JobState.DONE and not (Path(record.run_dir) / INSTALLED_MARKER).exists():
                self._install_finished_run(record)
        self._refresh_table(select=records[-1].id if records else None)
        if self.jobs:
            self.timer.start()

    def _install_finished_run(self, record: JobRecord) -> None:
        """A run that finished while no viewer watched: install its model, continue its plan."""
        from kdviewer.runtime.install import run_cards

        try:
            cards = [c for c in run_cards(record.run_dir) if not c.stem.endswith("-int8")]
        except KdviewerError:
            return
        self._install_and_continue(Path(record.run_dir), str(cards[0]))

    def _install_and_continue(self, run_dir: Path, card: str | None) -> None:
        """A finished run: install its model, then start its plan's next command (teacher → student)."""
        self._install(run_dir, card)
        plan = logic.load_plan(run_dir)
        stage = logic.next_stage(plan, self.history.list()) if plan is not None else None
        if stage is not None:
            try:
                self._start_stage(stage)
            except KdviewerError as exc:
                self.show_error("Cannot start the distillation", str(exc))

    # -- settings and closing ---------------------------------------------------------------------------

    def _restore_settings(self) -> None:
        if self.settings is None:
            return
        folder = self.settings.value("distil/data_folder", "")
        if folder and Path(str(folder)).exists():
            self.set_data_folder(str(folder))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        """Jobs keep running (they are detached); only the timer and the preview thread stop."""
        self.timer.stop()
        self._preview_pool.shutdown(wait=False, cancel_futures=True)
        super().closeEvent(event)


def _write_quietly(path: Path, text: str) -> None:
    """Write a marker file; a run folder that became read-only only means the marker is missing."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:
        pass
