"""The one storage interface. Every backend implements these domain verbs.

Rules live in Python (``lifecycle``, ``config``, ``jobspec``); a store only
applies decisions, each state change in one transaction, and translates its
driver's errors into ``queuectl.errors``. Verbs that compare times take
``now`` from the caller so tests never sleep through a backoff or a lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Sequence

from ..lifecycle import Outcome
from ..model import Attempt, Job, JobState, NewJob, SupervisorInfo, WorkerInfo


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker now holds. ``token`` fences every later write of this attempt."""

    job: Job  # as it is after the claim: state processing, attempts already counted
    token: str
    attempt: int  # the attempt's number in the job's whole history (log file names)
    worker_id: str


@dataclass(frozen=True, slots=True)
class HeldJob:
    """A processing job as recovery sees it."""

    claim: Claim
    lease_expires_at: datetime
    supervisor: SupervisorInfo | None  # None when its supervisor is no longer registered


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A supervisor's heartbeat reply."""

    registered: bool  # False: someone presumed us dead and removed our registration
    stop_requested: bool  # `worker stop` asked us to finish
    lost_tokens: frozenset[str]  # leases we no longer hold: stop those jobs


@dataclass(frozen=True, slots=True)
class Result:
    """A finished attempt's outcome, to be written only while ``token`` is its lease."""

    job_id: str
    token: str
    attempt: int
    outcome: Outcome
    stdout_path: str | None = None
    stderr_path: str | None = None
    stdout_tail: bytes | None = None  # the end of each stream, for stores read from other hosts
    stderr_tail: bytes | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """What ``settle`` did: per result whether it applied (in order), and the new claims."""

    applied: list[bool]
    claims: list[Claim]


class Listener(Protocol):
    """Wake-ups for a supervisor, to wait on with ``poll``/``select``."""

    #: True: every listener gets every wake-up (PostgreSQL NOTIFY), so a busy supervisor
    #: may keep listening. False: one listener takes each wake-up (a FIFO), so only a
    #: supervisor with a free slot should listen.
    broadcast: bool

    def fileno(self) -> int | None:
        """The descriptor to wait on; None while disconnected (reconnects are tried on each call)."""
        ...

    def drain(self) -> set[str]:
        """Consume pending wake-ups; returns their kinds: "jobs" (something may be due)
        and/or "control" (a stop request or a config change)."""
        ...

    def close(self) -> None: ...


