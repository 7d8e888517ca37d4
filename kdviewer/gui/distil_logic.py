"""The logic of the research panel's "Distil" tab, without Qt: form -> recipe -> jobs -> job list.

The tab is a thin face over this module (3D Slicer's Logic/Widget split), and everything it does can be
repeated headless: the form becomes a recipe TOML (`recipe_text`), the run is one or two `kdviewer`
commands (`plan_for`: `train` first when the teacher is to be trained, then `distill`), started and
followed by `kdviewer.jobs`. A plan is written beside its recipe (`plan.json`), so a viewer opened
later knows that a finished teacher is to be followed by its distillation. The teacher may also be an ONNX
model (a zoo teacher, by its card): the recipe then takes the card's preprocessing, and only output KD
methods are accepted with it.

Never imports torch or `kdviewer.distill`: the recipe keys are read from the shipped recipes.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from kdviewer.errors import KdviewerError
from kdviewer.imaging.preprocess import optional_steps
from kdviewer.jobs import JobRecord, JobState, format_event, parse_event

if TYPE_CHECKING:
    from kdviewer.runtime import Model

RECIPES_DIR = Path(__file__).resolve().parents[2] / "resources" / "recipes"
TASKS = ("classify", "segment", "denoise", "super_resolve")
# The shipped recipe whose settings are the defaults for a task.
DEFAULT_RECIPES = {"classify": "breast-us", "segment": "retina-vessels", "denoise": "ct-denoise",
                   "super_resolve": "ct-superres"}
# The KD methods offered per task (as `distill.recipe.METHODS_FOR_TASK`; a test keeps the two equal).
METHODS_FOR_TASK = {
    "classify": ("none", "hinton", "dkd", "fitnets", "attention"),
    "segment": ("none", "pixel", "cwd", "fitnets", "attention"),
    "denoise": ("none", "restoration", "fitnets", "attention"),
    "super_resolve": ("none", "restoration", "fitnets", "attention"),
}
METHOD_LABELS = {"none": "none (baseline, no KD)", "hinton": "Hinton KD (T, alpha)", "dkd": "DKD (decoupled KD)",
                 "fitnets": "FitNets (feature KD)", "attention": "attention transfer", "pixel": "pixel-wise KD (T)",
                 "cwd": "CWD (channel-wise KD, T)", "restoration": "restoration KD (alpha)"}
TEMPERATURE_METHODS = ("hinton", "dkd", "pixel", "cwd")
STUDENT_ARCHS = {"classify": ("mobilenetv2", "resnet18"), "segment": ("mobileunet", "unet_small", "unet"),
                 "denoise": ("denoise_small", "dncnn", "redcnn"), "super_resolve": ("espcn", "fsrcnn", "srresnet")}
TEACHER_ARCHS = {"classify": ("resnet18", "resnet34", "resnet50", "mobilenetv2"),
                 "segment": ("unet", "mobileunet", "unet_small"), "denoise": ("redcnn", "dncnn"),
                 "super_resolve": ("srresnet", "fsrcnn")}
WIDTH_ARCHS = ("mobilenetv2", "mobileunet")   # nets with a width multiplier
TEACHER_TRAIN = "train"                       # TeacherChoice.kind: train one first
TEACHER_RUN = "run"                           # a run folder, a checkpoint file or an ONNX model
FEATURE_METHODS = ("fitnets", "attention")    # KD on inner layers: a teacher run folder only
PLAN_FILE = "plan.json"
RECIPE_FILE = "recipe.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class DistilFormError(KdviewerError):
    """A form that cannot become a run: the message names the field and what to change."""


# -- the data folder -----------------------------------------------------------------------------

@dataclass(frozen=True)
class DataPreview:
    """What a data folder holds, for the form: `summary` when it opened, else `error`."""

    path: Path
    summary: str = ""
    layout: str = ""
    task_hint: str = ""          # classify | segment | restore
    class_names: tuple[str, ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def task(self) -> str:
        """The task the data suggests (restoration data: denoise)."""
        return "denoise" if self.task_hint == "restore" else (self.task_hint or "classify")


def preview_data(path: str | Path) -> DataPreview:
    """Open a data folder as the distillation engine will (`open_dataset`) and summarise it; never raises
    for a folder that fits no layout: the preview carries the error's message."""
    from kdviewer.study.datasets import open_dataset

    path = Path(path)
    try:
        ds = open_dataset(path)
        return DataPreview(path, summary=ds.summary(), layout=ds.layout, task_hint=ds.task_hint,
                           class_names=tuple(ds.class_names or ()))
    except KdviewerError as exc:
        return DataPreview(path, error=str(exc))
    except OSError as exc:
        return DataPreview(path, error=f"{path}: {exc.strerror or exc}")


