"""The list of training jobs, kept as JSON in the user's data folder so it outlives the viewer.

A job that was running when the viewer closed (or crashed) is found on `load()`: its process is
gone, so it is marked "interrupted" and `resume_job` starts it again with `--resume`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kdviewer.errors import KdviewerError
from kdviewer.jobs.runner import Job, JobError, JobState, pid_alive, start_job

HISTORY_FILE = "jobs.json"
_SCHEMA = "kdviewer.jobs/1"


class JobHistoryError(KdviewerError):
    """The job history file cannot be read or written; the message names the file."""


def default_data_dir() -> Path:
    """kdviewer's data folder without platformdirs: $KDVIEWER_HOME, else $XDG_DATA_HOME/kdviewer,
    else ~/.local/share/kdviewer. The GUI passes platformdirs' folder instead."""
    if os.environ.get("KDVIEWER_HOME"):
        return Path(os.environ["KDVIEWER_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "kdviewer"


def _iso(timestamp: float | None) -> str | None:
    """A UNIX time as an ISO 8601 UTC string."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class JobRecord:
    """One job as the history keeps it. `command` is set only when it was not `kdviewer ARGV`."""

    id: str
    name: str
    argv: tuple[str, ...]
    run_dir: str
    started: str                      # ISO 8601 UTC
    state: str = JobState.RUNNING.value
    ended: str | None = None
    returncode: int | None = None
    pid: int | None = None
    pid_start_ticks: int | None = None
    best_epoch: int | None = None
    best_val: Mapping[str, float] = field(default_factory=dict)   # best validation metrics
    message: str | None = None        # why it failed
    command: tuple[str, ...] | None = None
    resumed_from: str | None = None   # id of the record this job resumed

    @classmethod
    def from_job(cls, job: Job) -> JobRecord:
        """The record of a running or finished job as it stands now."""
        progress = job.progress
        state = job.state
        return cls(id=job.id, name=job.name, argv=tuple(job.argv), run_dir=str(job.run_dir),
                   started=_iso(job.started_at) or "", state=state.value, ended=_iso(job.ended_at),
                   returncode=job.returncode, pid=job.pid, pid_start_ticks=job.pid_start_ticks,
                   best_epoch=progress.best_epoch, best_val=dict(progress.best_val),
                   message=job.error_message if state is JobState.FAILED else None,
                   command=tuple(job.command) if job.explicit_command else None,
                   resumed_from=job.resumed_from)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> JobRecord:
        """A record from its JSON object (unknown keys are ignored; raises TypeError/KeyError if bad)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in obj.items() if k in names}
        kw["argv"] = tuple(kw["argv"])
        if kw.get("command") is not None:
            kw["command"] = tuple(kw["command"])
        return cls(**kw)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        obj = dataclasses.asdict(self)
        obj["argv"] = list(self.argv)
        obj["best_val"] = dict(self.best_val)
        obj["command"] = None if self.command is None else list(self.command)
        return obj

    @property
    def resumable(self) -> bool:
        """Whether `resume_job` may start it again (it stopped before finishing)."""
        return self.state in (JobState.INTERRUPTED, JobState.CANCELLED, JobState.FAILED)


class JobHistory:
    """The job list in `path` (default: `default_data_dir()/jobs.json`); call `load()` first."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_data_dir() / HISTORY_FILE
        self._records: dict[str, JobRecord] = {}

    def load(self) -> list[JobRecord]:
        """Read the file (none yet: empty); running jobs whose process is gone become "interrupted"."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._records = {}
            return []
        except OSError as exc:
            raise JobHistoryError(f"{self.path}: cannot read the job history: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
            records = [JobRecord.from_json(obj) for obj in data["jobs"]]
        except (ValueError, TypeError, KeyError) as exc:
            raise JobHistoryError(f"{self.path}: not a kdviewer job history ({exc})") from exc
        self._records = {r.id: r for r in records}
        stale = [r for r in records if r.state == JobState.RUNNING
                 and not (r.pid is not None and pid_alive(r.pid, r.pid_start_ticks))]
        for record in stale:
            self._records[record.id] = dataclasses.replace(record, state=JobState.INTERRUPTED.value)
        if stale:
            self._save()
        return self.list()

    def list(self) -> list[JobRecord]:
        """All records, oldest first."""
        return sorted(self._records.values(), key=lambda r: r.started)

    def get(self, job_id: str) -> JobRecord:
        """The record with this id; raises `JobHistoryError` if there is none."""
        try:
            return self._records[job_id]
        except KeyError:
            raise JobHistoryError(f"{self.path}: no job with id {job_id}") from None

    def add(self, record: JobRecord | Job) -> JobRecord:
        """Add a job (or its record) and save; returns the record."""
        if isinstance(record, Job):
            record = JobRecord.from_job(record)
        self._records[record.id] = record
        self._save()
        return record

    def update(self, record: JobRecord | Job) -> JobRecord:
        """Replace the record with the same id (a job's new state) and save; returns the record."""
        if isinstance(record, Job):
            record = JobRecord.from_job(record)
        self.get(record.id)
        return self.add(record)

    def remove(self, job_id: str) -> None:
        """Forget a job (its run folder stays) and save."""
        self.get(job_id)
        del self._records[job_id]
        self._save()

    def _save(self) -> None:
        """Write the file atomically (temporary file + rename), so a crash never leaves half a list."""
        payload = {"schema": _SCHEMA, "jobs": [r.to_json() for r in self.list()]}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".jobs-", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f, indent=1)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise JobHistoryError(f"{self.path}: cannot write the job history: {exc.strerror or exc}") from exc


def resume_job(record: JobRecord, *, env: Mapping[str, str] | None = None) -> Job:
    """Start a stopped job again with `--resume` (same argv, same run folder, same name).

    Raises `JobError` when the record is still running or finished successfully.
    """
    if not record.resumable:
        raise JobError(f"job {record.name!r} is {record.state}: only an interrupted, cancelled or "
                       "failed job can be resumed")
    argv = _with_resume(record.argv)
    command = _with_resume(record.command) if record.command is not None else None
    return start_job(argv, record.run_dir, name=record.name, env=env, command=command,
                     resumed_from=record.id)


def _with_resume(args: Sequence[str]) -> list[str]:
    """`args` with `--resume` added once."""
    return list(args) if "--resume" in args else [*args, "--resume"]
