"""Small helpers shared by the benchmark scripts: fresh-subprocess runs, median/IQR, a text table.

Benchmarks measure their baseline in the same run and report medians (STYLE.md, "Measure, don't
guess"); nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

# Put around a child's code by `run_fresh`: RSS after the setup (the import floor), the timed part,
# and the peak RSS of the whole process (ru_maxrss, KiB on Linux).
_CHILD = """\
import json as _json, resource as _resource, time as _time
import psutil as _psutil
{setup}
_floor = _psutil.Process().memory_info().rss
_t0 = _time.perf_counter()
{timed}
_t1 = _time.perf_counter()
_peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss * 1024
print("@@RESULT " + _json.dumps({{"seconds": _t1 - _t0, "rss_floor": _floor, "rss_peak": _peak, **({report})}}),
      flush=True)
"""


def run_python(code: str, *args: str, timeout_s: float = 600) -> dict:
    """Run `python -c code args...` in a fresh interpreter (repo as cwd, Qt offscreen).

    The child prints one line "@@RESULT {json}"; returns that dict with "spawned_at" (this process's
    time.monotonic() just before the start, comparable with the child's: one system-wide clock).
    Raises RuntimeError with the child's stderr when it fails or prints no result.
    """
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    spawned_at = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout_s)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT "):
            result = json.loads(line[len("@@RESULT "):])
            result["spawned_at"] = spawned_at
            return result
    raise RuntimeError(f"benchmark child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def run_fresh(setup: str, timed: str, *args: str, report: str = "{}") -> dict:
    """Run `setup` (imports, untimed), then `timed`, in a fresh interpreter.

    Returns {"seconds": timed part, "rss_floor": bytes after setup, "rss_peak": peak bytes of the
    process, **report} where `report` is a Python expression (a dict) evaluated in the child.
    """
    code = _CHILD.format(setup=textwrap.dedent(setup), timed=textwrap.dedent(timed), report=report)
    return run_python(code, *args)


def median_iqr(samples: Sequence[float]) -> tuple[float, float]:
    """(median, interquartile range) of the samples (IQR 0 for fewer than 2)."""
    values = sorted(samples)
    if len(values) < 2:
        return values[0], 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q3 - q1


def warm_page_cache(folder: Path) -> int:
    """Read every file below `folder` once so that timings see a warm page cache; returns bytes read."""
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            total += len(path.read_bytes())
    return total


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as a Markdown table with columns padded to their widest cell."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def load_average() -> str:
    """The system load average as "1.0 / 1.0 / 1.0 (1 / 5 / 15 min)" (the machine is shared: quote it)."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


# As _CHILD, but the peak is the kernel's VmHWM after it was reset once the setup is done (Linux:
# writing "5" to /proc/self/clear_refs), so "rss_peak" is the peak of the timed part alone, not of
# a setup that may have peaked higher (decoding a volume, say).
_CHILD_TIMED_PEAK = """\
import json as _json, time as _time
import psutil as _psutil
{setup}


def _vm_hwm():
    for _line in open("/proc/self/status"):
        if _line.startswith("VmHWM:"):
            return int(_line.split()[1]) * 1024


_floor = _psutil.Process().memory_info().rss
with open("/proc/self/clear_refs", "w") as _f:
    _f.write("5")
_t0 = _time.perf_counter()
{timed}
_t1 = _time.perf_counter()
_peak = _vm_hwm()
print("@@RESULT " + _json.dumps({{"seconds": _t1 - _t0, "rss_floor": _floor, "rss_peak": _peak, **({report})}}),
      flush=True)
"""


def run_fresh_timed_peak(setup: str, timed: str, *args: str, report: str = "{}") -> dict:
    """As `run_fresh`, but "rss_peak" is the peak RSS of the timed part only (VmHWM reset after the setup; Linux)."""
    code = _CHILD_TIMED_PEAK.format(setup=textwrap.dedent(setup), timed=textwrap.dedent(timed), report=report)
    return run_python(code, *args)