# -- the form and its recipe -----------------------------------------------------------------------

@dataclass(frozen=True)
class TeacherChoice:
    """Where the teacher comes from: `kind` "train" (train one first) or "run" (`path`: a run folder, a
    checkpoint, or an ONNX model's .onnx / card .json; a registry teacher is given by its run folder, else by
    its card); `label` is what the form shows."""

    kind: str
    path: str = ""
    label: str = ""


@dataclass(frozen=True)
class DistilForm:
    """The values of the form, in recipe units (epochs, temperature T > 0, alpha in [0, 1])."""

    data_dir: str
    task: str
    teacher: TeacherChoice
    student_arch: str
    out_dir: str
    name: str
    student_width: float | None = None
    teacher_arch: str = ""            # when the teacher is trained first
    method: str = "hinton"
    temperature: float = 4.0
    alpha: float = 0.5
    epochs: int = 10                  # the student's
    teacher_epochs: int = 10
    seed: int = 0
    overrides: tuple[str, ...] = ()   # extra `key=value` recipe settings (dotted for tables)

    @property
    def trains_teacher(self) -> bool:
        """Whether a teacher is trained first (never for the no-KD baseline, which needs none)."""
        return self.teacher.kind == TEACHER_TRAIN and self.method != "none"


def shipped_recipe(task: str) -> dict[str, Any]:
    """The shipped recipe the defaults of `task` come from, as a dict."""
    if task not in TASKS:
        raise DistilFormError(f"task: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    path = RECIPES_DIR / f"{DEFAULT_RECIPES[task]}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))


def form_defaults(task: str, data_dir: str, out_root: str | Path, now: float | None = None) -> DistilForm:
    """A form filled with `task`'s shipped recipe: nets, KD method and its settings, epochs, seed; a fresh
    name and output folder (`out_root/<name>`)."""
    raw = shipped_recipe(task)
    distill, student = raw.get("distill", {}), raw.get("student_net", {})
    name = default_name(data_dir, now)
    method = distill.get("method", "hinton")
    return DistilForm(data_dir=data_dir, task=task, teacher=TeacherChoice(TEACHER_TRAIN, label="train one first"),
                      student_arch=student.get("arch", STUDENT_ARCHS[task][0]),
                      student_width=student.get("width"), teacher_arch=raw.get("teacher_net", {}).get("arch", ""),
                      method=method if method in METHODS_FOR_TASK[task] else METHODS_FOR_TASK[task][1],
                      temperature=float(distill.get("temperature", 4.0)), alpha=float(distill.get("alpha", 0.5)),
                      epochs=int(distill.get("epochs", 10)), teacher_epochs=int(raw.get("train", {}).get("epochs", 10)),
                      seed=int(raw.get("seed", 0)), name=name, out_dir=str(Path(out_root) / name))


