"""The list of training jobs, kept as JSON in the user's data folder so it outlives the viewer.

Jobs are detached: one that was running when the viewer closed usually still runs when it opens
again, and `attach_job` follows it again (its log from the start, cancel). On `load()`, a running
record whose process is gone is settled from its log: "done" when it ends with a done event,
"failed" with an error event, else "interrupted" (the machine restarted, the job was killed), which
`resume_job` starts again with `--resume`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kdviewer.errors import KdviewerError
from kdviewer.jobs.processes import pid_alive
from kdviewer.jobs.runner import LOG_FILE, STDERR_FILE, Job, JobError, JobState, kdviewer_command, start_job

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


def _timestamp(iso: str) -> float:
    """An ISO 8601 time as a UNIX time (now if it cannot be read)."""
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return time.time()


@dataclass(frozen=True)
class JobRecord:
    """One job as the history keeps it: enough to re-attach to its process, read its log, resume it.

    `pid`, `pgid` and `pid_start_ticks` (the process's start time, so that a reused pid is not taken
    for the job) find the process; `log_path`/`stderr_path` hold its output from byte `log_offset`/
    `stderr_offset` (a resumed job appends to the same files) up to `log_end` once it finished.
    `command` is the command line as run; `explicit_command` is False when it was `kdviewer ARGV`
    (resuming then runs `kdviewer ARGV --resume` with the viewer's current Python); None (a record
    made by hand or by an earlier version) means: explicit when `command` is set.
    """

    id: str
    name: str
    argv: tuple[str, ...]
    run_dir: str
    started: str                      # ISO 8601 UTC
    state: str = JobState.RUNNING.value
    ended: str | None = None
    returncode: int | None = None
    pid: int | None = None
    pgid: int | None = None
    pid_start_ticks: int | None = None
    best_epoch: int | None = None
    best_val: Mapping[str, float] = field(default_factory=dict)   # best validation metrics
    message: str | None = None        # why it failed
    command: tuple[str, ...] | None = None
    explicit_command: bool | None = None
    resumed_from: str | None = None   # id of the record this job resumed
    log_path: str | None = None       # default: run_dir/job.log
    stderr_path: str | None = None    # default: run_dir/stderr.log
    log_offset: int = 0
    stderr_offset: int = 0
    log_end: int | None = None

    @classmethod
    def from_job(cls, job: Job) -> JobRecord:
        """The record of a running or finished job as it stands now."""
        progress = job.progress
        state = job.state
        return cls(id=job.id, name=job.name, argv=tuple(job.argv), run_dir=str(job.run_dir),
                   started=_iso(job.started_at) or "", state=state.value, ended=_iso(job.ended_at),
                   returncode=job.returncode, pid=job.pid, pgid=job.pgid, pid_start_ticks=job.pid_start_ticks,
                   best_epoch=progress.best_epoch, best_val=dict(progress.best_val),
                   message=job.error_message if state is JobState.FAILED else None,
                   command=tuple(job.command), explicit_command=job.explicit_command,
                   resumed_from=job.resumed_from, log_path=str(job.log_path),
                   stderr_path=str(job.stderr_path), log_offset=job.log_offset,
                   stderr_offset=job.stderr_offset, log_end=job.log_end)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> JobRecord:
        """A record from its JSON object (unknown keys are ignored; raises TypeError/KeyError if bad)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in obj.items() if k in names}
        kw["argv"] = tuple(kw["argv"])
        if kw.get("command") is not None:
            kw["command"] = tuple(kw["command"])
        JobState(kw.get("state", JobState.RUNNING.value))  # ValueError for a state this version does not know
        return cls(**kw)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        obj = dataclasses.asdict(self)
        obj["argv"] = list(self.argv)
        obj["best_val"] = dict(self.best_val)
        obj["command"] = None if self.command is None else list(self.command)
        return obj

    @property
    def runs_own_command(self) -> bool:
        """Whether `command` was given to `start_job` (not `kdviewer ARGV`): resuming reruns it."""
        if self.explicit_command is None:
            return self.command is not None
        return self.explicit_command and self.command is not None

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
        """Read the file (none yet: empty); a running job whose process is gone is settled from its
        log ("done", "failed" or "interrupted") and saved; `attach_job` follows those still running."""
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
        stale = [r for r in records if r.state == JobState.RUNNING and not _process_alive(r)]
        for record in stale:  # it ended while no viewer watched: its log tells how
            job = attach_job(record)
            job.wait(10.0)  # at once: the process is gone, only its log is left to read
            self._records[record.id] = JobRecord.from_job(job)
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


def _process_alive(record: JobRecord) -> bool:
    """Whether the record's process still runs (the same process: its start time matches)."""
    return record.pid is not None and pid_alive(record.pid, record.pid_start_ticks)


def attach_job(record: JobRecord) -> Job:
    """The `Job` of a history record, to follow it in a viewer opened after the one that started it.

    A job that still runs (its pid alive with the same start time) is followed again: `poll()` gives
    its events from the start of its log (so the curves are complete), `cancel()` stops its process
    tree. A running record whose process is gone settles from its log: "done" when it ends with a
    done event, "failed" with an error event, else "interrupted" (resume it with `resume_job`). A
    finished record keeps its state; `poll()` replays its events.
    """
    run_dir = Path(record.run_dir)
    state = JobState(record.state)
    pid = record.pid or 0
    return Job(id=record.id, name=record.name, argv=list(record.argv),
               command=list(record.command) if record.command is not None else kdviewer_command(record.argv),
               explicit_command=record.runs_own_command, run_dir=run_dir, pid=pid, pgid=record.pgid or pid,
               pid_start_ticks=record.pid_start_ticks, started_at=_timestamp(record.started),
               log_path=Path(record.log_path) if record.log_path else run_dir / LOG_FILE,
               stderr_path=Path(record.stderr_path) if record.stderr_path else run_dir / STDERR_FILE,
               log_offset=record.log_offset, stderr_offset=record.stderr_offset,
               log_end=None if state is JobState.RUNNING else record.log_end,
               resumed_from=record.resumed_from, state=state, returncode=record.returncode,
               ended_at=None if record.ended is None else _timestamp(record.ended))


def resume_job(record: JobRecord, *, env: Mapping[str, str] | None = None) -> Job:
    """Start a stopped job again with `--resume` (same argv, same run folder, same name).

    Raises `JobError` when the record is still running or finished successfully.
    """
    if not record.resumable:
        raise JobError(f"job {record.name!r} is {record.state}: only an interrupted, cancelled or "
                       "failed job can be resumed")
    argv = _with_resume(record.argv)
    command = _with_resume(record.command) if record.runs_own_command and record.command else None
    return start_job(argv, record.run_dir, name=record.name, env=env, command=command,
                     resumed_from=record.id)


def _with_resume(args: Sequence[str]) -> list[str]:
    """`args` with `--resume` added once."""
    return list(args) if "--resume" in args else [*args, "--resume"]
