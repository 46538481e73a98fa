"""Store conformance: inserting, reading, listing, counting, the DLQ, config, persistence.

Every test takes the ``store`` fixture, so it runs on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from queuectl.errors import DuplicateJob, NotFound, WrongState
from queuectl.lifecycle import Outcome
from queuectl.model import JobState
from queuectl.store import Store, open_store

from .support import T0, at, claim_one, finish, insert, make_dead, new_job, supervisor


def ids(jobs: list) -> list[str]:
    return [job.id for job in jobs]


# --- insert and get ---------------------------------------------------------------

def test_an_inserted_job_reads_back_with_every_field(store: Store) -> None:
    [returned] = store.insert_jobs([new_job("j1", "echo hi", priority=-3, run_at=at(60),
                                            max_retries=5, timeout=2.5)], at(1))
    stored = store.get_job("j1")
    assert stored == returned
    assert stored is not None
    assert (stored.id, stored.command, stored.state, stored.attempts) == \
        ("j1", "echo hi", JobState.PENDING, 0)
    assert (stored.max_retries, stored.priority, stored.timeout) == (5, -3, 2.5)
    assert stored.run_at == at(60)
    assert stored.created_at == stored.updated_at == at(1)
    assert (stored.started_at, stored.finished_at, stored.exit_code, stored.last_error,
            stored.worker_id) == (None, None, None, None, None)


def test_a_job_without_a_timeout_stores_null(store: Store) -> None:
    insert(store, "j1")
    job = store.get_job("j1")
    assert job is not None and job.timeout is None


def test_a_job_keeps_extreme_priorities_and_odd_commands_exactly(store: Store) -> None:
    command = "printf '%s\\n' \"a'b\" ; echo é \u2603 $HOME `x`"
    store.insert_jobs([new_job("lo", command, priority=-(2**63)),
                       new_job("hi", command, priority=2**63 - 1)], T0)
    lo, hi = store.get_job("lo"), store.get_job("hi")
    assert lo is not None and hi is not None
    assert (lo.priority, hi.priority) == (-(2**63), 2**63 - 1)
    assert lo.command == command


def test_getting_an_unknown_job_returns_none(store: Store) -> None:
    assert store.get_job("nope") is None


def test_insert_jobs_returns_the_jobs_in_the_order_given(store: Store) -> None:
    returned = store.insert_jobs([new_job("c"), new_job("a"), new_job("b")], T0)
    assert ids(returned) == ["c", "a", "b"]
    assert all(job.state is JobState.PENDING for job in returned)


def test_inserting_an_existing_id_raises_duplicate_job_and_inserts_nothing(store: Store) -> None:
    insert(store, "a", command="original")
    with pytest.raises(DuplicateJob) as info:
        store.insert_jobs([new_job("b"), new_job("a", "replacement"), new_job("c")], at(5))
    assert "'a'" in info.value.message
    assert info.value.exit_code == 1
    assert store.get_job("b") is None and store.get_job("c") is None
    existing = store.get_job("a")
    assert existing is not None
    assert (existing.command, existing.created_at) == ("original", T0)
    assert ids(store.list_jobs()) == ["a"]


def test_an_id_repeated_within_one_batch_raises_duplicate_job_and_inserts_nothing(store: Store) -> None:
    with pytest.raises(DuplicateJob) as info:
        store.insert_jobs([new_job("x"), new_job("y"), new_job("x")], T0)
    assert "'x'" in info.value.message
    assert store.list_jobs() == []


def test_an_empty_batch_inserts_nothing(store: Store) -> None:
    assert store.insert_jobs([], T0) == []
    assert store.list_jobs() == []


def test_a_large_batch_is_inserted_whole(store: Store) -> None:
    store.insert_jobs([new_job(f"bulk-{n:05d}") for n in range(5000)], T0)
    assert store.count_by_state()[JobState.PENDING] == 5000
    listed = store.list_jobs()
    assert ids(listed) == [f"bulk-{n:05d}" for n in range(5000)]


# --- list and count ---------------------------------------------------------------

def test_list_jobs_is_in_enqueue_order_whatever_the_priority_and_run_at(store: Store) -> None:
    store.insert_jobs([new_job("z", priority=5, run_at=at(-100)), new_job("m", priority=-5)], T0)
    store.insert_jobs([new_job("a", run_at=at(100))], at(1))
    assert ids(store.list_jobs()) == ["z", "m", "a"]


def test_list_jobs_filters_by_state(store: Store) -> None:
    insert(store, "p1", "p2", "p3")
    claim_one(store)  # p1 is now processing
    make_dead(store, "d1")
    assert ids(store.list_jobs(JobState.PENDING)) == ["p2", "p3"]
    assert ids(store.list_jobs(JobState.PROCESSING)) == ["p1"]
    assert ids(store.list_jobs(JobState.DEAD)) == ["d1"]
    assert store.list_jobs(JobState.COMPLETED) == []


def test_list_jobs_returns_at_most_limit_jobs_from_the_oldest(store: Store) -> None:
    insert(store, "a", "b", "c", "d")
    assert ids(store.list_jobs(limit=2)) == ["a", "b"]
    assert ids(store.list_jobs(limit=10)) == ["a", "b", "c", "d"]
    assert store.list_jobs(limit=0) == []
    assert ids(store.list_jobs(JobState.PENDING, limit=3)) == ["a", "b", "c"]


def test_count_by_state_reports_every_state_including_zeros(store: Store) -> None:
    assert store.count_by_state() == {state: 0 for state in JobState}
    insert(store, "a", "b", "c", "d")
    done = claim_one(store, "w1")
    assert finish(store, done, Outcome.completed())
    claim_one(store, "w2")
    make_dead(store, "x")
    failing = claim_one(store, "w3")
    assert finish(store, failing, Outcome.retry_at(at(10), 1, "exit code 1"))
    assert store.count_by_state() == {JobState.PENDING: 1, JobState.PROCESSING: 1,
                                      JobState.COMPLETED: 1, JobState.FAILED: 1, JobState.DEAD: 1}


# --- next_due_at ----------------------------------------------------------------------

def test_next_due_at_is_none_when_nothing_waits(store: Store) -> None:
    assert store.next_due_at() is None
    insert(store, "a")
    assert finish(store, claim_one(store), Outcome.completed())
    assert store.next_due_at() is None


def test_next_due_at_is_the_earliest_run_at_of_pending_or_failed_jobs(store: Store) -> None:
    store.insert_jobs([new_job("later", run_at=at(300)), new_job("soon", run_at=at(120))], T0)
    assert store.next_due_at() == at(120)
    insert(store, "retry", run_at=T0)
    claim = claim_one(store, now=T0)
    assert claim.job.id == "retry"
    assert finish(store, claim, Outcome.retry_at(at(45), 1, "exit code 1"))
    assert store.next_due_at() == at(45)


def test_next_due_at_ignores_processing_completed_and_dead_jobs(store: Store) -> None:
    insert(store, "running", run_at=at(-50))
    claim_one(store)
    make_dead(store, "dead")
    insert(store, "waiting", run_at=at(77))
    assert store.next_due_at() == at(77)


# --- the dead letter queue ------------------------------------------------------------

def test_retrying_a_dead_job_makes_it_pending_and_clears_its_failure(store: Store) -> None:
    make_dead(store, "d1")
    assert store.retry_dead(["d1"], at(600)) == ["d1"]
    job = store.get_job("d1")
    assert job is not None
    assert job.state is JobState.PENDING
    assert job.attempts == 0
    assert job.run_at == at(600)
    assert (job.exit_code, job.last_error) == (None, None)
    assert job.updated_at == at(600)


def test_retry_dead_with_an_unknown_id_raises_not_found_and_changes_nothing(store: Store) -> None:
    make_dead(store, "d1")
    make_dead(store, "d2")
    with pytest.raises(NotFound) as info:
        store.retry_dead(["d1", "missing", "d2"], at(600))
    assert "'missing'" in info.value.message
    assert [store.get_job(i).state for i in ("d1", "d2")] == [JobState.DEAD, JobState.DEAD]  # type: ignore[union-attr]


def test_retry_dead_with_a_job_that_is_not_dead_raises_wrong_state_and_changes_nothing(
        store: Store) -> None:
    make_dead(store, "d1")
    insert(store, "done")
    assert finish(store, claim_one(store), Outcome.completed())
    with pytest.raises(WrongState) as info:
        store.retry_dead(["d1", "done"], at(600))
    assert "'done'" in info.value.message and "completed" in info.value.message
    d1 = store.get_job("d1")
    assert d1 is not None and d1.state is JobState.DEAD and d1.attempts == 1
    assert d1.last_error == "exit code 1"


def test_retry_dead_with_a_pending_job_raises_wrong_state(store: Store) -> None:
    insert(store, "p")
    with pytest.raises(WrongState, match="pending"):
        store.retry_dead(["p"], T0)


def test_retry_dead_of_none_moves_every_dead_job_and_nothing_else(store: Store) -> None:
    make_dead(store, "d1")
    insert(store, "p")
    make_dead(store, "d2")
    assert sorted(store.retry_dead(None, at(60))) == ["d1", "d2"]
    states = {job.id: job.state for job in store.list_jobs()}
    assert states == {"d1": JobState.PENDING, "p": JobState.PENDING, "d2": JobState.PENDING}
    assert store.count_by_state()[JobState.DEAD] == 0


def test_retry_dead_of_none_with_no_dead_jobs_moves_nothing(store: Store) -> None:
    insert(store, "p")
    assert store.retry_dead(None, T0) == []


def test_a_retried_dead_job_can_be_claimed_again_at_once(store: Store) -> None:
    make_dead(store, "d1")
    store.retry_dead(["d1"], at(60))
    claim = claim_one(store, now=at(60))
    assert (claim.job.id, claim.job.attempts) == ("d1", 1)


# --- config ---------------------------------------------------------------------------

def test_config_starts_empty(store: Store) -> None:
    assert store.get_config() == {}


def test_config_values_round_trip_and_overwrite(store: Store) -> None:
    store.set_config("max-retries", "5", T0)
    store.set_config("poll-interval", "0.5", T0)
    assert store.get_config() == {"max-retries": "5", "poll-interval": "0.5"}
    store.set_config("max-retries", "0", at(1))
    assert store.get_config() == {"max-retries": "0", "poll-interval": "0.5"}


# --- persistence ----------------------------------------------------------------------

def test_reopening_the_database_keeps_jobs_attempts_config_and_workers(
        store: Store, store_url: str) -> None:
    store.register_supervisor(supervisor("sup-1"), ["sup-1-w1"])
    store.insert_jobs([new_job("a", "echo a", priority=-2, timeout=9.0), new_job("b")], T0)
    claim = claim_one(store, "sup-1-w1")
    assert finish(store, claim, Outcome.retry_at(at(4), 3, "exit code 3"))
    store.set_config("backoff-base", "3", T0)
    before = store.list_jobs()
    history = store.attempts("a")
    store.close()

    reopened = open_store(store_url)
    try:
        assert reopened.list_jobs() == before
        assert reopened.attempts("a") == history
        assert reopened.get_config() == {"backoff-base": "3"}
        assert [(w.id, w.supervisor.id) for w in reopened.workers()] == [("sup-1-w1", "sup-1")]
        # The reopened store carries on where the old one stopped.
        again = claim_one(reopened, "sup-1-w1", now=at(4))
        assert (again.job.id, again.job.attempts, again.attempt) == ("a", 2, 2)
    finally:
        reopened.close()


def test_two_stores_on_one_database_see_each_others_writes(store: Store, store_url: str) -> None:
    other = open_store(store_url)
    try:
        insert(store, "a")
        assert ids(other.list_jobs()) == ["a"]
        claim = claim_one(other, "w-other")
        assert finish(other, claim, Outcome.completed())
        job = store.get_job("a")
        assert job is not None and job.state is JobState.COMPLETED
        other.set_config("max-retries", "9", T0)
        assert store.get_config() == {"max-retries": "9"}
    finally:
        other.close()


def test_times_are_kept_to_the_millisecond_and_the_returned_record_matches_the_stored_one(
        store: Store) -> None:
    precise_now = T0 + timedelta(microseconds=123_456)
    [returned] = store.insert_jobs([new_job("j", run_at=T0 + timedelta(microseconds=987_654))],
                                   precise_now)
    stored = store.get_job("j")
    assert stored == returned
    assert stored is not None
    assert stored.created_at == T0 + timedelta(milliseconds=123)
    assert stored.run_at == T0 + timedelta(milliseconds=987)