class Store(Protocol):
    """A queuectl database. Implementations: ``SqliteStore``."""

    url: str

    # --- jobs ---------------------------------------------------------------
    def insert_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        """Insert all jobs in one transaction, or none: raises DuplicateJob naming
        the first id that already exists."""
        ...

    def get_job(self, job_id: str) -> Job | None:
        """The job, or None."""
        ...

    def list_jobs(self, state: JobState | None = None, limit: int | None = None) -> list[Job]:
        """Jobs in enqueue order, optionally of one state, at most ``limit``."""
        ...

    def count_by_state(self) -> dict[JobState, int]:
        """The number of jobs in every state (zero included)."""
        ...

    def attempts(self, job_id: str) -> list[Attempt]:
        """The job's attempt history, oldest first."""
        ...

    def next_due_at(self) -> datetime | None:
        """The earliest ``run_at`` of a waiting (pending or failed) job."""
        ...

    def retry_dead(self, job_ids: Sequence[str] | None, now: datetime) -> list[str]:
        """Move dead jobs back to pending (attempts 0, run_at now, error cleared).

        ``None`` means every dead job. All or nothing: an unknown id raises
        NotFound and one that is not dead raises WrongState, changing nothing.
        Returns the ids moved."""
        ...

    # --- workers' verbs -----------------------------------------------------
    def settle(self, results: Sequence[Result], worker_ids: Sequence[str], now: datetime,
               lease_seconds: float) -> Settlement:
        """Write finished attempts' results, then claim jobs for free worker slots, all in
        one transaction: a supervisor commits once per turn of its loop however many of
        its jobs finished (group commit), and a slot's next job costs no commit of its own.

        Each result applies if, and only if, its token is still the job's lease (fencing).
        Claims take up to one due job per worker id, in priority, run_at, enqueue order:
        each gets state processing, attempts + 1, a fresh lease token and a lease until
        ``now + lease_seconds``. Tails are kept by stores whose clients may be on other hosts."""
        ...

    def claim(self, worker_ids: Sequence[str], now: datetime, lease_seconds: float) -> list[Claim]:
        """``settle`` with no results."""
        ...

    def finish_attempt(self, job_id: str, token: str, attempt: int, outcome: Outcome,
                       now: datetime, stdout_path: str | None = None,
                       stderr_path: str | None = None, stdout_tail: bytes | None = None,
                       stderr_tail: bytes | None = None) -> bool:
        """``settle`` of one result and no claims: whether it applied."""
        ...

    def attempt_output(self, job_id: str, attempt: int, stream: str) -> bytes | None:
        """The stored tail of an attempt's "stdout" or "stderr", if this store keeps them."""
        ...

    def heartbeat(self, supervisor_id: str, tokens: Sequence[str], now: datetime,
                  lease_seconds: float) -> Heartbeat:
        """Mark the supervisor alive and extend the leases it holds."""
        ...

    def held_jobs(self) -> list[HeldJob]:
        """Every processing job with its lease and its supervisor, for recovery."""
        ...

    # --- worker registry ----------------------------------------------------
    def register_supervisor(self, info: SupervisorInfo, worker_ids: Sequence[str]) -> None:
        """Record a supervisor and its worker slots (replacing a stale record of the same id)."""
        ...

    def forget_supervisors(self, supervisor_ids: Sequence[str]) -> None:
        """Remove supervisors (and their worker slots) that stopped or died."""
        ...

    def workers(self) -> list[WorkerInfo]:
        """Every registered worker slot, live or not: liveness is the caller's judgement."""
        ...

    def request_stop(self, supervisor_ids: Sequence[str]) -> None:
        """Ask these supervisors to finish their current jobs and exit."""
        ...

    def clock(self) -> datetime:
        """The database's current time (UTC). Workers measure leases on it, so the hosts'
        own clocks need not agree."""
        ...

    # --- wake-ups -----------------------------------------------------------
    def listen(self) -> "Listener":
        """Start listening for wake-ups: its ``fileno()`` turns readable when jobs
        are enqueued or retried (best effort; callers still poll as a fallback)."""
        ...

    def wake(self) -> None:
        """Wake a listening supervisor (``insert_jobs`` and ``retry_dead`` do it themselves)."""
        ...

    # --- config -------------------------------------------------------------
    def get_config(self) -> dict[str, str]:
        """Stored config values (canonical strings) by key; unset keys are absent."""
        ...

    def set_config(self, key: str, value: str, now: datetime) -> None:
        ...

    def close(self) -> None:
        ...


class SettleShortcuts:
    """``claim`` and ``finish_attempt`` for every backend, as special cases of ``settle``
    (which each backend implements: ``self`` is a ``Store``)."""

    def claim(self: Store, worker_ids: Sequence[str], now: datetime,
              lease_seconds: float) -> list[Claim]:
        return self.settle((), worker_ids, now, lease_seconds).claims

    def finish_attempt(self: Store, job_id: str, token: str, attempt: int, outcome: Outcome,
                       now: datetime, stdout_path: str | None = None,
                       stderr_path: str | None = None, stdout_tail: bytes | None = None,
                       stderr_tail: bytes | None = None) -> bool:
        result = Result(job_id, token, attempt, outcome, stdout_path, stderr_path,
                        stdout_tail, stderr_tail)
        return self.settle((result,), (), now, 0).applied[0]