def float32_epochs_note(task: str) -> str:
    """The epochs `task`'s shipped recipe trains where bfloat16 is not native (its `[without_bf16]` schedule), in
    words for the form; "" where it has none. The form's epochs are the bfloat16 schedule's; left as they are,
    the run takes the float32 ones on such a CPU (most laptops)."""
    raw = shipped_recipe(task)
    fallback = raw.get("without_bf16", {})
    parts = [f"{who} {fallback[stage]['epochs']}" for stage, who in (("train", "teacher"), ("distill", "student"))
             if "epochs" in fallback.get(stage, {})]
    if not parts:
        return ""
    return (f"Where the CPU has no native bfloat16 (most laptops) these defaults train {' and '.join(parts)} "
            "epochs, to keep the hour; epochs you change are trained as given.")


def default_name(data_dir: str, now: float | None = None) -> str:
    """A recipe name from the data folder and the time (the model ids become `<name>-student`)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(data_dir).name if data_dir else "").strip("-").lower() or "distil"
    return f"{stem[:32]}-{datetime.fromtimestamp(now or time.time()).strftime('%Y%m%d-%H%M%S')}"


def parse_overrides(text: str) -> tuple[str, ...]:
    """`key=value` items separated by ';' or new lines (values as in `--set`: TOML, else a string)."""
    items = [item.strip() for line in text.splitlines() for item in line.split(";")]
    return tuple(item for item in items if item)


def _override_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()   # a bare word or a path: a string, as `--set` takes it


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> None:
    """Set dotted `key=value` items in a recipe dict in place (as `kdviewer distill --set` does)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DistilFormError(f"extra settings: {item!r} is not key=value (e.g. distill.batch_size=16)")
        *tables, last = key.split(".")
        if len(tables) == 1 and isinstance(raw.get("without_bf16", {}).get(tables[0]), dict):
            raw["without_bf16"][tables[0]].pop(last, None)  # a value set here wins, on every CPU (as with --set)
        section = raw
        for part in tables:
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                raise DistilFormError(f"extra settings: {key}: {part!r} is not a table")
        section[last] = _override_value(text)


def is_onnx_teacher(path: str) -> bool:
    """True when a teacher path names an ONNX model (its .onnx or card .json) rather than a run folder or a
    checkpoint (the engine's own rule, `runtime.registry.names_model_file`)."""
    from kdviewer.runtime import registry

    return registry.names_model_file(path)


def onnx_teacher_model(form: DistilForm) -> Model | None:
    """The card of the form's teacher when it is an ONNX model that the run uses, else None. The card is read
    but the file's sha256 is left to the run; a card that cannot be read raises `DistilFormError`."""
    from kdviewer.runtime import load_model

    if form.method == "none" or form.teacher.kind != TEACHER_RUN or not is_onnx_teacher(form.teacher.path):
        return None
    try:
        return load_model(Path(form.teacher.path.strip()).expanduser(), verify=False)
    except KdviewerError as exc:
        raise DistilFormError(f"teacher: cannot read the ONNX model's card ({exc}); choose a model card "
                              "(.json) or an .onnx with its card beside it") from None


def check_form(form: DistilForm) -> None:
    """Raise `DistilFormError` for a value the run would refuse, naming the field."""
    if not form.data_dir:
        raise DistilFormError("data folder: choose the folder of labelled images to distil from")
    if form.task not in TASKS:
        raise DistilFormError(f"task: unknown task {form.task!r}")
    if form.method not in METHODS_FOR_TASK[form.task]:
        raise DistilFormError(f"KD method: {form.method} does not apply to {form.task}; choose one of "
                              f"{', '.join(METHODS_FOR_TASK[form.task])}")
    if not _NAME.match(form.name):
        raise DistilFormError(f"name: {form.name!r}: use letters, digits, '.', '_' and '-' (it becomes the model id)")
    if not form.out_dir:
        raise DistilFormError("output folder: choose where the run folders go")
    if form.method != "none" and form.teacher.kind == TEACHER_RUN and not form.teacher.path:
        raise DistilFormError("teacher: choose a teacher run folder or checkpoint, or train one first")
    if form.method in TEMPERATURE_METHODS and not form.temperature > 0:
        raise DistilFormError("T: the temperature must be above 0 (usually 2 to 8)")
    if not 0.0 <= form.alpha <= 1.0:
        raise DistilFormError("alpha: the weight of the label loss is between 0 and 1")
    if form.epochs < 1 or form.teacher_epochs < 1:
        raise DistilFormError("epochs: at least 1")
    model = onnx_teacher_model(form)
    if model is None:
        return
    if model.task != form.task:
        raise DistilFormError(f"teacher: {model.id} is a {model.task} model and cannot teach a {form.task} "
                              f"student; choose a {form.task} teacher")
    if form.method in FEATURE_METHODS:
        raise DistilFormError(f"teacher: {form.method} needs the teacher's inner layers, but an ONNX teacher "
                              "gives only its outputs: choose hinton/dkd/pixel/cwd/restoration, or a teacher "
                              "run folder")


