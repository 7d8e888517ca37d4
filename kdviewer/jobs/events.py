"""The JSON-lines events a training job prints (DESIGN.md "Job events"), parsed into typed values.

`kdviewer train|distill --progress json` prints one JSON object per line. `parse_event` turns one
line into an `Event`; it never raises: an event it does not know becomes `UnknownEvent`, a line
that is not a JSON object (a stray print, a warning) becomes `LogLine`, so nothing is lost.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Event:
    """One line of a job's output; `raw` keeps the JSON object as printed (empty for log text)."""

    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """The event's name as printed ("step", "epoch", ...), "log" for plain text."""
        return str(self.raw.get("event", "log"))


@dataclass(frozen=True, kw_only=True)
class StartEvent(Event):
    """A stage ("train", "distill", "export") began; totals for the progress bar."""

    stage: str = ""
    run_dir: str | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None


@dataclass(frozen=True, kw_only=True)
class StepEvent(Event):
    """One optimisation step: training loss, learning rate, throughput (images/s)."""

    epoch: int | None = None
    step: int | None = None
    loss: float | None = None
    lr: float | None = None
    images_per_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class EpochEvent(Event):
    """One epoch finished: mean training loss, validation metrics, whether it is the best so far, ETA (s)."""

    epoch: int | None = None
    train_loss: float | None = None
    val: Mapping[str, float] = field(default_factory=dict)
    best: bool = False
    eta_s: float | None = None
    warning: str | None = None   # a stall the trainer saw (e.g. Dice 0 from the start), once


@dataclass(frozen=True, kw_only=True)
class CheckpointEvent(Event):
    """A checkpoint was written (a run can resume from it)."""

    path: str = ""


@dataclass(frozen=True, kw_only=True)
class ExportEvent(Event):
    """The student was exported: the ONNX file and its model card."""

    onnx: str = ""
    card: str = ""


@dataclass(frozen=True, kw_only=True)
class DoneEvent(Event):
    """The run finished; `best_epoch` and `best_val` describe its best checkpoint."""

    run_dir: str | None = None
    best_epoch: int | None = None
    best_val: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    """The run failed; `message` is the one-line reason."""

    message: str = ""


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A JSON event this version does not know (a newer trainer): kept, shown as log text."""

    name: str = ""


@dataclass(frozen=True, kw_only=True)
class LogLine(Event):
    """A line that is not a JSON event (a warning, a stray print): kept as log text."""

    text: str = ""


def _int(value: Any) -> int | None:
    """`value` as an int, None when it is missing or not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _float(value: Any) -> float | None:
    """`value` as a float, None when it is missing or not a number (NaN/inf are kept: a diverging loss)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _str(value: Any) -> str | None:
    """`value` as a string, None when missing."""
    return None if value is None else str(value)


def _metrics(value: Any) -> dict[str, float]:
    """A {name: number} mapping, dropping entries that are not numbers."""
    if not isinstance(value, Mapping):
        return {}
    out = {str(k): _float(v) for k, v in value.items()}
    return {k: v for k, v in out.items() if v is not None}


def _from_object(obj: Mapping[str, Any]) -> Event:
    """The typed event for one decoded JSON object."""
    name = obj.get("event")
    if name == "start":
        return StartEvent(raw=obj, stage=str(obj.get("stage", "")), run_dir=_str(obj.get("run_dir")),
                          epochs=_int(obj.get("epochs")), steps_per_epoch=_int(obj.get("steps_per_epoch")))
    if name == "step":
        return StepEvent(raw=obj, epoch=_int(obj.get("epoch")), step=_int(obj.get("step")),
                         loss=_float(obj.get("loss")), lr=_float(obj.get("lr")),
                         images_per_s=_float(obj.get("images_per_s")))
    if name == "epoch":
        return EpochEvent(raw=obj, epoch=_int(obj.get("epoch")), train_loss=_float(obj.get("train_loss")),
                          val=_metrics(obj.get("val")), best=obj.get("best") is True,
                          eta_s=_float(obj.get("eta_s")), warning=_str(obj.get("warning")))
    if name == "checkpoint":
        return CheckpointEvent(raw=obj, path=str(obj.get("path", "")))
    if name == "export":
        return ExportEvent(raw=obj, onnx=str(obj.get("onnx", "")), card=str(obj.get("card", "")))
    if name == "done":
        best = obj.get("best") if isinstance(obj.get("best"), Mapping) else {}
        return DoneEvent(raw=obj, run_dir=_str(obj.get("run_dir")), best_epoch=_int(best.get("epoch")),
                         best_val=_metrics(best.get("val")))
    if name == "error":
        return ErrorEvent(raw=obj, message=str(obj.get("message", "")) or "unknown error")
    return UnknownEvent(raw=obj, name=str(name))


def parse_event(line: str) -> Event:
    """Parse one output line; a JSON object with an "event" key is an event, anything else a `LogLine`."""
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            # Python's json reads NaN/Infinity, which a diverging loss prints.
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "event" in obj:
            return _from_object(obj)
    return LogLine(text=text)


def format_event(event: Event) -> str:
    """One readable line for a job's log view (units included)."""
    match event:
        case LogLine(text=text):
            return text
        case StartEvent():
            return f"start {event.stage}: {event.epochs} epochs x {event.steps_per_epoch} steps"
        case StepEvent():
            loss = "?" if event.loss is None else f"{event.loss:.4g}"
            return f"epoch {event.epoch} step {event.step}: loss {loss}"
        case EpochEvent():
            val = ", ".join(f"{k} {v:.4g}" for k, v in event.val.items())
            loss = "?" if event.train_loss is None else f"{event.train_loss:.4g}"
            best = " (best)" if event.best else ""
            eta = "" if event.eta_s is None or not math.isfinite(event.eta_s) else f", ETA {event.eta_s:.0f} s"
            warning = f"; warning: {event.warning}" if event.warning else ""
            return f"epoch {event.epoch}: train loss {loss}" + (f", val {val}" if val else "") + best + eta + warning
        case CheckpointEvent():
            return f"checkpoint {event.path}"
        case ExportEvent():
            return f"exported {event.onnx}"
        case DoneEvent():
            return f"done: best epoch {event.best_epoch} {dict(event.best_val)}"
        case ErrorEvent():
            return f"error: {event.message}"
    return json.dumps(dict(event.raw))


