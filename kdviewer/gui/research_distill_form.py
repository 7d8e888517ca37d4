"""The Distil tab's form: data folder and its preview, task, teacher, student, KD method, epochs, name, output.

`DistilFormMixin` builds the form and turns it into a `distil_logic.DistilForm` (and a recipe to save); the
tab (`research_distill.DistilTab`) mixes it in and gives it `data_dir`, `settings`, `user_models_dir`,
`_preview_pool` and the choosers (`ask_folder`, `ask_open_path`, `ask_save_path`).
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from kdviewer.errors import KdviewerError
from kdviewer.gui import distil_logic as logic

ERROR_STYLE = "color: #b00020;"
_TEACHER_RUN_ITEM = "run folder or checkpoint…"


class DistilFormMixin:
    """The form half of `DistilTab` (a `QWidget`): its widgets, their choices and defaults, the recipe."""

    def _build_form(self) -> QWidget:
        """The form in a scroll area, its error line and its Save / Start buttons below it."""
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
        self.teacher_path_edit.setPlaceholderText("a finished run folder (with best.pt), a .pt checkpoint, or an "
                                                  "ONNX model's .onnx / card .json")
        teacher_dir_button = QPushButton("Folder…")
        teacher_dir_button.clicked.connect(self.choose_teacher_folder)
        teacher_file_button = QPushButton("File…")
        teacher_file_button.clicked.connect(self.choose_teacher_file)
        self.teacher_path_row = _row(self.teacher_path_edit, teacher_dir_button, teacher_file_button)
        form.addRow("Teacher run", self.teacher_path_row)
        self.teacher_note = _WrapLabel("")
        form.addRow("", self.teacher_note)
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
        self.epochs_note = _WrapLabel("")
        form.addRow("", self.epochs_note)
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
        self.form_error.setStyleSheet(ERROR_STYLE)
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
        return form_area

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
        path = self.ask_open_path("Teacher checkpoint or ONNX model", self.teacher_path_edit.text())
        if path:
            self.teacher_path_edit.setText(path)
            self._on_teacher_chosen()

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
        self.preview_label.setStyleSheet(ERROR_STYLE if error else "color: #333;")

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
        self.epochs_note.setText(logic.float32_epochs_note(task))
        self.epochs_note.setVisible(bool(self.epochs_note.text()))
        self.seed_spin.setValue(defaults.seed)
        if not self.name_edit.text():
            self._fresh_name()
        self.refresh_teachers()
        self._on_method()

    def refresh_teachers(self) -> None:
        """The teacher choices: train one first, the registry's teachers for the task (those with a run
        folder, then the ONNX ones, e.g. the zoo's), a run folder."""
        task = self.task_combo.currentText()
        current = self.teacher_combo.currentData()
        self.teacher_combo.clear()
        self.teacher_combo.addItem("train one first", logic.TeacherChoice(logic.TEACHER_TRAIN, label="train one first"))
        try:
            teachers = logic.registry_teachers(task, user_dir=self.user_models_dir)
        except KdviewerError:
            teachers = []
        for t in teachers:
            label = f"{t.id} ({teacher_kind(t)}{', ' + t.architecture if t.architecture else ''})"
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
        path = (self.teacher_path_edit.text() if from_folder else choice.path) if choice is not None else ""
        note = logic.onnx_teacher_note(path) if choice is not None and choice.kind == logic.TEACHER_RUN else ""
        self.teacher_note.setText(note)
        self.form.setRowVisible(self.teacher_note, bool(note))

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
        self.form_error.setStyleSheet(ERROR_STYLE)
        start = str(Path(self.out_edit.text() or str(self.data_dir)) / logic.RECIPE_FILE)
        path = self.ask_save_path("Save the recipe", start)
        if path:
            self.save_recipe(path)

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


def teacher_kind(teacher: logic.RegistryTeacher) -> str:
    """How the teacher list names where a registry teacher comes from: "registry" (a run folder or
    checkpoint), "zoo ONNX" (a shipped ONNX model) or "ONNX" (a user's)."""
    if not teacher.onnx:
        return "registry"
    return "zoo ONNX" if teacher.origin == "shipped" else "ONNX"


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
