"""Store conformance: claiming due jobs, finishing attempts, fencing, attempt history.

Every test takes the ``store`` fixture, so it runs on every backend."""

from __future__ import annotations

from datetime import timedelta

from queuectl.config import Config
from queuectl.lifecycle import AttemptResult, Outcome, decide
from queuectl.model import JobState
from queuectl.store import Store

from .support import LEASE, T0, at, claim_one, finish, insert, new_job


def claimed_ids(store: Store, now=T0, workers: int = 1) -> list[str]:
    return [c.job.id for c in store.claim([f"w{n}" for n in range(workers)], now, LEASE)]


# --- what is claimed, and in what order -------------------------------------------------

def test_claims_go_by_priority_then_run_at_then_enqueue_order(store: Store) -> None:
    store.insert_jobs([
        new_job("p0-late", run_at=at(-10)),
        new_job("p5", priority=5, run_at=at(-100)),
        new_job("p0-early-first", run_at=at(-50)),
        new_job("p0-early-second", run_at=at(-50)),
        new_job("pneg", priority=-1, run_at=at(-1)),
    ], T0)
    store.insert_jobs([new_job("p0-early-third", run_at=at(-50))], at(1))
    order = [claim_one(store, f"w{n}", now=at(2)).job.id for n in range(6)]
    assert order == ["pneg", "p0-early-first", "p0-early-second", "p0-early-third", "p0-late", "p5"]
    assert store.claim(["w9"], at(2), LEASE) == []


def test_a_batch_claim_hands_out_jobs_in_the_same_order(store: Store) -> None:
    store.insert_jobs([new_job("c", priority=3), new_job("a", priority=1), new_job("b", priority=2)], T0)
    claims = store.claim(["w1", "w2", "w3"], T0, LEASE)
    assert [c.job.id for c in claims] == ["a", "b", "c"]


def test_a_job_is_not_claimed_before_its_run_at(store: Store) -> None:
    insert(store, "later", run_at=at(60))
    assert claimed_ids(store, now=at(59.999)) == []
    assert claimed_ids(store, now=at(60)) == ["later"]


def test_a_future_job_does_not_block_due_jobs_of_lower_priority(store: Store) -> None:
    store.insert_jobs([new_job("urgent-later", priority=-10, run_at=at(60)),
                       new_job("normal-now", priority=0)], T0)
    assert claimed_ids(store, now=T0) == ["normal-now"]


def test_a_failed_job_is_claimed_only_once_its_retry_is_due(store: Store) -> None:
    insert(store, "flaky")
    assert finish(store, claim_one(store), Outcome.retry_at(at(10), 1, "exit code 1"))
    assert claimed_ids(store, now=at(9)) == []
    claim = claim_one(store, "w2", now=at(10))
    assert (claim.job.id, claim.job.attempts, claim.attempt) == ("flaky", 2, 2)


def test_jobs_in_processing_completed_or_dead_state_are_never_claimed(store: Store) -> None:
    store.insert_jobs([new_job("a"), new_job("b"), new_job("c")], T0)
    claim_one(store, "w1")  # a: processing
    assert finish(store, claim_one(store, "w2"), Outcome.completed())  # b: completed
    assert finish(store, claim_one(store, "w3"), Outcome.dead(1, "exit code 1"))  # c: dead
    assert store.claim(["w4", "w5"], at(3600), LEASE) == []


def test_claiming_from_an_empty_queue_returns_nothing(store: Store) -> None:
    assert store.claim(["w1", "w2"], T0, LEASE) == []


# --- what a claim records -------------------------------------------------------------

def test_a_claim_counts_the_attempt_and_marks_the_job_processing_by_that_worker(store: Store) -> None:
    insert(store, "j", now=at(-5))
    claim = claim_one(store, "worker-7", now=T0)
    assert claim.worker_id == "worker-7"
    assert claim.attempt == 1
    assert isinstance(claim.token, str) and len(claim.token) >= 16
    for job in (claim.job, store.get_job("j")):
        assert job is not None
        assert job.state is JobState.PROCESSING
        assert job.attempts == 1
        assert job.worker_id == "worker-7"
        assert job.started_at == T0
        assert job.finished_at is None
        assert job.updated_at == T0
    [attempt] = store.attempts("j")
    assert (attempt.job_id, attempt.number, attempt.worker_id, attempt.started_at) == \
        ("j", 1, "worker-7", T0)
    assert (attempt.finished_at, attempt.exit_code, attempt.error) == (None, None, None)


def test_a_claim_takes_at_most_one_job_per_worker_id(store: Store) -> None:
    insert(store, "a", "b", "c", "d", "e")
    first = store.claim(["w1", "w2", "w3"], T0, LEASE)
    assert [c.job.id for c in first] == ["a", "b", "c"]
    assert [c.worker_id for c in first] == ["w1", "w2", "w3"]
    assert [c.job.worker_id for c in first] == ["w1", "w2", "w3"]
    assert len({c.token for c in first}) == 3
    second = store.claim(["w4", "w5", "w6"], T0, LEASE)
    assert [c.job.id for c in second] == ["d", "e"]
    assert store.count_by_state()[JobState.PROCESSING] == 5