@dataclass(frozen=True)
class Progress:
    """What a job's events say so far: the latest position, the curves, the best result, the ETA.

    Curves restart at each `StartEvent` (a job that trains a teacher, then distils, shows the stage
    in progress). `eta_s` is the trainer's estimate counted down since it was printed (seconds).
    """

    stage: str = ""
    run_dir: str | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    epoch: int | None = None
    step: int | None = None
    loss: float | None = None
    lr: float | None = None
    images_per_s: float | None = None
    step_losses: tuple[tuple[int, int, float], ...] = ()          # (epoch, step, loss)
    train_losses: tuple[tuple[int, float], ...] = ()              # (epoch, mean train loss)
    val_history: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)  # metric -> (epoch, value)
    best_epoch: int | None = None
    best_val: Mapping[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    checkpoint: str | None = None
    onnx: str | None = None
    card: str | None = None
    error: str | None = None
    warning: str | None = None


class ProgressTracker:
    """Folds events into a `Progress`; `snapshot()` is cheap enough to call from a GUI timer."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._eta: tuple[float, float] | None = None   # (eta_s as printed, clock time it was printed)
        self._reset()

    def _reset(self) -> None:
        self._fields: dict[str, Any] = {}
        self._step_losses: list[tuple[int, int, float]] = []
        self._train_losses: list[tuple[int, float]] = []
        self._val: dict[str, list[tuple[int, float]]] = {}
        self._eta = None

    def update(self, event: Event) -> None:
        """Take one event into account (log lines and unknown events change nothing)."""
        f = self._fields
        match event:
            case StartEvent():
                keep = {k: f[k] for k in ("checkpoint", "onnx", "card") if k in f}
                self._reset()
                self._fields.update(keep, stage=event.stage, run_dir=event.run_dir, epochs=event.epochs,
                                    steps_per_epoch=event.steps_per_epoch)
            case StepEvent():
                f.update(epoch=event.epoch, step=event.step, loss=event.loss, lr=event.lr,
                         images_per_s=event.images_per_s)
                if event.loss is not None:
                    self._step_losses.append((event.epoch or 0, event.step or 0, event.loss))
            case EpochEvent():
                f["epoch"] = event.epoch
                epoch = event.epoch or 0
                if event.train_loss is not None:
                    self._train_losses.append((epoch, event.train_loss))
                for name, value in event.val.items():
                    self._val.setdefault(name, []).append((epoch, value))
                if event.best:
                    f.update(best_epoch=event.epoch, best_val=dict(event.val))
                if event.eta_s is not None:
                    self._eta = (event.eta_s, self._clock())
                if event.warning:
                    f["warning"] = event.warning
            case CheckpointEvent():
                f["checkpoint"] = event.path
            case ExportEvent():
                f.update(onnx=event.onnx, card=event.card)
            case DoneEvent():
                if event.best_epoch is not None or event.best_val:
                    f.update(best_epoch=event.best_epoch, best_val=dict(event.best_val))
                self._eta = (0.0, self._clock())
            case ErrorEvent():
                f["error"] = event.message

    def snapshot(self) -> Progress:
        """The progress so far, as an immutable value."""
        eta = None
        if self._eta is not None:
            eta = max(0.0, self._eta[0] - (self._clock() - self._eta[1]))
        return Progress(**self._fields, step_losses=tuple(self._step_losses),
                        train_losses=tuple(self._train_losses),
                        val_history={k: tuple(v) for k, v in self._val.items()}, eta_s=eta)
