"""Run `kdviewer train|distill` as a detached subprocess and follow it without ever blocking the caller.

As 3D Slicer's AI extensions do, the heavy work runs in another process: a crash or a long epoch
there never freezes the viewer. The job is detached, so it also outlives the viewer: it runs in its
own session and writes its stdout to `run_dir/job.log` and its stderr to `run_dir/stderr.log`
(files, not pipes, so no print of the trainer fails when the viewer is gone). `Job.poll()` reads the
lines appended to job.log since the last call; a viewer opened later re-attaches to a job that still
runs (`attach_job`) and reads the same log from its start.

`Job.cancel()` asks the trainer to stop with SIGINT (it writes a resumable checkpoint), then
escalates to SIGTERM and SIGKILL of the whole process tree; each step is taken when the job is
polled, so there are no threads.
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kdviewer.errors import KdviewerError
from kdviewer.jobs.events import DoneEvent, ErrorEvent, Event, Progress, ProgressTracker, parse_event
from kdviewer.jobs.processes import (
    SIGKILL,
    WINDOWS,
    descendants,
    pid_alive,
    process_group,
    process_start_ticks,
    signal_tree,
    tree_alive,
)

LOG_FILE = "job.log"
STDERR_FILE = "stderr.log"
_MAX_READ_BYTES = 1 << 20   # per poll, so a long log read on re-attach never stalls a GUI timer tick
_POLL_INTERVAL_S = 0.02


class JobError(KdviewerError):
    """A job could not be started or resumed (bad command, unwritable run folder, still running)."""


class JobState(enum.StrEnum):
    """Where a job stands. `INTERRUPTED`: its process is gone without a done event and nobody cancelled
    it (the machine restarted, it was killed); it can be resumed."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


def kdviewer_command(argv: Sequence[str]) -> list[str]:
    """The command line that runs `kdviewer ARGV --progress json` with this Python."""
    return [sys.executable, "-m", "kdviewer", *argv, "--progress", "json"]


