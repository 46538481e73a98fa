"""Rows to records, shared by every backend: both store times as integer
milliseconds and select columns in these orders."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from ..model import Attempt, Job, JobState, NewJob, SupervisorInfo, WorkerInfo
from ..timeutil import from_ms, to_ms
from .base import Claim, HeldJob

JOB_COLUMNS = ("id, command, state, attempts, max_retries, priority, run_at, timeout, created_at, "
               "updated_at, started_at, finished_at, exit_code, last_error, worker_id")
ATTEMPT_COLUMNS = ("job_id, number, worker_id, started_at, finished_at, exit_code, error, "
                   "stdout_path, stderr_path")
SUPERVISOR_COLUMNS = "id, host, pid, pid_start, started_at, heartbeat_at, slots, stop_requested"


def time_or_none(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms)


def job_from_row(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0], command=row[1], state=JobState(row[2]), attempts=row[3], max_retries=row[4],
        priority=row[5], run_at=from_ms(row[6]), timeout=row[7], created_at=from_ms(row[8]),
        updated_at=from_ms(row[9]), started_at=time_or_none(row[10]),
        finished_at=time_or_none(row[11]), exit_code=row[12], last_error=row[13],
        worker_id=row[14],
    )


def attempt_from_row(row: Sequence[Any]) -> Attempt:
    return Attempt(job_id=row[0], number=row[1], worker_id=row[2], started_at=from_ms(row[3]),
                   finished_at=time_or_none(row[4]), exit_code=row[5], error=row[6],
                   stdout_path=row[7], stderr_path=row[8])


def supervisor_from_row(row: Sequence[Any]) -> SupervisorInfo:
    return SupervisorInfo(id=row[0], host=row[1], pid=row[2], pid_start=row[3],
                          started_at=from_ms(row[4]), heartbeat_at=from_ms(row[5]),
                          slots=row[6], stop_requested=bool(row[7]))


def supervisor_values(info: SupervisorInfo) -> tuple[Any, ...]:
    return (info.id, info.host, info.pid, info.pid_start, to_ms(info.started_at),
            to_ms(info.heartbeat_at), info.slots, int(info.stop_requested))


def new_job_rows(jobs: Sequence[NewJob], now: datetime) -> tuple[list[tuple[Any, ...]], list[Job]]:
    """For a batch inserted at ``now``: the values of each row (id, command, max_retries,
    priority, run_at, timeout, created_at, updated_at), and each job's record as it is
    once inserted, without reading it back. Built in one pass: 100,000-job batches are
    common, and the usual ``run_at`` (now) is converted once, not once per job."""
    created_ms = to_ms(now)
    created = from_ms(created_ms)
    values: list[tuple[Any, ...]] = []
    records: list[Job] = []
    for job in jobs:
        if job.run_at is now or job.run_at == now:
            run_ms, run_at = created_ms, created
        else:
            run_ms = to_ms(job.run_at)
            run_at = from_ms(run_ms)
        values.append((job.id, job.command, job.max_retries, job.priority, run_ms, job.timeout,
                       created_ms, created_ms))
        records.append(Job(id=job.id, command=job.command, state=JobState.PENDING, attempts=0,
                           max_retries=job.max_retries, priority=job.priority, run_at=run_at,
                           timeout=job.timeout, created_at=created, updated_at=created,
                           started_at=None, finished_at=None, exit_code=None, last_error=None,
                           worker_id=None))
    return values, records


def first_repeated(ids: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            return job_id
        seen.add(job_id)
    return None


# Statements with no parameters read the same on every backend.
SQL_WORKERS = """
SELECT w.id,
       (SELECT j.id FROM jobs j WHERE j.state = 'processing' AND j.worker_id = w.id LIMIT 1),
       s.id, s.host, s.pid, s.pid_start, s.started_at, s.heartbeat_at,
       s.slots, s.stop_requested
  FROM workers w JOIN supervisors s ON s.id = w.supervisor_id
 ORDER BY s.started_at, s.id, w.slot"""

SQL_HELD = f"""
SELECT j.lease_token, j.lease_expires_at, j.worker_id,
       (SELECT max(number) FROM attempts a WHERE a.job_id = j.id),
       s.id, s.host, s.pid, s.pid_start, s.started_at, s.heartbeat_at, s.slots, s.stop_requested,
       {', '.join('j.' + c.strip() for c in JOB_COLUMNS.split(','))}
  FROM jobs j
  LEFT JOIN workers w ON w.id = j.worker_id
  LEFT JOIN supervisors s ON s.id = w.supervisor_id
 WHERE j.state = 'processing'"""


def worker_from_row(row: Sequence[Any]) -> WorkerInfo:
    """A row of SQL_WORKERS."""
    return WorkerInfo(id=row[0], current_job=row[1], supervisor=supervisor_from_row(row[2:]))


def held_from_row(row: Sequence[Any]) -> HeldJob:
    """A row of SQL_HELD."""
    job = job_from_row(row[12:])
    claim = Claim(job=job, token=row[0], attempt=row[3] or job.attempts, worker_id=row[2] or "")
    supervisor = None if row[4] is None else supervisor_from_row(row[4:12])
    return HeldJob(claim=claim, lease_expires_at=from_ms(row[1]), supervisor=supervisor)