def teacher_run_dir(form: DistilForm) -> Path:
    """Where the teacher's run folder is (trained first: `<out>/teacher`) or the given one."""
    if form.trains_teacher:
        return Path(form.out_dir).resolve() / "teacher"
    return Path(form.teacher.path).expanduser().resolve()


def student_run_dir(form: DistilForm) -> Path:
    """The distillation's run folder: `<out>/student` (`<out>/baseline` for the no-KD baseline)."""
    return Path(form.out_dir).resolve() / ("baseline" if form.method == "none" else "student")


def recipe_dict(form: DistilForm) -> dict[str, Any]:
    """The recipe of a form: the task's shipped recipe with the form's values (and extra settings) set."""
    check_form(form)
    raw = shipped_recipe(form.task)
    raw["name"] = form.name
    raw["task"] = form.task
    raw["seed"] = form.seed
    raw["teacher"] = "" if form.method == "none" else str(teacher_run_dir(form))
    data = raw.setdefault("data", {})
    data["path"] = str(Path(form.data_dir).expanduser().resolve())
    data["seed"] = form.seed
    if form.teacher_arch:
        raw.setdefault("teacher_net", {})["arch"] = form.teacher_arch
    student: dict[str, Any] = {"arch": form.student_arch}
    if form.student_arch in WIDTH_ARCHS and form.student_width is not None:
        student["width"] = float(form.student_width)
    old = raw.get("student_net", {})
    if old.get("arch") == form.student_arch:   # keep the shipped options of the same net (stem, depth)
        student = {**old, **student}
    raw["student_net"] = student
    fallback = raw.get("without_bf16", {})
    for stage, epochs in (("train", form.teacher_epochs), ("distill", form.epochs)):
        if epochs != raw.get(stage, {}).get("epochs"):  # changed in the form: trained as given on every CPU
            fallback.get(stage, {}).pop("epochs", None)
    raw.setdefault("train", {})["epochs"] = form.teacher_epochs
    distill = raw.setdefault("distill", {})
    distill.update(epochs=form.epochs, method=form.method, alpha=float(form.alpha))
    if form.method in TEMPERATURE_METHODS:
        distill["temperature"] = float(form.temperature)
    model = onnx_teacher_model(form)
    if model is not None:   # the run refuses a teacher whose preprocessing is not the recipe's
        settings = teacher_data(model)
        for key in ("window", "slices", "grey", "clahe"):
            if key not in settings:
                data.pop(key, None)   # stale: the shipped recipe's, not the teacher's
        data.update(settings)
    apply_overrides(raw, form.overrides)
    return raw


