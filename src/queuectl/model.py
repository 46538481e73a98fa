"""The records queuectl hands out: jobs, attempts, workers, and the job states."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .timeutil import iso


class JobState(str, enum.Enum):
    """Where a job is in its life. ``lifecycle.TRANSITIONS`` lists the moves."""

    #: Waiting to run at or after ``run_at``. In: enqueue, ``dlq retry``, a force-stopped
    #: attempt. Out: a worker's claim.
    PENDING = "pending"
    #: A worker holds it under a lease. In: a claim. Out: the attempt's outcome, or
    #: recovery of a lost worker's job.
    PROCESSING = "processing"
    #: Ran successfully (exit code 0). Final.
    COMPLETED = "completed"
    #: An attempt failed and a retry is scheduled at ``run_at``. Out: a claim once due.
    FAILED = "failed"
    #: Retries exhausted: the dead letter queue. Out: ``dlq retry``.
    DEAD = "dead"

    def __str__(self) -> str:
        return self.value


#: States in which a job is waiting for a worker.
WAITING_STATES = (JobState.PENDING, JobState.FAILED)
#: States that keep ``worker start --stop-when-empty`` running.
UNFINISHED_STATES = (JobState.PENDING, JobState.FAILED, JobState.PROCESSING)


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored. Times are timezone-aware UTC datetimes."""

    id: str
    command: str
    state: JobState
    attempts: int
    max_retries: int
    priority: int
    run_at: datetime
    timeout: float | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    last_error: str | None
    worker_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``show --json`` and ``list --json``."""
        return {
            "id": self.id,
            "command": self.command,
            "state": self.state.value,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "priority": self.priority,
            "run_at": iso(self.run_at),
            "timeout": self.timeout,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "exit_code": self.exit_code,
            "last_error": self.last_error,
            "worker_id": self.worker_id,
        }


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job about to be inserted (see ``jobspec``)."""

    id: str
    command: str
    max_retries: int
    priority: int
    run_at: datetime
    timeout: float | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One execution of a job. ``number`` counts every run of the job, including
    runs before a ``dlq retry``, so log files are never overwritten."""

    job_id: str
    number: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    exit_code: int | None
    error: str | None
    stdout_path: str | None
    stderr_path: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "worker_id": self.worker_id,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "exit_code": self.exit_code,
            "error": self.error,
            "stdout_path": self.stdout_path,
            "stderr_path": self.stderr_path,
        }


@dataclass(frozen=True, slots=True)
class SupervisorInfo:
    """A running ``worker start`` process as registered in the store."""

    id: str
    host: str
    pid: int
    pid_start: int | None  # /proc start time, to tell a live pid from a reused one
    started_at: datetime
    heartbeat_at: datetime
    slots: int
    stop_requested: bool


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker slot of a supervisor."""

    id: str
    supervisor: SupervisorInfo
    current_job: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "supervisor_id": self.supervisor.id,
            "pid": self.supervisor.pid,
            "host": self.supervisor.host,
            "started_at": iso(self.supervisor.started_at),
            "heartbeat_at": iso(self.supervisor.heartbeat_at),
            "current_job": self.current_job,
        }
