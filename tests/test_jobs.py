"""kdviewer.jobs: events, a background job's life (done, failed, cancelled), the persisted history.

The jobs run a small fake trainer written here, which prints the same JSON-lines events as
`kdviewer distill --progress json` and, like it, writes a checkpoint and exits 130 on SIGINT.
A "viewer" that closes is a small Python process that starts a job, adds it to the history and exits.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kdviewer.errors import KdviewerError
from kdviewer.jobs import (
    CheckpointEvent,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    JobError,
    JobHistory,
    JobHistoryError,
    JobRecord,
    JobState,
    LogLine,
    ProgressTracker,
    StartEvent,
    StepEvent,
    UnknownEvent,
    attach_job,
    default_data_dir,
    format_event,
    kdviewer_command,
    parse_event,
    pid_alive,
    resume_job,
    start_job,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

FAKE_TRAINER = textwrap.dedent('''
    import json, os, signal, subprocess, sys, time

    def emit(**event):
        print(json.dumps(event), flush=True)

    mode = sys.argv[1]
    if "--resume" in sys.argv:
        emit(event="start", stage="distill", run_dir=".", epochs=2, steps_per_epoch=2, resumed=True)
        emit(event="epoch", epoch=2, train_loss=0.3, val={"auc": 0.9}, best=True, eta_s=0)
        emit(event="done", run_dir=".", best={"epoch": 2, "val": {"auc": 0.9}})
    elif mode == "ok":
        emit(event="start", stage="distill", run_dir=".", epochs=2, steps_per_epoch=2)
        for epoch in (1, 2):
            for step in (1, 2):
                emit(event="step", epoch=epoch, step=step, loss=1.0 / (epoch * step), lr=0.001)
            print(f"warning: plain text after epoch {epoch}", flush=True)
            emit(event="epoch", epoch=epoch, train_loss=0.5 / epoch, val={"auc": 0.8 + epoch / 20},
                 best=True, eta_s=2 - epoch)
        emit(event="checkpoint", path="best.pt")
        emit(event="export", onnx="s.onnx", card="s.json")
        emit(event="done", run_dir=".", best={"epoch": 2, "val": {"auc": 0.9}})
    elif mode == "fail":
        emit(event="start", stage="distill", run_dir=".", epochs=2, steps_per_epoch=2)
        emit(event="error", message="data folder fits no layout")
        print("kdviewer distill: error: data folder fits no layout", file=sys.stderr)
        sys.exit(2)
    elif mode == "crash":
        print("Traceback (most recent call last):\\nRuntimeError: out of memory", file=sys.stderr)
        sys.exit(1)
    elif mode == "hung":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        emit(event="start", stage="distill", run_dir=".", epochs=40, steps_per_epoch=100)
        time.sleep(60)
    elif mode == "slow":
        def stop(signum, frame):
            emit(event="checkpoint", path="last.pt")
            sys.exit(130)
        signal.signal(signal.SIGINT, stop)
        stubborn = ("import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                    "signal.signal(signal.SIGTERM, signal.SIG_IGN); open(sys.argv[1], 'w').close(); "
                    "time.sleep(60)")
        in_group = subprocess.Popen([sys.executable, "-c", stubborn, "ready1"])   # shares our stdout
        own_session = subprocess.Popen([sys.executable, "-c", stubborn, "ready2"],
                                       stdout=subprocess.DEVNULL, start_new_session=True)
        emit(event="start", stage="distill", run_dir=".", epochs=40, steps_per_epoch=100)
        while not (os.path.exists("ready1") and os.path.exists("ready2")):
            time.sleep(0.02)  # the children ignore SIGINT and SIGTERM from now on
        emit(event="children", pids=[in_group.pid, own_session.pid])
        time.sleep(60)   # silent: poll() must not wait for output
    elif mode == "ticking":
        half_line = False
        def stop(signum, frame):
            if half_line:  # a real trainer prints whole lines; finish this one first
                print("", flush=True)
            emit(event="checkpoint", path="last.pt")
            sys.exit(130)
        signal.signal(signal.SIGINT, stop)
        stubborn = ("import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                    "signal.signal(signal.SIGTERM, signal.SIG_IGN); open(sys.argv[1], 'w').close(); "
                    "time.sleep(60)")
        child = subprocess.Popen([sys.executable, "-c", stubborn, "ready"])   # in our group
        emit(event="start", stage="distill", run_dir=".", epochs=40, steps_per_epoch=3000)
        while not os.path.exists("ready"):
            time.sleep(0.02)  # the child ignores SIGINT and SIGTERM from now on
        emit(event="children", pids=[child.pid])
        for step in range(1, 3000):
            line = json.dumps({"event": "step", "epoch": 1, "step": step, "loss": 1.0 / step})
            half_line = True
            print(line[:20], end="", flush=True)   # half a line now: a reader sees it unfinished
            time.sleep(0.01)
            print(line[20:], flush=True)
            half_line = False
            time.sleep(0.01)
''')

VIEWER = textwrap.dedent('''
    import sys
    from kdviewer.jobs import JobHistory, start_job

    history_path, run_dir, *command = sys.argv[1:]
    history = JobHistory(history_path)
    history.load()
    job = start_job(["distill", "r.toml"], run_dir, name="detached", command=command)
    history.add(job)
    print(job.pid)
''')


def _viewer_starts_and_closes(history_path: Path, run_dir: Path, command: list[str]) -> int:
    """Run a short-lived "viewer" process that starts a job and exits at once; the job's pid."""
    # With the job's output on a pipe inherited from the viewer, this would wait for the job to end.
    done = subprocess.run([sys.executable, "-c", VIEWER, str(history_path), str(run_dir), *command],
                          capture_output=True, text=True, timeout=60, check=True, cwd=run_dir.parent)
    return int(done.stdout)