def onnx_teacher_note(path: str) -> str:
    """One line for the form under an ONNX teacher: what it fixes and what it allows ("" for other teachers);
    a card that cannot be read says so (the form's check refuses it on Start)."""
    from kdviewer.runtime import load_model

    if not path or not is_onnx_teacher(path):
        return ""
    try:
        model = load_model(Path(path.strip()).expanduser(), verify=False)
    except KdviewerError as exc:
        return f"This ONNX model's card cannot be read: {exc}"
    data = teacher_data(model)
    size = "×".join(str(v) for v in data.get("input_size", ())) or "any size"
    norm = data["normalize"] + (f" {data['window'][0]:g}/{data['window'][1]:g}" if "window" in data else "")
    slices = f", {data['slices']} slices" if "slices" in data else ""
    slices += f", {data['grey']} channel as grey" if "grey" in data else ""
    slices += f", CLAHE clip {data['clahe']:g}" if "clahe" in data else ""
    return (f"Runs in onnxruntime (sha256 checked at the start). Its card fixes the preprocessing: {norm}, "
            f"{size}, {data['channels']} channel(s){slices}. Output KD methods only (not FitNets / attention).")


def teacher_data(model: Model) -> dict[str, Any]:
    """The `[data]` settings an ONNX teacher's card fixes (the batch the student sees is fed to it as it is):
    normalisation and its window, channels per slice and slices, the input (H, W) when the card states it."""
    pre = model.preprocess
    slices = max(1, model.slices)
    out: dict[str, Any] = {"normalize": str(pre.get("normalize") or "minmax"),
                           "channels": max(1, model.channels // slices)}
    if pre.get("window"):
        out["window"] = [float(v) for v in pre["window"]]
    if slices > 1:
        out["slices"] = slices
    out.update(optional_steps(pre))
    _, _, height, width = model.input_shape
    if height and width:
        out["input_size"] = [int(height), int(width)]
    return out


def recipe_text(form: DistilForm) -> str:
    """The recipe TOML of a form (top-level keys first, then the tables), for `kdviewer train|distill`."""
    raw = recipe_dict(form)
    ordered = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    ordered.update({k: v for k, v in raw.items() if isinstance(v, dict)})
    header = (f"# Written by kdviewer's Distil tab on {datetime.now().isoformat(timespec='seconds')}.\n"
              f"# Rerun headless: kdviewer {'train RECIPE --out TEACHER_DIR, then ' if form.trains_teacher else ''}"
              f"kdviewer distill RECIPE --out RUN_DIR\n")
    return header + tomli_w.dumps(ordered)


# -- the plan: which commands, in which run folders --------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One command of a plan: `kdviewer <argv>` writing `run_dir`; `name` is the job's name."""

    stage: str          # train | distill
    name: str
    argv: tuple[str, ...]
    run_dir: str


@dataclass(frozen=True)
class DistilPlan:
    """The commands a form runs, in order, and where its recipe is."""

    name: str
    recipe_path: str
    stages: tuple[Stage, ...]

    def to_json(self) -> dict[str, Any]:
        return {"schema": "kdviewer.distil-plan/1", "name": self.name, "recipe": self.recipe_path,
                "stages": [{"stage": s.stage, "name": s.name, "argv": list(s.argv), "run_dir": s.run_dir}
                           for s in self.stages]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DistilPlan:
        return cls(name=str(obj["name"]), recipe_path=str(obj["recipe"]),
                   stages=tuple(Stage(str(s["stage"]), str(s["name"]), tuple(s["argv"]), str(s["run_dir"]))
                                for s in obj["stages"]))


def plan_for(form: DistilForm, recipe_path: str | Path | None = None) -> DistilPlan:
    """The commands of a form: `train` (teacher first, when asked) then `distill`, each with `--out`."""
    recipe = str(Path(recipe_path) if recipe_path else Path(form.out_dir).resolve() / RECIPE_FILE)
    stages = []
    if form.trains_teacher:
        run_dir = str(teacher_run_dir(form))
        stages.append(Stage("train", f"{form.name} · teacher", ("train", recipe, "--out", run_dir), run_dir))
    run_dir = str(student_run_dir(form))
    stages.append(Stage("distill", form.name, ("distill", recipe, "--out", run_dir), run_dir))
    return DistilPlan(form.name, recipe, tuple(stages))


def write_plan(form: DistilForm) -> DistilPlan:
    """Write `<out>/recipe.toml` and `<out>/plan.json` for a run; refuses an output folder that holds a run."""
    text = recipe_text(form)
    plan = plan_for(form)
    for stage in plan.stages:
        if (Path(stage.run_dir) / "last.pt").exists():
            raise DistilFormError(f"output folder: {stage.run_dir} already holds a run; choose another folder "
                                  "(or resume that job from the job list)")
    out = Path(form.out_dir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / RECIPE_FILE).write_text(text, encoding="utf-8")
        (out / PLAN_FILE).write_text(json.dumps(plan.to_json(), indent=1), encoding="utf-8")
    except OSError as exc:
        raise DistilFormError(f"output folder: cannot write {out}: {exc.strerror or exc}") from None
    return plan


def load_plan(run_dir: str | Path) -> DistilPlan | None:
    """The plan a run folder belongs to (`plan.json` in its parent), or None."""
    path = Path(run_dir).parent / PLAN_FILE
    try:
        return DistilPlan.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def next_stage(plan: DistilPlan, records: Sequence[JobRecord]) -> Stage | None:
    """The stage to start now: the first whose run has no job yet, once every stage before it is done.
    None while a stage runs or waits to be resumed, and when all are done."""
    for stage in plan.stages:
        mine = [r for r in records if Path(r.run_dir) == Path(stage.run_dir)]
        if not mine:
            return stage
        if max(mine, key=lambda r: r.started).state != JobState.DONE:
            return None
    return None


# -- the job list --------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobRow:
    """One line of the job list."""

    id: str
    name: str
    state: str
    started: str          # local time, "YYYY-MM-DD HH:MM"
    best: str             # e.g. "auc 0.973 (epoch 4)"
    resumable: bool
    stage: str            # train | distill | ""


def best_text(best_val: Mapping[str, float], epoch: int | None = None) -> str:
    """The best validation metric, the first one the trainer reports (its primary)."""
    if not best_val:
        return ""
    name, value = next(iter(best_val.items()))
    where = f" (epoch {epoch})" if epoch is not None else ""
    return f"{name} {value:.3g}{where}" if math.isfinite(value) else f"{name} {value}{where}"


def _local(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def job_rows(records: Iterable[JobRecord]) -> list[JobRow]:
    """The job list, newest first; a job that was resumed is shown by its latest run only."""
    records = list(records)
    superseded = {r.resumed_from for r in records if r.resumed_from}
    rows = []
    for r in sorted(records, key=lambda r: r.started, reverse=True):
        if r.id in superseded:
            continue
        state = r.state + (" (resumed)" if r.resumed_from else "")
        epoch = None if r.best_epoch is None else r.best_epoch + 1   # shown from 1, as the status line does
        rows.append(JobRow(r.id, r.name, state, _local(r.started), best_text(r.best_val, epoch),
                           r.resumable, r.argv[0] if r.argv else ""))
    return rows


def log_text(record: JobRecord, max_lines: int = 200, max_bytes: int = 256 * 1024) -> str:
    """The end of a job's log as readable lines (events formatted, step events thinned out), then the end
    of its stderr (warnings, a traceback)."""
    run_dir = Path(record.run_dir)
    lines = []
    for line in _tail(Path(record.log_path or run_dir / "job.log"), record.log_offset, record.log_end, max_bytes):
        event = parse_event(line)
        if event.kind == "step" and lines and lines[-1].startswith("epoch") and " step " in lines[-1]:
            lines[-1] = format_event(event)   # one line per run of steps: the latest
        else:
            lines.append(format_event(event))
    err = _tail(Path(record.stderr_path or run_dir / "stderr.log"), record.stderr_offset, None, max_bytes // 4)
    err = [ln for ln in err if ln.strip()]
    if err:
        lines += ["", "--- stderr ---", *err[-max_lines // 4:]]
    return "\n".join(lines[-max_lines:])


def _tail(path: Path, start: int, end: int | None, max_bytes: int) -> list[str]:
    """The lines of `path` between byte offsets `start` and `end`, at most the last `max_bytes` of them."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            stop = size if end is None else min(end, size)
            begin = max(start, stop - max_bytes)
            f.seek(begin)
            chunk = f.read(stop - begin)
    except OSError:
        return []
    text = chunk.decode("utf-8", errors="replace")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if begin > start and len(lines) > 1:
        lines = lines[1:]   # the first line was cut
    return [ln for ln in lines if ln]


def eta_text(seconds: float | None) -> str:
    """An ETA for people: "ETA 42 s", "ETA 3 min", "ETA 1 h 05 min"; "" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = round(seconds)
    if s < 90:
        return f"ETA {s} s"
    if s < 3600:
        return f"ETA {round(s / 60)} min"
    return f"ETA {s // 3600} h {s % 3600 // 60:02d} min"


# -- teachers in the registry --------------------------------------------------------------------

@dataclass(frozen=True)
class RegistryTeacher:
    """A registry model with role teacher: `path` is its run folder or checkpoint when its card names one that
    exists, else its card (`onnx`: the run uses the ONNX model, output KD methods only); `origin` is the
    registry's ("shipped": the zoo, "user")."""

    id: str
    task: str
    path: str
    architecture: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    onnx: bool = False
    origin: str = ""


def registry_teachers(task: str | None = None, user_dir: str | Path | None = None) -> list[RegistryTeacher]:
    """Teachers the registry lists (for `task`): first those whose card gives a run folder
    (`training.run_dir`, with best.pt) or a checkpoint (`training.checkpoint`) that exists (any KD method),
    then the others as ONNX teachers, by their card (the zoo's teachers: output KD methods only)."""
    from kdviewer.runtime import scan_models

    runs, onnx = [], []
    for model in scan_models(user_dir=user_dir).models:
        if model.role != "teacher" or (task is not None and model.task != task):
            continue
        training = model.card.training or {}
        run_dir, ckpt = training.get("run_dir"), training.get("checkpoint")
        if run_dir and (Path(run_dir) / "best.pt").is_file():
            path, is_onnx = str(run_dir), False
        elif ckpt and Path(ckpt).is_file():
            path, is_onnx = str(ckpt), False
        else:
            path, is_onnx = str(model.card_path), True
        teacher = RegistryTeacher(model.id, model.task, path, str(model.card.architecture.get("name", "")),
                                  dict(model.card.metrics.get("validation", {})), onnx=is_onnx,
                                  origin=model.origin)
        (onnx if is_onnx else runs).append(teacher)
    return runs + onnx


def job_env() -> dict[str, str]:
    """Threads for a training job: all cores but one, so the viewer always has a core for its event loop."""
    threads = str(max(1, (os.cpu_count() or 2) - 1))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def lower_priority(pid: int, niceness: int = 10) -> None:
    """Make a just-started job yield the CPU to the viewer: POSIX nice (threads it starts later inherit it)
    and, on Linux with autogroups, the nice of its session's group too (a job runs in a session of its own,
    and between sessions the kernel weighs the groups, not the processes' nice). Best effort."""
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
        except OSError:
            pass   # the process is gone already, or not ours
    autogroup = Path(f"/proc/{pid}/autogroup")
    if autogroup.exists():
        try:
            autogroup.write_text(str(niceness), encoding="ascii")
        except OSError:
            pass


def user_data_dir() -> Path:
    """The viewer's data folder (job history, runs, user models): $KDVIEWER_HOME, else the platform's."""
    from kdviewer.runtime import user_models_dir

    return user_models_dir().parent


def form_with(form: DistilForm, **changes: Any) -> DistilForm:
    """A copy of `form` with some values changed."""
    return replace(form, **changes)