def test_every_claim_gets_a_new_token(store: Store) -> None:
    insert(store, "j")
    first = claim_one(store)
    assert finish(store, first, Outcome.retry_at(T0, 1, "exit code 1"))
    second = claim_one(store)
    assert second.token != first.token


def test_the_lease_runs_until_now_plus_the_lease_seconds(store: Store) -> None:
    insert(store, "j")
    claim = store.claim(["w1"], T0, 12.5)[0]
    [held] = store.held_jobs()
    assert held.claim.token == claim.token
    assert held.lease_expires_at == T0 + timedelta(seconds=12.5)


# --- finishing an attempt -----------------------------------------------------------------

def test_finishing_with_success_completes_the_job_and_its_attempt(store: Store) -> None:
    insert(store, "j")
    claim = claim_one(store)
    assert store.finish_attempt("j", claim.token, claim.attempt, Outcome.completed(), at(3),
                                stdout_path="/logs/j/1.stdout", stderr_path="/logs/j/1.stderr")
    job = store.get_job("j")
    assert job is not None
    assert (job.state, job.exit_code, job.last_error) == (JobState.COMPLETED, 0, None)
    assert (job.finished_at, job.updated_at, job.attempts) == (at(3), at(3), 1)
    [attempt] = store.attempts("j")
    assert (attempt.finished_at, attempt.exit_code, attempt.error) == (at(3), 0, None)
    assert (attempt.stdout_path, attempt.stderr_path) == ("/logs/j/1.stdout", "/logs/j/1.stderr")


def test_finishing_with_a_retry_makes_the_job_failed_until_the_retry_time(store: Store) -> None:
    insert(store, "j")
    claim = claim_one(store)
    assert finish(store, claim, Outcome.retry_at(at(4), 3, "exit code 3"), now=at(2))
    job = store.get_job("j")
    assert job is not None
    assert (job.state, job.run_at, job.exit_code, job.last_error, job.attempts) == \
        (JobState.FAILED, at(4), 3, "exit code 3", 1)
    assert job.finished_at == at(2)
    [attempt] = store.attempts("j")
    assert (attempt.exit_code, attempt.error, attempt.finished_at) == (3, "exit code 3", at(2))


def test_finishing_as_dead_puts_the_job_in_the_dead_letter_queue(store: Store) -> None:
    insert(store, "j", max_retries=0)
    claim = claim_one(store)
    assert finish(store, claim, Outcome.dead(137, "killed by signal 9"), now=at(1))
    job = store.get_job("j")
    assert job is not None
    assert (job.state, job.exit_code, job.last_error) == (JobState.DEAD, 137, "killed by signal 9")
    assert [j.id for j in store.list_jobs(JobState.DEAD)] == ["j"]


def test_finishing_with_a_wrong_token_changes_nothing(store: Store) -> None:
    insert(store, "j")
    claim = claim_one(store)
    before = (store.get_job("j"), store.attempts("j"))
    assert store.finish_attempt("j", "not-the-token", claim.attempt, Outcome.completed(), at(1)) is False
    assert (store.get_job("j"), store.attempts("j")) == before


def test_finishing_an_unknown_job_returns_false(store: Store) -> None:
    assert store.finish_attempt("ghost", "token", 1, Outcome.completed(), T0) is False


def test_finishing_the_same_attempt_twice_applies_only_the_first_time(store: Store) -> None:
    insert(store, "j")
    claim = claim_one(store)
    assert finish(store, claim, Outcome.retry_at(at(100), 1, "exit code 1"), now=at(1))
    assert finish(store, claim, Outcome.completed(), now=at(2)) is False
    job = store.get_job("j")
    assert job is not None and job.state is JobState.FAILED and job.last_error == "exit code 1"


def test_a_presumed_dead_worker_cannot_overwrite_the_attempt_that_replaced_it(store: Store) -> None:
    """Fencing: recovery ends the lost attempt and the job is claimed again; the old
    worker's late result must not be written over the new attempt."""
    insert(store, "j")
    old = claim_one(store, "slow-worker", now=T0)
    config = Config.from_stored({})
    # Recovery, after the lease expired, as the maintenance code does it.
    lost = decide(old.job.attempts, old.job.max_retries, AttemptResult(lost=True), config, at(31))
    assert store.finish_attempt("j", old.token, old.attempt, lost, at(31))
    new = claim_one(store, "fresh-worker", now=at(33))
    assert new.attempt == 2 and new.token != old.token

    assert store.finish_attempt("j", old.token, old.attempt, Outcome.completed(), at(34)) is False
    job = store.get_job("j")
    assert job is not None
    assert (job.state, job.worker_id, job.attempts) == (JobState.PROCESSING, "fresh-worker", 2)
    first, second = store.attempts("j")
    assert (first.number, first.error, first.finished_at) == (1, "worker lost", at(31))
    assert (second.number, second.worker_id, second.finished_at) == (2, "fresh-worker", None)

    assert store.finish_attempt("j", new.token, new.attempt, Outcome.dead(2, "exit code 2"), at(35))
    job = store.get_job("j")
    assert job is not None and (job.state, job.exit_code) == (JobState.DEAD, 2)
    assert [a.error for a in store.attempts("j")] == ["worker lost", "exit code 2"]


