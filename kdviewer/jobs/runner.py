"""Run `kdviewer train|distill` as a subprocess and follow it without ever blocking the caller.

As 3D Slicer's AI extensions do, the heavy work runs in another process: a crash or a long epoch
there never freezes the viewer. A reader thread turns the job's stdout into events (and appends it
to `run_dir/job.log`); the GUI calls `Job.poll()` from a timer. `Job.cancel()` asks the trainer to
stop with SIGINT (it writes a resumable checkpoint), then escalates to SIGTERM and SIGKILL of the
whole process tree in the background.
"""

from __future__ import annotations

import enum
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from kdviewer.errors import KdviewerError
from kdviewer.jobs.events import DoneEvent, ErrorEvent, Event, LogLine, Progress, ProgressTracker, parse_event

_WINDOWS = sys.platform == "win32"


class JobError(KdviewerError):
    """A job could not be started or resumed (bad command, unwritable run folder, still running)."""


class JobState(enum.StrEnum):
    """Where a job stands. `INTERRUPTED` is only found by `JobHistory.load` (the viewer closed)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


def kdviewer_command(argv: Sequence[str]) -> list[str]:
    """The command line that runs `kdviewer ARGV --progress json` with this Python."""
    return [sys.executable, "-m", "kdviewer", *argv, "--progress", "json"]


def start_job(argv: Sequence[str], run_dir: str | os.PathLike[str], *, name: str,
              env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
              command: Sequence[str] | None = None, resumed_from: str | None = None) -> Job:
    """Start `kdviewer ARGV --progress json` in the background and return its `Job` at once.

    `run_dir` receives `job.log` (stdout) and `stderr.log`. `env` adds variables to the viewer's own
    environment. `command`, when given, is the full command line to run instead (tests, other
    tools); it must print the same JSON-lines events. Raises `JobError` when it cannot start.
    """
    full = list(command) if command is not None else kdviewer_command(argv)
    return Job(full, Path(run_dir), name=name, argv=list(argv), env=env, cwd=cwd,
               explicit_command=command is not None, resumed_from=resumed_from)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (Linux), None if unknown or gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, Linux /proc), None if unknown or gone.

    Stored next to a pid so that a pid reused by another program is not taken for our job.
    """
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether process `pid` still runs (not a zombie; if `start_ticks` is given, the same process)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # exists, owned by someone else
    fields = _proc_stat(pid)
    if fields is None:
        return not Path("/proc/self/stat").exists()  # no /proc (macOS): trust kill(0)
    if fields[0] in ("Z", "X"):
        return False  # exited, waiting to be reaped
    return start_ticks is None or process_start_ticks(pid) == start_ticks


