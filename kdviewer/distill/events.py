"""Job events (DESIGN.md "Job events"): one JSON object per line, the only thing the `jobs` layer reads.

`EventReporter.emit("step", epoch=3, step=20, loss=0.41, ...)` appends the event to `run_dir/events.jsonl`
and shows it: `progress="json"` prints the same line on stdout, `progress="bar"` draws a progress bar.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

EVENTS = ("start", "step", "epoch", "checkpoint", "export", "done", "error")
PROGRESS_MODES = ("json", "bar", "none")


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class EventReporter:
    """Writes job events to `events.jsonl` and to the terminal; silent on DDP ranks other than 0."""

    def __init__(self, run_dir: Path | None, progress: str = "bar", enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        if progress not in PROGRESS_MODES:
            raise ValueError(f"progress should be one of {PROGRESS_MODES}")
        self.run_dir = run_dir
        self.progress = progress
        self.enabled = enabled
        self.stream = stream
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._total_steps = 0
        self._bar_open = False

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Record one event (`event` is one of EVENTS) and return it as a dict."""
        record = {"event": event, **json_safe(fields)}
        if not self.enabled:
            return record
        line = json.dumps(record)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "events.jsonl", "a", encoding="utf-8") as f:
                f.write(line + "\n")
        if self.progress == "json":
            out = self.stream or sys.stdout
            out.write(line + "\n")
            out.flush()
        elif self.progress == "bar":
            self._draw(record)
        for listener in self.listeners:
            listener(record)
        return record

    def log(self, message: str) -> None:
        """A human note (not an event): stderr in every mode, so stdout stays pure JSON lines."""
        if self.enabled:
            print(message, file=sys.stderr, flush=True)

    def _draw(self, record: dict[str, Any]) -> None:
        out = self.stream or sys.stderr
        kind = record["event"]
        if kind == "step":
            total = max(int(record.get("total_steps", self._total_steps)), 1)
            done = min(int(record.get("step", 0)), total)
            filled = int(30 * done / total)
            loss = record.get("loss")
            out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] step {done}/{total} "
                      f"epoch {record.get('epoch')} loss {'nan' if loss is None else f'{loss:.4f}'} "
                      f"{record.get('images_per_s', 0):.1f} img/s")
            self._bar_open = True
            out.flush()
            return
        if kind == "checkpoint":
            return  # the epoch line says enough
        if self._bar_open:
            out.write("\n")
            self._bar_open = False
        if kind == "error":
            out.flush()
            return  # the command prints the error itself, as one line
        if kind == "start":
            out.write(f"{record.get('stage', 'run')}: {record.get('run_dir', '')} ({record.get('epochs')} epochs "
                      f"of {record.get('steps_per_epoch')} steps)\n")
        elif kind == "epoch":
            val = ", ".join(f"{k} {v:.4f}" for k, v in record.get("val", {}).items() if isinstance(v, float))
            best = " (best)" if record.get("best") else ""
            val = f"val {val}" if val else "not validated (val_interval)"
            out.write(f"epoch {record['epoch']}: train loss {record.get('train_loss', 0):.4f}, {val}{best}\n")
        elif kind == "export":
            out.write(f"exported {record.get('onnx')} and {record.get('card')}\n")
        elif kind == "done":
            out.write(f"done: {record.get('run_dir')}\n")
        out.flush()


class Throughput:
    """Images per second over the last step."""

    def __init__(self) -> None:
        self._t = time.perf_counter()

    def tick(self, images: int) -> float:
        """Images per second since the previous tick."""
        now = time.perf_counter()
        rate = images / max(now - self._t, 1e-9)
        self._t = now
        return rate