def test_an_interrupted_attempt_returns_the_job_to_pending_uncounted(store: Store) -> None:
    insert(store, "j")
    claim = claim_one(store, now=at(1))
    assert finish(store, claim, Outcome.interrupted(), now=at(2))
    job = store.get_job("j")
    assert job is not None
    assert (job.state, job.attempts, job.finished_at) == (JobState.PENDING, 0, None)
    assert (job.started_at, job.worker_id, job.exit_code, job.last_error) == (None, None, None, None)
    # The attempt stays in the history (its number and log files are never reused) ...
    [attempt] = store.attempts("j")
    assert (attempt.number, attempt.finished_at) == (1, at(2))
    assert attempt.error == "interrupted by worker shutdown"
    # ... and the job is due again at once, under a new attempt number.
    again = claim_one(store, "w2", now=at(3))
    assert (again.job.id, again.job.attempts, again.attempt) == ("j", 1, 2)


def test_an_interrupted_retry_keeps_the_jobs_earlier_result_and_counted_attempts(store: Store) -> None:
    insert(store, "j")
    assert finish(store, claim_one(store), Outcome.retry_at(at(1), 1, "exit code 1"))
    second = claim_one(store, now=at(1))
    assert finish(store, second, Outcome.interrupted(), now=at(2))
    job = store.get_job("j")
    assert job is not None
    assert (job.state, job.attempts, job.exit_code, job.last_error) == \
        (JobState.PENDING, 1, 1, "exit code 1")
    assert [a.number for a in store.attempts("j")] == [1, 2]
    third = claim_one(store, now=at(3))
    assert (third.job.attempts, third.attempt) == (2, 3)


def test_attempt_numbers_keep_increasing_across_a_dlq_retry(store: Store) -> None:
    insert(store, "j", max_retries=1)
    assert finish(store, claim_one(store), Outcome.retry_at(at(1), 1, "exit code 1"))
    assert finish(store, claim_one(store, now=at(1)), Outcome.dead(1, "exit code 1"), now=at(1))
    assert store.retry_dead(["j"], at(5)) == ["j"]
    third = claim_one(store, now=at(5))
    assert (third.job.attempts, third.attempt) == (1, 3)
    assert finish(store, third, Outcome.completed(), now=at(6))
    history = store.attempts("j")
    assert [a.number for a in history] == [1, 2, 3]
    assert [a.error for a in history] == ["exit code 1", "exit code 1", None]
    assert [a.exit_code for a in history] == [1, 1, 0]


def test_extreme_priorities_are_claimed_in_numeric_order(store: Store) -> None:
    store.insert_jobs([new_job("max", priority=2**63 - 1), new_job("zero"),
                       new_job("min", priority=-(2**63)), new_job("minus-one", priority=-1)], T0)
    order = [c.job.id for c in store.claim(["w1", "w2", "w3", "w4"], T0, LEASE)]
    assert order == ["min", "minus-one", "zero", "max"]


def test_a_claim_with_no_worker_ids_claims_nothing(store: Store) -> None:
    insert(store, "j")
    assert store.claim([], T0, LEASE) == []
    job = store.get_job("j")
    assert job is not None and job.state is JobState.PENDING and job.attempts == 0


def test_a_retry_that_succeeds_clears_the_previous_error(store: Store) -> None:
    insert(store, "j")
    assert finish(store, claim_one(store), Outcome.retry_at(at(2), 3, "exit code 3"))
    again = claim_one(store, now=at(2))
    job = store.get_job("j")
    assert job is not None and job.finished_at is None and job.started_at == at(2)
    assert finish(store, again, Outcome.completed(), now=at(3))
    job = store.get_job("j")
    assert job is not None
    assert (job.state, job.exit_code, job.last_error, job.attempts) == (JobState.COMPLETED, 0, None, 2)


def test_stored_output_tails_are_either_kept_exactly_or_not_kept_at_all(store: Store) -> None:
    insert(store, "j")
    claim = claim_one(store)
    assert store.finish_attempt("j", claim.token, claim.attempt, Outcome.completed(), at(1),
                                stdout_tail=b"last line\n", stderr_tail=b"\xffwarn\n")
    assert store.attempt_output("j", claim.attempt, "stdout") in (None, b"last line\n")
    assert store.attempt_output("j", claim.attempt, "stderr") in (None, b"\xffwarn\n")
    assert store.attempt_output("j", 99, "stdout") is None