def _process_table() -> list[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, state letter) of every process (Linux /proc; empty elsewhere)."""
    try:
        entries = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    table = []
    for pid in entries:
        fields = _proc_stat(pid)
        try:
            table.append((pid, int(fields[1]), int(fields[2]), fields[0]))
        except (TypeError, IndexError, ValueError):
            continue  # exited meanwhile
    return table


def _descendants(pid: int) -> dict[int, int | None]:
    """{pid: start ticks} of every process below `pid` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for child, parent, _, _ in _process_table():
        children.setdefault(parent, []).append(child)
    found: dict[int, int | None] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child not in found:
            found[child] = process_start_ticks(child)
            todo.extend(children.get(child, []))
    return found


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group `pgid`."""
    if Path("/proc/self/stat").exists():
        return any(group == pgid and state not in ("Z", "X") for _, _, group, state in _process_table())
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True


class Job:
    """One background job: a subprocess, its events, its state. Build it with `start_job`."""

    def __init__(self, command: list[str], run_dir: Path, *, name: str, argv: list[str],
                 env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None,
                 explicit_command: bool, resumed_from: str | None) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.name = name
        self.argv = argv
        self.command = command
        self.explicit_command = explicit_command
        self.resumed_from = resumed_from
        self.run_dir = run_dir
        self.log_path = run_dir / "job.log"
        self.stderr_path = run_dir / "stderr.log"
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._tracker = ProgressTracker()
        self._error: str | None = None
        self._done_seen = False
        self._cancel_requested = False
        self._state = JobState.RUNNING
        self._finished = threading.Event()
        self._escalator: threading.Thread | None = None
        self._exited = False
        self.ended_at: float | None = None
        self._proc = self._spawn(env, cwd)
        self.pid = self._proc.pid
        self.pid_start_ticks = process_start_ticks(self.pid)
        self.started_at = time.time()
        self._reader = threading.Thread(target=self._read_stdout, name=f"job-{name}", daemon=True)
        self._reader.start()

    def _spawn(self, env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None) -> subprocess.Popen:
        """Start the process in its own session (POSIX) or process group (Windows)."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            stderr = open(self.stderr_path, "ab")  # the child keeps its own copy; closed below
            self._log = open(self.log_path, "a", encoding="utf-8")  # closed by the reader thread
        except OSError as exc:
            raise JobError(f"cannot write the run folder {self.run_dir}: {exc.strerror or exc}") from exc
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        extra: dict[str, object] = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if _WINDOWS
                       else {"start_new_session": True})
        try:
            return subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=stderr, env=full_env, cwd=cwd, text=True, encoding="utf-8",
                                    errors="replace", bufsize=1, **extra)
        except OSError as exc:
            self._log.close()
            raise JobError(f"cannot start {self.command[0]}: {exc.strerror or exc}") from exc
        finally:
            stderr.close()

    def _read_stdout(self) -> None:
        """Reader thread: parse each line, keep it in job.log, hand it to `poll`."""
        assert self._proc.stdout is not None
        try:
            for line in self._proc.stdout:
                self._write_log(line)
                event = parse_event(line)
                with self._lock:
                    self._tracker.update(event)
                    if isinstance(event, ErrorEvent):
                        self._error = event.message
                    self._done_seen |= isinstance(event, DoneEvent)
                self._events.put(event)
        finally:  # whatever happens here, the job must end
            self._proc.stdout.close()
            self._log.close()
            self._finish()

    def _write_log(self, line: str) -> None:
        """Append a line to job.log; a full disk stops the log, never the job (the events still flow)."""
        if self._log.closed:
            return
        try:
            self._log.write(line if line.endswith("\n") else line + "\n")
            self._log.flush()
        except OSError as exc:
            self._log.close()
            self._events.put(LogLine(text=f"kdviewer: {self.log_path}: log stopped: {exc.strerror or exc}"))

    def _finish(self) -> None:
        """Wait for the process (and a cancel's sweep), then settle the final state."""
        returncode = self._proc.wait()
        with self._lock:
            self._exited = True  # too late to cancel from here on
            escalator = self._escalator
        if escalator is not None:
            escalator.join()  # a cancelled job ends when its whole tree is gone
        with self._lock:
            self.ended_at = time.time()
            if self._cancel_requested and not self._done_seen:
                self._state = JobState.CANCELLED
            elif returncode == 0 and self._error is None:
                self._state = JobState.DONE
            else:
                self._state = JobState.FAILED
        self._finished.set()

    def poll(self) -> list[Event]:
        """The events printed since the last call, in order; never blocks."""
        out: list[Event] = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    @property
    def state(self) -> JobState:
        """running, done, failed or cancelled (final once stdout is closed and the process exited)."""
        with self._lock:
            return self._state

    @property
    def returncode(self) -> int | None:
        """The exit status once finished (negative: killed by that signal), else None."""
        return self._proc.returncode if self._finished.is_set() else None

    @property
    def progress(self) -> Progress:
        """Latest epoch/step, loss and validation curves, best result, ETA (from all events so far)."""
        with self._lock:
            return self._tracker.snapshot()

    @property
    def elapsed_s(self) -> float:
        """Seconds since the job started (up to its end when finished)."""
        end = self.ended_at if self.ended_at is not None else time.time()
        return max(0.0, end - self.started_at)

    @property
    def error_message(self) -> str | None:
        """Why a failed job failed: its error event, else the last stderr line, else its exit status."""
        with self._lock:
            if self._state is not JobState.FAILED:
                return self._error
            if self._error:
                return self._error
        try:
            lines = [ln for ln in self.stderr_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        if lines:
            return lines[-1].strip()
        rc = self._proc.returncode
        if rc is not None and rc < 0:
            try:
                return f"killed by {signal.Signals(-rc).name}"
            except ValueError:
                pass
        return f"exited with status {rc}"

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job has finished or `timeout` seconds passed; returns the state then."""
        self._finished.wait(timeout)
        return self.state

    def cancel(self, timeout: float = 10.0) -> None:
        """Ask the job to stop, without blocking: SIGINT to its process group now (the trainer saves
        a resumable checkpoint), SIGTERM at 3/4 of `timeout` seconds, SIGKILL of the whole tree at
        `timeout`. Processes it left behind are killed once it exits. `wait()` to block until then.
        """
        with self._lock:
            if self._exited or self._cancel_requested:
                return
            self._cancel_requested = True
            tree = _descendants(self.pid)
            self._signal(signal.SIGINT, tree)
            self._escalator = threading.Thread(target=self._escalate, args=(timeout, tree), daemon=True)
            self._escalator.start()

    def _escalate(self, timeout: float, tree: dict[int, int | None]) -> None:
        """Cancel's background half: SIGTERM, then SIGKILL, then sweep up leftover processes."""
        for sig, delay in ((signal.SIGTERM, 0.75 * timeout), (_SIGKILL, 0.25 * timeout)):
            try:
                self._proc.wait(delay)
                break
            except subprocess.TimeoutExpired:
                tree.update(_descendants(self.pid))
                self._signal(sig, tree)
        # The leader is gone: give its children a moment to exit on their own, then kill them.
        self._proc.wait()
        deadline = time.monotonic() + min(1.0, timeout)
        while self._tree_alive(tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._signal(_SIGKILL, tree)
        # A signal is delivered asynchronously: wait (briefly) until the killed processes are gone.
        deadline = time.monotonic() + 5.0
        while self._tree_alive(tree) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _tree_alive(self, tree: dict[int, int | None]) -> bool:
        """Whether any process of the job's group or of `tree` still runs."""
        if any(pid_alive(pid, ticks) for pid, ticks in tree.items()):
            return True
        return not _WINDOWS and _group_alive(self.pid)

    def _signal(self, sig: int, tree: dict[int, int | None]) -> None:
        """Send `sig` to the job's process group and to each still-living process of `tree`."""
        if _WINDOWS:
            self._signal_windows(sig)
            return
        try:
            os.killpg(self.pid, sig)
        except OSError:
            pass  # the group is empty already
        if sig == _SIGKILL:  # processes that left the group (setsid) are still in the tree
            for pid, ticks in tree.items():
                if pid_alive(pid, ticks):
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass

    def _signal_windows(self, sig: int) -> None:
        """Windows has no process groups signals: Ctrl+Break, terminate, then taskkill /T."""
        if self._proc.poll() is not None:
            return
        if sig == signal.SIGINT:
            os.kill(self.pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        elif sig == signal.SIGTERM:
            self._proc.terminate()
        else:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.pid)], capture_output=True, check=False)

    def __repr__(self) -> str:
        return f"Job({self.name!r}, id={self.id}, pid={self.pid}, state={self.state.value})"


_SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)