def _size(path: Path) -> int:
    """The size of `path` in bytes, 0 if it does not exist."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def start_job(argv: Sequence[str], run_dir: str | os.PathLike[str], *, name: str,
              env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
              command: Sequence[str] | None = None, resumed_from: str | None = None) -> Job:
    """Start `kdviewer ARGV --progress json` detached in the background and return its `Job` at once.

    Its stdout is appended to `run_dir/job.log`, its stderr to `run_dir/stderr.log`; it runs in its
    own session, so closing the viewer does not stop it. `env` adds variables to the viewer's own
    environment. `command`, when given, is the full command line to run instead (tests, other tools);
    it must print the same JSON-lines events. Raises `JobError` when it cannot start.
    """
    full = list(command) if command is not None else kdviewer_command(argv)
    run_dir = Path(run_dir)
    log_path, stderr_path = run_dir / LOG_FILE, run_dir / STDERR_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        stdout = open(log_path, "ab")
        stderr = open(stderr_path, "ab")
    except OSError as exc:
        raise JobError(f"cannot write the run folder {run_dir}: {exc.strerror or exc}") from exc
    # Unbuffered: every event reaches the file at once; a resumed job appends to the same files.
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    detach: dict[str, object] = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if WINDOWS
                                 else {"start_new_session": True})
    # The child gets its own copies of the two files; ours are closed when this block ends.
    with stdout, stderr:
        log_offset, stderr_offset = os.fstat(stdout.fileno()).st_size, os.fstat(stderr.fileno()).st_size
        try:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                    env=full_env, cwd=cwd, **detach)
        except OSError as exc:
            raise JobError(f"cannot start {full[0]}: {exc.strerror or exc}") from exc
    return Job(id=uuid.uuid4().hex[:12], name=name, argv=list(argv), command=full,
               explicit_command=command is not None, run_dir=run_dir, pid=proc.pid,
               pgid=process_group(proc.pid), pid_start_ticks=process_start_ticks(proc.pid),
               started_at=time.time(), log_path=log_path, stderr_path=stderr_path,
               log_offset=log_offset, stderr_offset=stderr_offset, resumed_from=resumed_from, process=proc)


class _LogTail:
    """The complete lines appended to a file since the last read, found by byte offset; never blocks."""

    def __init__(self, path: Path, offset: int, end: int | None) -> None:
        self.path = path
        self.offset = offset
        self.end = end              # stop here (a finished job's part of a log that was appended to later)
        self.at_end = False         # whether the last read reached the end of what was written

    def read_lines(self, *, final: bool) -> list[str]:
        """New complete lines; with `final` (the writer has exited) an unterminated last line too."""
        stop = _size(self.path) if self.end is None else min(self.end, _size(self.path))
        if stop <= self.offset:
            self.at_end = True
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read(min(stop - self.offset, _MAX_READ_BYTES))
        except OSError:
            self.at_end = True  # removed: what was read is all there is
            return []
        whole = self.offset + len(chunk) >= stop
        cut = chunk.rfind(b"\n") + 1
        if (whole and final) or (cut == 0 and len(chunk) == _MAX_READ_BYTES):
            cut = len(chunk)  # the last line of a finished job, or one line longer than a read
        self.offset += cut
        self.at_end = whole and cut == len(chunk)
        if cut == 0:
            return []
        # Universal newlines, as a text-mode pipe had: a progress bar's "\r" also ends a line.
        text = chunk[:cut].decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        return text.removesuffix("\n").split("\n")


@dataclass
class _Cancel:
    """How far a cancel has gone (monotonic times in s); advanced by `Job._advance_cancel`."""

    timeout_s: float
    asked_at: float
    tree: dict[int, int | None]
    signals_sent: list[int] = field(default_factory=lambda: [signal.SIGINT])
    leader_gone_at: float | None = None
    swept_at: float | None = None
    done: bool = False


class Job:
    """One background job: a detached process, the events in its log, its state.

    Built by `start_job` (it started the process: exit status from `Popen`) or `attach_job` (the
    process was started by an earlier viewer: followed through its pid and start time). Not
    thread-safe: use it from one thread (the GUI's), which never blocks except in `wait()`.
    """

    def __init__(self, *, id: str, name: str, argv: list[str], command: list[str], explicit_command: bool,
                 run_dir: Path, pid: int, pgid: int, pid_start_ticks: int | None, started_at: float,
                 log_path: Path, stderr_path: Path, log_offset: int = 0, stderr_offset: int = 0,
                 log_end: int | None = None, resumed_from: str | None = None,
                 process: subprocess.Popen | None = None, state: JobState = JobState.RUNNING,
                 returncode: int | None = None, ended_at: float | None = None) -> None:
        self.id = id
        self.name = name
        self.argv = argv
        self.command = command
        self.explicit_command = explicit_command
        self.resumed_from = resumed_from
        self.run_dir = run_dir
        self.log_path = log_path
        self.stderr_path = stderr_path
        self.log_offset = log_offset          # where this job's output starts in job.log (bytes)
        self.stderr_offset = stderr_offset    # and in stderr.log
        self.pid = pid
        self.pgid = pgid
        self.pid_start_ticks = pid_start_ticks
        self.started_at = started_at
        self.ended_at = ended_at
        self._proc = process
        self._state = state
        self._returncode = returncode
        self._tail = _LogTail(log_path, log_offset, log_end)
        self._pending: list[Event] = []
        self._tracker = ProgressTracker()
        self._error: str | None = None
        self._done_seen = False
        self._seen_running = False
        self._cancel: _Cancel | None = None

    # -- following the job ---------------------------------------------------------------------

    def _leader_exited(self) -> bool:
        """Whether the job's main process has exited (our child: reaped; otherwise: pid gone or reused)."""
        if self._proc is not None:
            exited = self._proc.poll() is not None
        else:
            exited = not pid_alive(self.pid, self.pid_start_ticks)
        self._seen_running |= not exited
        return exited

    def _update(self) -> None:
        """Read the log lines written since the last call, advance a cancel, settle the final state."""
        if self._state is not JobState.RUNNING:
            if not self._tail.at_end:  # a finished job re-attached from the history: replay its log
                self._take(self._tail.read_lines(final=True))
            return
        exited = self._leader_exited()  # before reading: every line printed before the exit is read
        self._take(self._tail.read_lines(final=exited))
        if self._cancel is not None:
            self._advance_cancel(exited)
        if exited and self._tail.at_end and (self._cancel is None or self._cancel.done):
            self._settle()

    def _take(self, lines: list[str]) -> None:
        """Parse lines of the log into events: fold them into the progress, keep them for `poll()`."""
        for line in lines:
            event = parse_event(line)
            self._tracker.update(event)
            if isinstance(event, ErrorEvent):
                self._error = event.message
            self._done_seen |= isinstance(event, DoneEvent)
            self._pending.append(event)

    def _settle(self) -> None:
        """The final state once the process has exited and its whole log is read."""
        rc = self._proc.returncode if self._proc is not None else None
        self._returncode = rc
        if self._seen_running:
            self.ended_at = time.time()
        else:  # it ended while no viewer watched: its last output is the best guess
            try:
                self.ended_at = max(self.started_at, self.log_path.stat().st_mtime)
            except OSError:
                self.ended_at = self.started_at
        if self._cancel is not None and not self._done_seen:
            self._state = JobState.CANCELLED
        elif rc is None:  # not our child: its exit status is unknown, its events tell what happened
            if self._error is not None:
                self._state = JobState.FAILED
            else:
                self._state = JobState.DONE if self._done_seen else JobState.INTERRUPTED
        elif rc == 0 and self._error is None:
            self._state = JobState.DONE
        else:
            self._state = JobState.FAILED

    def poll(self) -> list[Event]:
        """The events printed since the last call, in order (a re-attached job: from its start); never blocks."""
        self._update()
        out, self._pending = self._pending, []
        return out

    @property
    def state(self) -> JobState:
        """running, done, failed, cancelled or interrupted (final once it exited and its log is read)."""
        self._update()
        return self._state

    @property
    def returncode(self) -> int | None:
        """The exit status once finished (negative: killed by that signal); None while running and for
        a job this viewer did not start (its status cannot be known)."""
        self._update()
        return self._returncode

    @property
    def log_end(self) -> int | None:
        """Where this job's output ends in job.log (bytes) once it is finished, else None."""
        if self._state is JobState.RUNNING:
            return None
        while not self._tail.at_end:  # a long log re-attached from the history: read it to its end
            self._take(self._tail.read_lines(final=True))
        return self._tail.offset

    @property
    def progress(self) -> Progress:
        """Latest epoch/step, loss and validation curves, best result, ETA (from all events so far)."""
        self._update()
        return self._tracker.snapshot()

    @property
    def elapsed_s(self) -> float:
        """Seconds since the job started (up to its end when finished)."""
        end = self.ended_at if self.ended_at is not None else time.time()
        return max(0.0, end - self.started_at)

    @property
    def error_message(self) -> str | None:
        """Why a failed job failed: its error event, else the last stderr line, else its exit status."""
        state = self.state
        if state is not JobState.FAILED or self._error:
            return self._error
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(self.stderr_offset)
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            text = ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines:
            return lines[-1].strip()
        rc = self._returncode
        if rc is not None and rc < 0:
            try:
                return f"killed by {signal.Signals(-rc).name}"
            except ValueError:
                pass
        return "exited with an unknown status" if rc is None else f"exited with status {rc}"

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job has finished or `timeout` seconds passed; returns the state then.
        The events read meanwhile are kept for the next `poll()`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._update()
            if self._state is not JobState.RUNNING:
                return self._state
            if deadline is not None and time.monotonic() >= deadline:
                return self._state
            if self._tail.at_end:  # else more log is waiting to be read: no need to sleep
                time.sleep(_POLL_INTERVAL_S)

    # -- cancelling ----------------------------------------------------------------------------

    def cancel(self, timeout: float = 10.0) -> None:
        """Ask the job to stop, without blocking: SIGINT to its process group now (the trainer saves
        a resumable checkpoint), SIGTERM at 3/4 of `timeout` seconds, SIGKILL of the whole tree at
        `timeout`; processes it left behind are killed once it exits. These steps are taken by
        `poll()`, `state` and `wait()`, so keep polling (a GUI timer does) or `wait()` to block.
        """
        self._update()
        if self._state is not JobState.RUNNING or self._cancel is not None or self._leader_exited():
            return
        tree = descendants(self.pid)
        self._cancel = _Cancel(timeout_s=timeout, asked_at=time.monotonic(), tree=tree)
        signal_tree(self.pgid, signal.SIGINT, tree)

    def _advance_cancel(self, exited: bool) -> None:
        """Cancel's later steps: SIGTERM, SIGKILL, then sweep up processes the job left behind."""
        c = self._cancel
        assert c is not None
        now = time.monotonic()
        if not exited:
            for sig, fraction in ((signal.SIGTERM, 0.75), (SIGKILL, 1.0)):
                if sig not in c.signals_sent and now - c.asked_at >= fraction * c.timeout_s:
                    c.tree.update(descendants(self.pid))  # children started since; found while it lives
                    signal_tree(self.pgid, sig, c.tree)
                    c.signals_sent.append(sig)
            return
        if c.leader_gone_at is None:
            c.leader_gone_at = now
        if c.swept_at is None:
            # The leader is gone: give its children a moment to exit on their own, then kill them.
            if tree_alive(self.pgid, c.tree) and now - c.leader_gone_at < min(1.0, c.timeout_s):
                return
            signal_tree(self.pgid, SIGKILL, c.tree)
            c.swept_at = now
        # A signal is delivered asynchronously: done once the killed processes are gone (or 5 s).
        c.done = not tree_alive(self.pgid, c.tree) or now - c.swept_at > 5.0

    def __repr__(self) -> str:
        return f"Job({self.name!r}, id={self.id}, pid={self.pid}, state={self._state.value})"
