"""The research panel's "Distil" tab: a form that becomes a recipe, background jobs with live curves, a job list.

A thin face over `distil_logic` (form -> recipe -> plan) and `kdviewer.jobs` (detached `kdviewer train|distill`
processes): training never runs in the viewer's process, so the viewer stays responsive and a job outlives
it. A `QTimer` polls the jobs followed (every 250 ms: `Job.poll()` reads the new lines of `job.log` and never
blocks); a cancelled job is polled until its state is final (the trainer writes a resumable checkpoint).
The job list is `JobHistory` in the user data folder: a viewer opened later re-attaches to jobs that still
run and offers to resume those that were interrupted. A finished run's model is installed into the user
model folder (`install_model`) and announced by `model_installed(id)`, so the AI panel can rescan.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from kdviewer.errors import KdviewerError
from kdviewer.gui import distil_logic as logic
from kdviewer.gui.job_curves import JobCurves
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
_ERROR_STYLE = "color: #b00020;"
_TEACHER_RUN_ITEM = "run folder or checkpoint…"


class DistilTab(QWidget):
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
        form_box = QWidget()
        form = QFormLayout(form_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.form = form

        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("a folder of labelled images (MedMNIST .npz, class folders, pairs, …)")
        self.data_edit.editingFinished.connect(lambda: self.set_data_folder(self.data_edit.text()))
        data_button = QPushButton("Browse…")
        data_button.clicked.connect(self.choose_data_folder)
        form.addRow("Data folder", _row(self.data_edit, data_button))
        self.preview_label = _WrapLabel("Choose a data folder: its layout and contents are shown here.")
        self.preview_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("", self.preview_label)

        self.task_combo = QComboBox()
        self.task_combo.addItems(logic.TASKS)
        self.task_combo.activated.connect(lambda i: self._set_task(self.task_combo.itemText(i)))
        form.addRow("Task", _row(self.task_combo))

        self.teacher_combo = QComboBox()
        self.teacher_combo.activated.connect(self._on_teacher_chosen)
        form.addRow("Teacher", _row(self.teacher_combo))
        self.teacher_path_edit = QLineEdit()
        self.teacher_path_edit.setPlaceholderText("a finished run folder (with best.pt) or a .pt checkpoint")
        teacher_dir_button = QPushButton("Folder…")
        teacher_dir_button.clicked.connect(self.choose_teacher_folder)
        teacher_file_button = QPushButton("File…")
        teacher_file_button.clicked.connect(self.choose_teacher_file)
        self.teacher_path_row = _row(self.teacher_path_edit, teacher_dir_button, teacher_file_button)
        form.addRow("Teacher run", self.teacher_path_row)
        self.teacher_arch_combo = QComboBox()
        self.teacher_epochs_spin = _spin(1, 10000, 10)
        self.teacher_train_row = _row(self.teacher_arch_combo, QLabel("epochs"), self.teacher_epochs_spin)
        form.addRow("Teacher net", self.teacher_train_row)

        self.student_combo = QComboBox()
        self.student_combo.currentTextChanged.connect(self._on_student_arch)
        self.width_spin = QDoubleSpinBox()
        self.width_spin.setRange(0.1, 2.0)
        self.width_spin.setSingleStep(0.05)
        self.width_spin.setDecimals(2)
        self.width_spin.setValue(1.0)
        form.addRow("Student", _row(self.student_combo, QLabel("width"), self.width_spin))

        self.method_combo = QComboBox()
        self.method_combo.currentIndexChanged.connect(self._on_method)
        self.temperature_spin = QDoubleSpinBox()
        self.temperature_spin.setRange(0.1, 20.0)
        self.temperature_spin.setSingleStep(0.5)
        self.temperature_spin.setToolTip("T > 1 softens the teacher's outputs (usually 2 to 8)")
        self.alpha_spin = QDoubleSpinBox()
        self.alpha_spin.setRange(0.0, 1.0)
        self.alpha_spin.setSingleStep(0.05)
        self.alpha_spin.setToolTip("weight of the loss on the labels (1 - alpha: the teacher's)")
        self.temperature_label = QLabel("T")
        form.addRow("KD method", _row(self.method_combo))
        form.addRow("", _row(self.temperature_label, self.temperature_spin, QLabel("alpha"), self.alpha_spin))

        self.epochs_spin = _spin(1, 10000, 10)
        self.seed_spin = _spin(0, 2**31 - 1, 0)
        form.addRow("Epochs", _row(self.epochs_spin, QLabel("seed"), self.seed_spin))
        self.name_edit = QLineEdit()
        self.name_edit.textEdited.connect(self._on_name_edited)
        self.name_edit.setToolTip("the recipe name; the model ids become <name>-student and <name>-teacher")
        form.addRow("Name", self.name_edit)
        self.out_edit = QLineEdit()
        out_button = QPushButton("Browse…")
        out_button.clicked.connect(self.choose_output_folder)
        form.addRow("Output folder", _row(self.out_edit, out_button))
        self.extra_edit = QLineEdit()
        self.extra_edit.setPlaceholderText("extra recipe settings: key=value; … (e.g. distill.batch_size=16)")
        form.addRow("Extra settings", self.extra_edit)

        self.form_error = QLabel("")
        self.form_error.setWordWrap(True)
        self.form_error.setStyleSheet(_ERROR_STYLE)
        self.form_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.save_button = QPushButton("Save recipe…")
        self.save_button.clicked.connect(self.save_recipe_dialog)
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(form_box)
        form_area = QWidget()   # the buttons and the form's error stay in sight below the scrolled form
        form_layout = QVBoxLayout(form_area)
        form_layout.setContentsMargins(0, 0, 0, 0)
        form_layout.addWidget(scroll, 1)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(6, 0, 6, 2)
        buttons.addWidget(self.form_error, 1)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.start_button)
        form_layout.addLayout(buttons)

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

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(form_area)
        splitter.addWidget(job_box)
        splitter.addWidget(lists)
        splitter.setSizes([420, 320, 200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self._update_buttons()

    # -- the form -----------------------------------------------------------------------------------

    def choose_data_folder(self) -> None:
        path = self.ask_folder("Data folder to distil from", self.data_edit.text())
        if path:
            self.set_data_folder(path)

    def choose_output_folder(self) -> None:
        path = self.ask_folder("Output folder (run folders go here)", self.out_edit.text())
        if path:
            self.out_edit.setText(path)

    def choose_teacher_folder(self) -> None:
        path = self.ask_folder("Teacher run folder (with best.pt)", self.teacher_path_edit.text())
        if path:
            self.teacher_path_edit.setText(path)

    def choose_teacher_file(self) -> None:
        path = self.ask_open_path("Teacher checkpoint", self.teacher_path_edit.text())
        if path:
            self.teacher_path_edit.setText(path)

    def set_data_folder(self, path: str) -> None:
        """Show `path` and look at it in the background (`open_dataset(...).summary()`); see `preview`."""
        path = path.strip()
        if self._preview is not None and path == str(self._preview.path) and self._preview_future is None:
            return
        self.data_edit.setText(path)
        self._preview = None
        self.form_error.setText("")
        if not path:
            self._show_preview_text("Choose a data folder: its layout and contents are shown here.", error=False)
            return
        self._show_preview_text(f"Looking at {path}…", error=False)
        future = self._preview_pool.submit(logic.preview_data, path)
        self._preview_future = future
        QTimer.singleShot(30, lambda: self._check_preview(future))

    @property
    def preview(self) -> logic.DataPreview | None:
        """The preview of the data folder once it is known (None while it is being looked at)."""
        return self._preview

    def _check_preview(self, future: Future) -> None:
        if future is not self._preview_future:
            return  # another folder was chosen meanwhile
        if not future.done():
            QTimer.singleShot(50, lambda: self._check_preview(future))
            return
        self._preview_future = None
        preview: logic.DataPreview = future.result()
        self._preview = preview
        if not preview.ok:
            self._show_preview_text(preview.error, error=True)
            return
        self._show_preview_text(preview.summary, error=False)
        if self.settings is not None:
            self.settings.setValue("distil/data_folder", str(preview.path))
        if preview.task != self.task_combo.currentText():
            self._set_task(preview.task)
        if not self._name_edited:
            self._fresh_name()

    def _show_preview_text(self, text: str, *, error: bool) -> None:
        self.preview_label.setText(text)
        self.preview_label.setStyleSheet(_ERROR_STYLE if error else "color: #333;")

    def _set_task(self, task: str) -> None:
        """Fill the task's choices and its defaults from the shipped recipe (nets, KD method, T, alpha, epochs)."""
        defaults = logic.form_defaults(task, self.data_edit.text(), self._out_root())
        self.task_combo.setCurrentText(task)
        _fill(self.student_combo, logic.STUDENT_ARCHS[task], defaults.student_arch)
        if defaults.student_width is not None:
            self.width_spin.setValue(defaults.student_width)
        _fill(self.teacher_arch_combo, logic.TEACHER_ARCHS[task], defaults.teacher_arch)
        self.teacher_epochs_spin.setValue(defaults.teacher_epochs)
        self.method_combo.blockSignals(True)
        self.method_combo.clear()
        for method in logic.METHODS_FOR_TASK[task]:
            self.method_combo.addItem(logic.METHOD_LABELS[method], method)
        self.method_combo.setCurrentIndex(self.method_combo.findData(defaults.method))
        self.method_combo.blockSignals(False)
        self.temperature_spin.setValue(defaults.temperature)
        self.alpha_spin.setValue(defaults.alpha)
        self.epochs_spin.setValue(defaults.epochs)
        self.seed_spin.setValue(defaults.seed)
        if not self.name_edit.text():
            self._fresh_name()
        self.refresh_teachers()
        self._on_method()

    def refresh_teachers(self) -> None:
        """The teacher choices: train one first, the registry's teachers for the task, a run folder."""
        task = self.task_combo.currentText()
        current = self.teacher_combo.currentData()
        self.teacher_combo.clear()
        self.teacher_combo.addItem("train one first", logic.TeacherChoice(logic.TEACHER_TRAIN, label="train one first"))
        try:
            teachers = logic.registry_teachers(task, user_dir=self.user_models_dir)
        except KdviewerError:
            teachers = []
        for t in teachers:
            label = f"{t.id} (registry{', ' + t.architecture if t.architecture else ''})"
            self.teacher_combo.addItem(label, logic.TeacherChoice(logic.TEACHER_RUN, t.path, label))
        self.teacher_combo.addItem(_TEACHER_RUN_ITEM, logic.TeacherChoice(logic.TEACHER_RUN, label=_TEACHER_RUN_ITEM))
        index = 0
        if current is not None:
            for i in range(self.teacher_combo.count()):
                if self.teacher_combo.itemData(i) == current:
                    index = i
        self.teacher_combo.setCurrentIndex(index)
        self._on_teacher_chosen()

    def _on_teacher_chosen(self, *_: Any) -> None:
        choice: logic.TeacherChoice = self.teacher_combo.currentData()
        from_folder = choice is not None and choice.kind == logic.TEACHER_RUN and not choice.path
        trains = choice is not None and choice.kind == logic.TEACHER_TRAIN
        self.form.setRowVisible(self.teacher_path_row, from_folder)
        self.form.setRowVisible(self.teacher_train_row, trains)

    def select_teacher(self, kind: str, path: str = "") -> None:
        """Choose the teacher: "train" (train one first), or "run" with a run folder / checkpoint path."""
        for i in range(self.teacher_combo.count()):
            choice = self.teacher_combo.itemData(i)
            if choice.kind == kind and (kind == logic.TEACHER_TRAIN or choice.path == path or
                                        (not choice.path and choice.label == _TEACHER_RUN_ITEM)):
                self.teacher_combo.setCurrentIndex(i)
                break
        if kind == logic.TEACHER_RUN and path and not self.teacher_combo.currentData().path:
            self.teacher_path_edit.setText(path)
        self._on_teacher_chosen()

    def _on_student_arch(self, arch: str) -> None:
        self.width_spin.setEnabled(arch in logic.WIDTH_ARCHS)

    def _on_method(self, *_: Any) -> None:
        method = self.method_combo.currentData()
        self.temperature_spin.setEnabled(method in logic.TEMPERATURE_METHODS)
        self.temperature_label.setEnabled(method in logic.TEMPERATURE_METHODS)
        self.alpha_spin.setEnabled(method not in (None, "none"))
        self.teacher_combo.setEnabled(method != "none")

    def _on_name_edited(self, text: str) -> None:
        self._name_edited = bool(text)
        if text:
            self.out_edit.setText(str(Path(self._out_root()) / text))

    def _fresh_name(self) -> None:
        name = logic.default_name(self.data_edit.text())
        self.name_edit.setText(name)
        self.out_edit.setText(str(Path(self._out_root()) / name))

    def _out_root(self) -> str:
        """Where new run folders go by default: the last output folder's parent, else <data dir>/runs."""
        current = self.out_edit.text() if hasattr(self, "out_edit") else ""
        return str(Path(current).parent) if current else str(self.data_dir / "runs")

    def form_values(self) -> logic.DistilForm:
        """The form as `distil_logic.DistilForm` (checked when it becomes a recipe)."""
        choice: logic.TeacherChoice = self.teacher_combo.currentData()
        if choice.kind == logic.TEACHER_RUN and not choice.path:
            choice = logic.TeacherChoice(logic.TEACHER_RUN, self.teacher_path_edit.text().strip(), choice.label)
        arch = self.student_combo.currentText()
        return logic.DistilForm(
            data_dir=self.data_edit.text().strip(), task=self.task_combo.currentText(), teacher=choice,
            student_arch=arch, student_width=self.width_spin.value() if arch in logic.WIDTH_ARCHS else None,
            teacher_arch=self.teacher_arch_combo.currentText() if choice.kind == logic.TEACHER_TRAIN else "",
            method=self.method_combo.currentData(), temperature=self.temperature_spin.value(),
            alpha=self.alpha_spin.value(), epochs=self.epochs_spin.value(),
            teacher_epochs=self.teacher_epochs_spin.value(), seed=self.seed_spin.value(),
            name=self.name_edit.text().strip(), out_dir=self.out_edit.text().strip(),
            overrides=logic.parse_overrides(self.extra_edit.text()))

    def _checked_form(self) -> logic.DistilForm | None:
        """The form when it can run, else None with the reason shown under it."""
        self.form_error.setText("")
        if self._preview_future is not None:
            self.form_error.setText("data folder: still looking at it; try again in a moment")
            return None
        if self._preview is not None and not self._preview.ok:
            self.form_error.setText("data folder: it fits no layout the distillation can read (see above)")
            return None
        form = self.form_values()
        try:
            logic.recipe_dict(form)
        except KdviewerError as exc:
            self.form_error.setText(str(exc))
            return None
        return form

    def save_recipe(self, path: str | Path) -> bool:
        """Write the form's recipe to `path` (to keep and rerun headless); False with the reason shown if not."""
        form = self._checked_form()
        if form is None:
            return False
        try:
            Path(path).write_text(logic.recipe_text(form), encoding="utf-8")
        except (OSError, KdviewerError) as exc:
            self.form_error.setText(f"cannot save the recipe {path}: {getattr(exc, 'strerror', None) or exc}")
            return False
        self.form_error.setStyleSheet("color: #1b5e20;")
        self.form_error.setText(f"recipe saved: {path}")
        return True

    def save_recipe_dialog(self) -> None:
        self.form_error.setStyleSheet(_ERROR_STYLE)
        start = str(Path(self.out_edit.text() or str(self.data_dir)) / logic.RECIPE_FILE)
        path = self.ask_save_path("Save the recipe", start)
        if path:
            self.save_recipe(path)

    # -- jobs ---------------------------------------------------------------------------------------

    def start(self) -> Job | None:
        """Write the recipe and plan into the output folder and start its first command; None if the form is wrong."""
        self.form_error.setStyleSheet(_ERROR_STYLE)
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

    def selected_record(self) -> JobRecord | None:
        if self._selected is None:
            return None
        try:
            return self.history.get(self._selected)
        except JobHistoryError:
            return None

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
            self._install(job.run_dir, job.progress.card)
            plan = logic.load_plan(job.run_dir)
            stage = logic.next_stage(plan, self.history.list()) if plan is not None else None
            if stage is not None:
                try:
                    self._start_stage(stage)
                except KdviewerError as exc:
                    self.show_error("Cannot start the distillation", str(exc))
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
        self._install(Path(record.run_dir), str(cards[0]))
        plan = logic.load_plan(record.run_dir)
        stage = logic.next_stage(plan, self.history.list()) if plan is not None else None
        if stage is not None:
            try:
                self._start_stage(stage)
            except KdviewerError as exc:
                self.show_error("Cannot start the distillation", str(exc))

    # -- the job list and the selected job ------------------------------------------------------------

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


class _WrapLabel(QLabel):
    """A word-wrapped label exactly as tall as its text at its width (in a scroll area a plain one reserves
    the height of a narrow column of text)."""

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(200)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt name
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        height = self.heightForWidth(max(self.width(), self.minimumWidth()))
        if height > 0 and height != self.height():
            self.setFixedHeight(height)


def _row(*widgets: QWidget) -> QWidget:
    """Widgets side by side: a line edit takes the width left, else they keep their size, left-aligned."""
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    stretch = any(isinstance(w, QLineEdit) for w in widgets)
    for w in widgets:
        if isinstance(w, QComboBox):
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        layout.addWidget(w, 1 if isinstance(w, QLineEdit) else 0)
    if not stretch:
        layout.addStretch(1)
    return box


def _spin(low: int, high: int, value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    return spin


def _fill(combo: QComboBox, items: tuple[str, ...], current: str) -> None:
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(list(items) if current in items or not current else [*items, current])
    combo.setCurrentText(current or items[0])
    combo.blockSignals(False)
    combo.currentTextChanged.emit(combo.currentText())


def _write_quietly(path: Path, text: str) -> None:
    """Write a marker file; a run folder that became read-only only means the marker is missing."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:
        pass


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1