def _until(condition, timeout: float = 30.0) -> None:
    """Wait until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.02)


def _open_files() -> set[Path]:
    """The files this process has open (Linux)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(Path(os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            pass
    return found


@pytest.fixture
def fake(tmp_path: Path) -> list[str]:
    """The command line of the fake trainer (mode comes next)."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return [sys.executable, str(script)]


def _events_until(job, predicate, timeout: float = 30.0) -> list:
    """Poll like a GUI timer until an event satisfies `predicate`; return all events seen."""
    seen: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += job.poll()
        if any(predicate(e) for e in seen):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"no matching event within {timeout} s; got {seen}")


# -- events -----------------------------------------------------------------------------------------

def test_parse_event_reads_every_kind_and_keeps_the_rest_as_log_text():
    step = parse_event('{"event": "step", "epoch": 3, "step": 20, "loss": 0.41, "lr": 0.0018}\n')
    assert step == StepEvent(epoch=3, step=20, loss=0.41, lr=0.0018)
    epoch = parse_event('{"event": "epoch", "epoch": 3, "train_loss": 0.39, "val": {"auc": 0.95}, '
                        '"best": true, "eta_s": 610}')
    assert isinstance(epoch, EpochEvent) and epoch.val == {"auc": 0.95} and epoch.best and epoch.eta_s == 610
    done = parse_event('{"event": "done", "run_dir": "r", "best": {"epoch": 31, "val": {"auc": 0.97}}}')
    assert isinstance(done, DoneEvent) and done.best_epoch == 31 and done.best_val == {"auc": 0.97}
    assert parse_event('{"event": "error", "message": "no images"}') == ErrorEvent(message="no images")
    assert isinstance(parse_event('{"event": "start", "stage": "distill", "epochs": 40}'), StartEvent)
    assert parse_event('{"event": "checkpoint", "path": "last.pt"}') == CheckpointEvent(path="last.pt")
    future = parse_event('{"event": "gpu_temperature", "celsius": 60}')
    assert isinstance(future, UnknownEvent) and future.name == "gpu_temperature" and future.raw["celsius"] == 60
    assert parse_event("Epoch 3: 100%|####|\n") == LogLine(text="Epoch 3: 100%|####|")
    assert parse_event('{"event": "step", "loss": 0.') == LogLine(text='{"event": "step", "loss": 0.')
    assert parse_event('{"no_event": 1}') == LogLine(text='{"no_event": 1}')
    diverged = parse_event('{"event": "step", "epoch": "three", "step": 1, "loss": NaN}')
    assert diverged.epoch is None and math.isnan(diverged.loss)
    assert format_event(epoch) == "epoch 3: train loss 0.39, val auc 0.95 (best), ETA 610 s"


def test_a_stall_warning_shows_in_the_log_line_and_stays_in_the_progress():
    """The trainer's one-time "warning" of an epoch event: at the end of its line in the formatted log (still one
    line), and kept in the progress (the job's status line shows it) after later epochs without one."""
    warned = parse_event('{"event": "epoch", "epoch": 4, "train_loss": 1.02, "val": {"dice": 0.0}, '
                         '"warning": "validation Dice has been 0 for the first 5 validations: try a seed"}')
    assert isinstance(warned, EpochEvent) and warned.warning.startswith("validation Dice has been 0")
    assert format_event(warned) == ("epoch 4: train loss 1.02, val dice 0; "
                                    "warning: validation Dice has been 0 for the first 5 validations: try a seed")
    tracker = ProgressTracker()
    tracker.update(warned)
    tracker.update(parse_event('{"event": "epoch", "epoch": 5, "train_loss": 1.0, "val": {"dice": 0.0}}'))
    assert tracker.snapshot().warning == warned.warning
    assert ProgressTracker().snapshot().warning is None


def test_progress_keeps_curves_best_and_counts_the_eta_down():
    now = [100.0]
    tracker = ProgressTracker(clock=lambda: now[0])
    for line in ('{"event": "start", "stage": "distill", "epochs": 2, "steps_per_epoch": 2}',
                 '{"event": "step", "epoch": 1, "step": 1, "loss": 0.9}',
                 '{"event": "epoch", "epoch": 1, "train_loss": 0.8, "val": {"auc": 0.7}, "best": true, "eta_s": 60}',
                 '{"event": "epoch", "epoch": 2, "train_loss": 0.6, "val": {"auc": 0.6}, "best": false, "eta_s": 30}'):
        tracker.update(parse_event(line))
    now[0] += 10
    progress = tracker.snapshot()
    assert progress.epochs == 2 and progress.epoch == 2
    assert progress.step_losses == ((1, 1, 0.9),)
    assert progress.train_losses == ((1, 0.8), (2, 0.6))
    assert progress.val_history == {"auc": ((1, 0.7), (2, 0.6))}
    assert (progress.best_epoch, progress.best_val) == (1, {"auc": 0.7})
    assert progress.eta_s == pytest.approx(20.0)


# -- running jobs -----------------------------------------------------------------------------------

def test_a_job_reports_its_events_in_order_and_ends_done(fake, tmp_path):
    job = start_job(["distill", "r.toml"], tmp_path / "run", name="ok", command=[*fake, "ok"])
    if os.path.isdir("/proc/self/fd"):  # the job writes its files itself: the viewer holds none open
        assert not {job.log_path, job.stderr_path} & _open_files()
    assert job.wait(60) is JobState.DONE
    events = job.poll()
    kinds = [e.kind for e in events]
    assert kinds == ["start", "step", "step", "log", "epoch", "step", "step", "log", "epoch",
                     "checkpoint", "export", "done"]
    assert [(e.epoch, e.step) for e in events if isinstance(e, StepEvent)] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert job.poll() == []
    assert job.returncode == 0 and job.error_message is None
    progress = job.progress
    assert progress.val_history == {"auc": ((1, pytest.approx(0.85)), (2, pytest.approx(0.9)))}
    assert progress.best_epoch == 2 and progress.onnx == "s.onnx" and progress.eta_s == 0
    log = (tmp_path / "run" / "job.log").read_text().splitlines()
    assert len(log) == 12 and log[3] == "warning: plain text after epoch 1"


def test_a_failing_job_is_failed_with_its_error_message(fake, tmp_path):
    job = start_job([], tmp_path / "run", name="bad", command=[*fake, "fail"])
    assert job.wait(60) is JobState.FAILED
    assert job.returncode == 2
    assert job.error_message == "data folder fits no layout"
    crash = start_job([], tmp_path / "run2", name="crash", command=[*fake, "crash"])
    assert crash.wait(60) is JobState.FAILED
    assert crash.error_message == "RuntimeError: out of memory"  # no error event: stderr's last line


def test_a_command_that_cannot_start_is_a_job_error(tmp_path):
    with pytest.raises(JobError, match="cannot start") as info:
        start_job([], tmp_path / "run", name="x", command=[str(tmp_path / "no-such-program")])
    assert isinstance(info.value, KdviewerError)
    assert kdviewer_command(["distill", "r.toml"]) == [sys.executable, "-m", "kdviewer", "distill", "r.toml",
                                                       "--progress", "json"]


def test_poll_never_waits_and_cancel_kills_the_whole_tree(fake, tmp_path):
    job = start_job([], tmp_path / "run", name="slow", command=[*fake, "slow"], cwd=tmp_path)
    try:
        events = _events_until(job, lambda e: e.kind == "children")
        children = next(e for e in events if e.kind == "children").raw["pids"]
        assert all(pid_alive(pid) for pid in children)
        # The fake now sleeps 60 s without printing: poll returns at once with nothing.
        t0 = time.monotonic()
        assert job.poll() == []
        assert time.monotonic() - t0 < 5.0
        assert job.state is JobState.RUNNING and job.returncode is None
        assert job.progress.epochs == 40

        t0 = time.monotonic()
        job.cancel(timeout=5)
        assert time.monotonic() - t0 < 5.0  # cancel does not wait for the job either
    finally:
        job.cancel(timeout=5)
        final = job.wait(30)
    assert final is JobState.CANCELLED
    assert job.returncode == 130
    assert [e.path for e in job.poll() if isinstance(e, CheckpointEvent)] == ["last.pt"]
    assert job.progress.checkpoint == "last.pt"
    assert not pid_alive(job.pid)
    assert [pid for pid in children if pid_alive(pid)] == []  # in its group and in its own session


def test_a_job_that_ignores_sigint_and_sigterm_is_killed_after_the_timeout(fake, tmp_path):
    job = start_job([], tmp_path / "run", name="hung", command=[*fake, "hung"])
    try:
        _events_until(job, lambda e: e.kind == "start")
        job.cancel(timeout=1)
    finally:
        job.cancel(timeout=1)
        final = job.wait(30)
    assert final is JobState.CANCELLED
    assert job.returncode == -9 and not pid_alive(job.pid)


# -- history ----------------------------------------------------------------------------------------

def test_history_persists_across_a_restart(fake, tmp_path):
    path = tmp_path / "data" / "jobs.json"
    history = JobHistory(path)
    assert history.load() == []
    job = start_job(["distill", "r.toml"], tmp_path / "run", name="ok", command=[*fake, "ok"])
    history.add(job)
    job.wait(60)
    history.update(job)

    reloaded = JobHistory(path).load()
    assert len(reloaded) == 1
    record = reloaded[0]
    assert (record.name, record.argv, record.state, record.returncode) == ("ok", ("distill", "r.toml"), "done", 0)
    assert record.best_epoch == 2 and record.best_val == {"auc": 0.9}
    assert record.started and record.ended and record.run_dir == str(tmp_path / "run")
    assert json.loads(path.read_text())["jobs"][0]["id"] == job.id
    with pytest.raises(JobError, match="only an interrupted"):
        resume_job(record)


def test_an_interrupted_job_is_recognised_and_resumed(fake, tmp_path, monkeypatch):
    gone = subprocess.Popen(["true"])
    gone.wait()
    path = tmp_path / "jobs.json"
    history = JobHistory(path)
    history.load()
    closed = JobRecord(id="a1", name="closed", argv=("distill", "r.toml"), run_dir=str(tmp_path / "run"),
                       started="2026-01-01T10:00:00+00:00", pid=gone.pid, command=(*fake, "slow"))
    alive = JobRecord(id="b2", name="alive", argv=(), run_dir=str(tmp_path), started="2026-01-01T11:00:00+00:00",
                      pid=os.getpid())
    history.add(closed)
    history.add(alive)

    states = {r.id: r.state for r in JobHistory(path).load()}
    assert states == {"a1": "interrupted", "b2": "running"}
    assert json.loads(path.read_text())["jobs"][0]["state"] == "interrupted"  # saved too

    job = resume_job(JobHistory(path).load()[0])
    assert job.command[-1] == "--resume" and job.resumed_from == "a1" and job.name == "closed"
    assert job.wait(60) is JobState.DONE
    assert [e.raw.get("resumed") for e in job.poll() if isinstance(e, StartEvent)] == [True]

    monkeypatch.setenv("KDVIEWER_HOME", str(tmp_path / "home"))
    assert JobHistory().path == tmp_path / "home" / "jobs.json" and default_data_dir() == tmp_path / "home"


def test_a_damaged_history_file_is_a_typed_error(tmp_path):
    path = tmp_path / "jobs.json"
    path.write_text("{not json")
    with pytest.raises(JobHistoryError, match="jobs.json"):
        JobHistory(path).load()


# -- detached jobs: they outlive the viewer, a later viewer re-attaches ---------------------------

def test_a_job_outlives_its_viewer_and_a_new_viewer_attaches_and_cancels_it(fake, tmp_path):
    path, run = tmp_path / "data" / "jobs.json", tmp_path / "run"
    pid = _viewer_starts_and_closes(path, run, [*fake, "ticking"])
    try:
        assert pid_alive(pid)  # the viewer is gone, the job is not
        printed_then = len((run / "job.log").read_bytes().splitlines())
        (record,) = JobHistory(path).load()
        assert (record.state, record.pid, record.pgid) == ("running", pid, pid)
        assert record.pid_start_ticks is not None and record.log_path == str(run / "job.log")

        history = JobHistory(path)
        history.load()
        job = attach_job(history.get(record.id))
        assert (job.id, job.name, job.pid) == (record.id, "detached", pid)
        # It keeps printing to its log after the viewer closed, and the new viewer sees it all.
        events = _events_until(job, lambda e: isinstance(e, StepEvent) and e.step > printed_then + 10)
        assert [e.kind for e in events[:2]] == ["start", "children"]  # from the start of the log
        steps = [e.step for e in events[2:]]
        assert steps == list(range(1, len(steps) + 1))  # every step, whole: no half-read line
        assert job.state is JobState.RUNNING and job.progress.epochs == 40
        children = events[1].raw["pids"]
        assert all(pid_alive(child) for child in children)

        job.cancel(timeout=5)
        assert job.wait(30) is JobState.CANCELLED
    finally:
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    assert job.progress.checkpoint == "last.pt"
    assert [e.path for e in job.poll() if isinstance(e, CheckpointEvent)] == ["last.pt"]
    assert not pid_alive(pid) and [c for c in children if pid_alive(c)] == []
    assert job.returncode is None and job.error_message is None  # not our child: status unknown
    history.update(job)
    (reloaded,) = JobHistory(path).load()
    assert reloaded.state == "cancelled" and reloaded.resumable and reloaded.ended


def test_a_job_killed_while_no_viewer_watched_is_interrupted_and_resumes_to_done(fake, tmp_path):
    path, run = tmp_path / "jobs.json", tmp_path / "run"
    pid = _viewer_starts_and_closes(path, run, [*fake, "ticking"])
    _until(lambda: b'"step"' in (run / "job.log").read_bytes())
    os.killpg(pid, signal.SIGKILL)   # the machine went down, say
    _until(lambda: not pid_alive(pid))

    (record,) = JobHistory(path).load()
    assert record.state == "interrupted" and record.resumable
    assert json.loads(path.read_text())["jobs"][0]["state"] == "interrupted"  # saved too

    job = resume_job(record)
    assert job.wait(60) is JobState.DONE
    # The resumed job appends to the same log and reads only its own part of it.
    assert [e.raw.get("resumed") for e in job.poll() if isinstance(e, StartEvent)] == [True]
    assert (run / "job.log").read_text().count('"event": "start"') == 2


def test_a_job_that_ended_while_no_viewer_watched_is_settled_from_its_log(fake, tmp_path):
    path = tmp_path / "jobs.json"
    pids = [_viewer_starts_and_closes(path, tmp_path / name, [*fake, name]) for name in ("ok", "fail")]
    _until(lambda: not any(pid_alive(pid) for pid in pids))
    records = {r.run_dir: r for r in JobHistory(path).load()}
    ok, bad = records[str(tmp_path / "ok")], records[str(tmp_path / "fail")]
    assert (ok.state, ok.best_epoch, ok.best_val) == ("done", 2, {"auc": 0.9})
    assert (bad.state, bad.message) == ("failed", "data folder fits no layout")
    # A finished record still shows its curves and log.
    replay = attach_job(ok)
    assert replay.state is JobState.DONE and [e.kind for e in replay.poll()][-1] == "done"
    assert replay.progress.val_history["auc"][-1] == (2, pytest.approx(0.9))


def test_a_reused_pid_is_not_taken_for_the_job(tmp_path):
    path = tmp_path / "jobs.json"
    history = JobHistory(path)
    history.load()
    # Our own pid is alive, but the record says it started at another time: another process.
    history.add(JobRecord(id="c3", name="reused", argv=(), run_dir=str(tmp_path), started="2026-01-01T12:00:00+00:00",
                          pid=os.getpid(), pid_start_ticks=1))
    assert JobHistory(path).load()[0].state == "interrupted"


def test_poll_parses_only_complete_lines(tmp_path):
    log = tmp_path / "job.log"
    log.write_bytes(b'{"event": "start", "stage": "distill", "epochs": 2}\n{"event": "step", "ep')
    # A running job (this test's own process stands in for it) re-attached from a record.
    job = attach_job(JobRecord(id="d4", name="live", argv=(), run_dir=str(tmp_path), started="2026-01-01T12:00:00+00:00",
                               pid=os.getpid()))
    assert [e.kind for e in job.poll()] == ["start"]
    assert job.poll() == []
    with log.open("ab") as f:
        f.write('och": 1, "step": 1, "loss": 0.5}\nplain text \u00e9\n'.encode())
    assert job.poll() == [StepEvent(epoch=1, step=1, loss=0.5), LogLine(text="plain text \u00e9")]
    assert job.state is JobState.RUNNING
