"""A job's processes without psutil: is a pid still our job, which processes are below it, signals to
its process group and tree.

Linux reads /proc; elsewhere (macOS) the pid check falls back to `kill(pid, 0)` and the tree is the
process group only. Windows has neither: the pid check asks the kernel through ctypes (never
`os.kill(pid, 0)`, which on Windows terminates the process) and the tree is killed with taskkill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

WINDOWS = sys.platform == "win32"
SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)
_HAS_PROC = Path("/proc/self/stat").exists()


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (Linux), None if unknown or gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _windows_process(pid: int) -> tuple[bool, int | None]:
    """(still running, creation time in 100 ns units) of a Windows process, via kernel32."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False, None
    try:
        code = wintypes.DWORD()
        running = bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259
        times = [wintypes.FILETIME() for _ in range(4)]  # creation, exit, kernel, user
        if not kernel32.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
            return running, None
        return running, (times[0].dwHighDateTime << 32) | times[0].dwLowDateTime
    finally:
        kernel32.CloseHandle(handle)


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started (Linux: clock ticks since boot), None if unknown or gone.

    Stored next to a pid so that a pid reused by another program is not taken for our job.
    """
    if WINDOWS:
        return _windows_process(pid)[1]
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether process `pid` still runs (not a zombie; if `start_ticks` is given, the same process)."""
    if pid <= 0:
        return False
    if WINDOWS:
        running, started = _windows_process(pid)
        return running and (start_ticks is None or started == start_ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # exists, owned by someone else
    fields = _proc_stat(pid)
    if fields is None:
        return not _HAS_PROC  # no /proc (macOS): trust kill(0); with /proc it exited meanwhile
    if fields[0] in ("Z", "X"):
        return False  # exited, waiting to be reaped (by a viewer that is gone, or by init)
    return start_ticks is None or process_start_ticks(pid) == start_ticks


def process_group(pid: int) -> int:
    """The process group of `pid` (its own pid when it cannot be read: gone, or Windows)."""
    if WINDOWS:
        return pid
    try:
        return os.getpgid(pid)
    except OSError:
        return pid


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


def descendants(pid: int) -> dict[int, int | None]:
    """{pid: start ticks} of every process below `pid`, also those in another session (Linux only)."""
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


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group `pgid`."""
    if WINDOWS:
        return pid_alive(pgid)
    if _HAS_PROC:
        return any(group == pgid and state not in ("Z", "X") for _, _, group, state in _process_table())
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True


def tree_alive(pgid: int, tree: dict[int, int | None]) -> bool:
    """Whether any process of group `pgid` or of `tree` ({pid: start ticks}) still runs."""
    return any(pid_alive(pid, ticks) for pid, ticks in tree.items()) or group_alive(pgid)


def signal_tree(pgid: int, sig: int, tree: dict[int, int | None]) -> None:
    """Send `sig` to process group `pgid`; SIGKILL also goes to each living process of `tree`
    (children that left the group with setsid). On Windows: Ctrl+Break, terminate, taskkill /T."""
    if WINDOWS:
        _signal_windows(pgid, sig)
        return
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass  # the group is empty already
    if sig == SIGKILL:
        for pid, ticks in tree.items():
            if pid_alive(pid, ticks):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass


def _signal_windows(pid: int, sig: int) -> None:
    """Windows has no process-group signals: Ctrl+Break to the group, TerminateProcess, taskkill /T."""
    if not pid_alive(pid):
        return
    try:
        if sig == signal.SIGINT:
            os.kill(pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        elif sig == signal.SIGTERM:
            os.kill(pid, signal.SIGTERM)  # TerminateProcess on Windows
        else:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, check=False)
    except OSError:
        pass  # it exited meanwhile
