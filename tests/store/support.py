"""Helpers shared by the store conformance tests. Times are fixed and passed explicitly."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from queuectl.lifecycle import Outcome
from queuectl.model import JobState, NewJob, SupervisorInfo
from queuectl.store import Claim, Store

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
LEASE = 30.0


def at(seconds: float) -> datetime:
    """T0 plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def new_job(job_id: str, command: str = "true", *, priority: int = 0, run_at: datetime = T0,
            max_retries: int = 3, timeout: float | None = None) -> NewJob:
    return NewJob(id=job_id, command=command, max_retries=max_retries, priority=priority,
                  run_at=run_at, timeout=timeout)


def insert(store: Store, *ids: str, now: datetime = T0, **fields: object) -> None:
    store.insert_jobs([new_job(i, **fields) for i in ids], now)  # type: ignore[arg-type]


def claim_one(store: Store, worker: str = "w1", now: datetime = T0, lease: float = LEASE) -> Claim:
    claims = store.claim([worker], now, lease)
    assert len(claims) == 1, claims
    return claims[0]


def finish(store: Store, claim: Claim, outcome: Outcome, now: datetime = T0) -> bool:
    return store.finish_attempt(claim.job.id, claim.token, claim.attempt, outcome, now)


def make_dead(store: Store, job_id: str, now: datetime = T0) -> None:
    """Insert a job with no retries and fail its only attempt."""
    insert(store, job_id, max_retries=0, priority=-10**6, now=now)  # claimed before anything else
    claims = store.claim([f"killer-{job_id}"], now, LEASE)
    assert [c.job.id for c in claims] == [job_id]
    assert finish(store, claims[0], Outcome.dead(1, "exit code 1"), now)
    job = store.get_job(job_id)
    assert job is not None and job.state is JobState.DEAD


def supervisor(sup_id: str, *, host: str = "host-a", pid: int = 4242, slots: int = 2,
               now: datetime = T0) -> SupervisorInfo:
    return SupervisorInfo(id=sup_id, host=host, pid=pid, pid_start=987654, started_at=now,
                          heartbeat_at=now, slots=slots, stop_requested=False)
