"""A model-based test of the store: hypothesis drives random sequences of enqueue,
claim, heartbeat, finish (with current and stale tokens), lease expiry and recovery,
dlq retry, config changes and a moving clock against a small in-memory model.

Invariants checked after every step: each job is in exactly the state the model says,
with the same attempt count; at most one live lease per job; a job is dead exactly
when a failed attempt found its retries exhausted. Runs on every backend.
QUEUECTL_MODEL_EXAMPLES raises the number of examples (the issue's long form: 500).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from queuectl.config import Config
from queuectl.errors import DuplicateJob, NotFound, WrongState
from queuectl.lifecycle import AttemptResult, decide
from queuectl.model import JobState
from queuectl.store import Store, open_store
from queuectl.timeutil import to_ms
from tests.conftest import _drop_schema, _pg_schema_url, requires_pg
from tests.store.support import T0, new_job

LEASE = 5.0
IDS = ["a", "b", "c"]
EXAMPLES = int(os.environ.get("QUEUECTL_MODEL_EXAMPLES", "60"))


@dataclass
class ModelJob:
    id: str
    seq: int
    priority: int
    max_retries: int
    run_at: int  # ms
    state: JobState = JobState.PENDING
    attempts: int = 0
    token: str | None = None
    attempt_no: int = 0
    lease_expires: int = 0
    old_tokens: list[str] = field(default_factory=list)


class StoreModel(RuleBasedStateMachine):
    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.cleanup: list[object] = []
        if self.backend == "sqlite":
            self.tmp = tempfile.TemporaryDirectory()
            self.store: Store = open_store(str(Path(self.tmp.name) / "model.db"))
            self.schema = None
        else:
            url, self.schema = _pg_schema_url()
            self.store = open_store(url)
        self.now = T0
        self.jobs: dict[str, ModelJob] = {}
        self.seq = 0
        self.config = Config.from_stored({})

    def teardown(self) -> None:
        self.store.close()
        if self.schema is None:
            self.tmp.cleanup()
        else:
            _drop_schema(self.schema)

    # --- rules ------------------------------------------------------------------

    @rule(job_id=st.sampled_from(IDS), priority=st.integers(-1, 1),
          max_retries=st.integers(0, 2), delay=st.integers(0, 4))
    def enqueue(self, job_id: str, priority: int, max_retries: int, delay: int) -> None:
        job = new_job(job_id, priority=priority, max_retries=max_retries,
                      run_at=self.now + timedelta(seconds=delay))
        if job_id in self.jobs:
            with pytest.raises(DuplicateJob):
                self.store.insert_jobs([job], self.now)
            return
        self.store.insert_jobs([job], self.now)
        self.seq += 1
        self.jobs[job_id] = ModelJob(job_id, self.seq, priority, max_retries, to_ms(job.run_at))

    @rule(workers=st.integers(1, 3))
    def claim(self, workers: int) -> None:
        now_ms = to_ms(self.now)
        due = sorted((j for j in self.jobs.values()
                      if j.state in (JobState.PENDING, JobState.FAILED) and j.run_at <= now_ms),
                     key=lambda j: (j.priority, j.run_at, j.seq))
        claims = self.store.claim([f"w{n}" for n in range(workers)], self.now, LEASE)
        assert {c.job.id for c in claims} == {j.id for j in due[:workers]}
        for claim in claims:
            job = self.jobs[claim.job.id]
            if job.token:
                job.old_tokens.append(job.token)
            job.state, job.attempts, job.token = JobState.PROCESSING, job.attempts + 1, claim.token
            job.attempt_no += 1
            job.lease_expires = to_ms(self.now + timedelta(seconds=LEASE))
            assert claim.job.attempts == job.attempts and claim.attempt == job.attempt_no

    def _finish(self, job: ModelJob, token: str, result: AttemptResult) -> None:
        current = token == job.token and job.state is JobState.PROCESSING
        outcome = decide(job.attempts, job.max_retries, result, self.config, self.now)
        applied = self.store.finish_attempt(job.id, token, job.attempt_no, outcome, self.now)
        assert applied == current, (job, token)
        if applied:
            job.old_tokens.append(token)
            job.token = None
            job.state = outcome.state
            if outcome.run_at is not None:
                job.run_at = to_ms(outcome.run_at)

    @precondition(lambda self: any(j.state is JobState.PROCESSING for j in self.jobs.values()))
    @rule(data=st.data(), succeeded=st.booleans())
    def finish(self, data: st.DataObject, succeeded: bool) -> None:
        job = data.draw(st.sampled_from(sorted(
            (j for j in self.jobs.values() if j.state is JobState.PROCESSING), key=lambda j: j.id)))
        assert job.token is not None
        self._finish(job, job.token, AttemptResult(exit_code=0 if succeeded else 1))

    @precondition(lambda self: any(j.old_tokens for j in self.jobs.values()))
    @rule(data=st.data())
    def finish_with_a_stale_token(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(sorted(
            (j for j in self.jobs.values() if j.old_tokens), key=lambda j: j.id)))
        self._finish(job, data.draw(st.sampled_from(job.old_tokens)), AttemptResult(exit_code=0))

    @rule()
    def heartbeat(self) -> None:
        held = [j for j in self.jobs.values() if j.state is JobState.PROCESSING]
        stale = [t for j in self.jobs.values() for t in j.old_tokens][:2]
        tokens = [j.token for j in held if j.token] + stale
        beat = self.store.heartbeat("nobody", tokens, self.now, LEASE)
        assert not beat.registered
        assert beat.lost_tokens == frozenset(stale)
        for job in held:
            job.lease_expires = to_ms(self.now + timedelta(seconds=LEASE))

    @rule()
    def recover_expired_leases(self) -> None:
        now_ms = to_ms(self.now)
        for held in self.store.held_jobs():
            job = self.jobs[held.claim.job.id]
            assert held.claim.token == job.token and to_ms(held.lease_expires_at) == job.lease_expires
            if job.lease_expires < now_ms:
                self._finish(job, held.claim.token, AttemptResult(lost=True))

    @rule(job_id=st.one_of(st.none(), st.sampled_from(IDS)))
    def retry_dead(self, job_id: str | None) -> None:
        if job_id is None:
            moved = self.store.retry_dead(None, self.now)
            expected = [j.id for j in sorted(self.jobs.values(), key=lambda j: j.seq)
                        if j.state is JobState.DEAD]
            assert moved == expected
        elif job_id not in self.jobs:
            with pytest.raises(NotFound):
                self.store.retry_dead([job_id], self.now)
            return
        elif self.jobs[job_id].state is not JobState.DEAD:
            with pytest.raises(WrongState):
                self.store.retry_dead([job_id], self.now)
            return
        else:
            expected = self.store.retry_dead([job_id], self.now)
        for moved_id in expected:
            job = self.jobs[moved_id]
            job.state, job.attempts, job.run_at = JobState.PENDING, 0, to_ms(self.now)

    @rule(seconds=st.sampled_from([0.5, 1, 2, 3, 6, 20]))
    def advance_clock(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(base=st.sampled_from([1, 2, 3]), cap=st.sampled_from([0, 3, 100]))
    def change_config(self, base: int, cap: int) -> None:
        self.config = Config.from_stored({"backoff-base": str(base), "max-backoff": str(cap)})

    # --- invariants ---------------------------------------------------------------

    @invariant()
    def every_job_is_where_the_model_says(self) -> None:
        stored = {job.id: job for job in self.store.list_jobs()}
        assert set(stored) == set(self.jobs)
        for job_id, model in self.jobs.items():
            assert (stored[job_id].state, stored[job_id].attempts) == (model.state, model.attempts), job_id
        counts = self.store.count_by_state()
        for state in JobState:
            assert counts[state] == sum(1 for j in self.jobs.values() if j.state is state)

    @invariant()
    def at_most_one_live_lease_per_job(self) -> None:
        held = self.store.held_jobs()
        assert len({h.claim.job.id for h in held}) == len(held)
        assert {h.claim.job.id for h in held} == {
            j.id for j in self.jobs.values() if j.state is JobState.PROCESSING}

    @invariant()
    def dead_exactly_when_retries_are_exhausted(self) -> None:
        for job in self.jobs.values():
            if job.state is JobState.DEAD:
                assert job.attempts == job.max_retries + 1
            if job.state is JobState.FAILED:
                assert job.attempts <= job.max_retries


MODEL_SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=50, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])


class TestSqliteStoreModel(StoreModel.TestCase):  # type: ignore[name-defined]
    settings = MODEL_SETTINGS


class PostgresStoreModel(StoreModel):
    backend = "postgres"


@requires_pg
class TestPostgresStoreModel(PostgresStoreModel.TestCase):  # type: ignore[name-defined]
    settings = MODEL_SETTINGS

