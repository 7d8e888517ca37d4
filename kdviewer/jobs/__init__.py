"""Background jobs: run `kdviewer train|distill` as a subprocess, follow its events, cancel, resume, history.

Standard library only (no numpy, Qt or torch): the GUI wraps `Job.poll()` in a timer. Jobs are
detached (own session, output in `run_dir/job.log` and `stderr.log`), so they outlive the viewer.

    job = start_job(["distill", "recipe.toml"], run_dir, name="pneumonia")
    history = JobHistory(data_dir / "jobs.json"); history.load(); history.add(job)
    ...  # from a timer:
    for event in job.poll(): ...
    job.progress.val_history, job.progress.eta_s, job.state
    job.cancel()            # SIGINT -> resumable checkpoint; SIGTERM/SIGKILL of the tree later
    history.update(job)
    resume_job(history.get(job.id))

    # a viewer opened later:
    records = history.load()   # jobs that ended meanwhile are settled: done, failed or interrupted
    jobs = [attach_job(r) for r in records if r.state == "running"]   # events from the log's start
"""

from kdviewer.jobs.events import (
    CheckpointEvent,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    Event,
    ExportEvent,
    LogLine,
    Progress,
    ProgressTracker,
    StartEvent,
    StepEvent,
    UnknownEvent,
    format_event,
    parse_event,
)
from kdviewer.jobs.history import (
    JobHistory,
    JobHistoryError,
    JobRecord,
    attach_job,
    default_data_dir,
    resume_job,
)
from kdviewer.jobs.processes import pid_alive
from kdviewer.jobs.runner import Job, JobError, JobState, kdviewer_command, start_job

__all__ = [
    "CheckpointEvent",
    "DoneEvent",
    "EpochEvent",
    "ErrorEvent",
    "Event",
    "ExportEvent",
    "Job",
    "JobError",
    "JobHistory",
    "JobHistoryError",
    "JobRecord",
    "JobState",
    "LogLine",
    "Progress",
    "ProgressTracker",
    "StartEvent",
    "StepEvent",
    "UnknownEvent",
    "attach_job",
    "default_data_dir",
    "format_event",
    "kdviewer_command",
    "parse_event",
    "pid_alive",
    "resume_job",
    "start_job",
]
