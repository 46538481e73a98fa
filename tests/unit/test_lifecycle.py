"""The job state machine: retry delays, attempt outcomes and the allowed moves."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuectl.config import MAX_SECONDS, Config
from queuectl.lifecycle import (
    TRANSITIONS,
    AttemptResult,
    Outcome,
    backoff_delay,
    can_move,
    decide,
)
from queuectl.model import JobState

NOW = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc)
DEFAULTS = Config.from_stored({})

P, R, C, F, D = (JobState.PENDING, JobState.PROCESSING, JobState.COMPLETED, JobState.FAILED,
                 JobState.DEAD)


def config(**changes: float) -> Config:
    return dataclasses.replace(DEFAULTS, **changes)


# --- backoff_delay --------------------------------------------------------------

@pytest.mark.parametrize(("attempts", "expected"), [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0),
                                                    (10, 1024.0)])
def test_backoff_with_base_two_doubles_with_each_failed_attempt(attempts: int, expected: float) -> None:
    assert backoff_delay(attempts, 2, 3600) == expected


@pytest.mark.parametrize(("attempts", "expected"), [(1, 3.0), (2, 9.0), (3, 10.0), (50, 10.0)])
def test_backoff_is_capped_at_max_backoff(attempts: int, expected: float) -> None:
    assert backoff_delay(attempts, 3, 10) == expected


def test_backoff_with_a_cap_of_zero_retries_at_once() -> None:
    assert [backoff_delay(k, 2, 0) for k in (1, 2, 3, 100)] == [0.0, 0.0, 0.0, 0.0]


def test_backoff_with_a_huge_attempt_count_returns_the_cap_without_overflowing() -> None:
    assert backoff_delay(10**9, 2, 3600) == 3600.0
    assert backoff_delay(10**6, 2.5, MAX_SECONDS) == float(MAX_SECONDS)
    assert backoff_delay(2000, 10.0, 1e300) == 1e300


def test_backoff_with_base_one_waits_one_second_every_time() -> None:
    assert [backoff_delay(k, 1, 3600) for k in (1, 2, 3, 1000)] == [1.0, 1.0, 1.0, 1.0]


def test_backoff_with_base_one_still_respects_a_cap_below_one_second() -> None:
    assert backoff_delay(5, 1, 0.5) == 0.5


def test_backoff_with_a_fractional_base_grows_by_that_factor() -> None:
    assert backoff_delay(2, 1.5, 3600) == pytest.approx(2.25)


def test_backoff_for_attempt_zero_is_no_delay() -> None:
    assert backoff_delay(0, 2, 3600) == 0.0


@given(base=st.floats(min_value=1, max_value=1000, allow_nan=False),
       cap=st.floats(min_value=0, max_value=MAX_SECONDS, allow_nan=False),
       attempts=st.integers(min_value=1, max_value=10_000))
def test_backoff_never_decreases_with_more_attempts_and_never_exceeds_the_cap(
        base: float, cap: float, attempts: int) -> None:
    delay = backoff_delay(attempts, base, cap)
    following = backoff_delay(attempts + 1, base, cap)
    assert 0 <= delay <= cap
    assert following >= delay
    assert math.isfinite(delay)


@given(base=st.integers(min_value=1, max_value=10), cap=st.integers(min_value=1, max_value=10**6),
       attempts=st.integers(min_value=1, max_value=40))
def test_backoff_equals_min_of_base_to_the_attempts_and_cap_for_whole_numbers(
        base: int, cap: int, attempts: int) -> None:
    assert backoff_delay(attempts, base, cap) == min(base**attempts, cap)


# --- decide ---------------------------------------------------------------------

def test_a_zero_exit_code_completes_the_job() -> None:
    outcome = decide(1, 3, AttemptResult(exit_code=0), DEFAULTS, NOW)
    assert outcome == Outcome(JobState.COMPLETED, run_at=None, exit_code=0, error=None, counts=True)


def test_a_success_after_earlier_failures_still_completes() -> None:
    outcome = decide(4, 3, AttemptResult(exit_code=0), DEFAULTS, NOW)
    assert outcome.state is JobState.COMPLETED


@pytest.mark.parametrize(("attempts", "delay"), [(1, 2), (2, 4), (3, 8)])
def test_a_failure_with_retries_left_is_retried_after_the_backoff_delay(attempts: int, delay: int) -> None:
    outcome = decide(attempts, 3, AttemptResult(exit_code=3), DEFAULTS, NOW)
    assert outcome.state is JobState.FAILED
    assert outcome.run_at == NOW + timedelta(seconds=delay)
    assert outcome.exit_code == 3
    assert outcome.error == "exit code 3"
    assert outcome.counts is True


def test_the_retry_delay_uses_the_backoff_config_given_at_decision_time() -> None:
    outcome = decide(2, 5, AttemptResult(exit_code=1), config(backoff_base=3, max_backoff=5), NOW)
    assert outcome.run_at == NOW + timedelta(seconds=5)
    outcome = decide(1, 5, AttemptResult(exit_code=1), config(backoff_base=3, max_backoff=5), NOW)
    assert outcome.run_at == NOW + timedelta(seconds=3)


def test_a_max_backoff_of_zero_makes_the_retry_due_immediately() -> None:
    outcome = decide(1, 3, AttemptResult(exit_code=1), config(max_backoff=0), NOW)
    assert outcome.state is JobState.FAILED
    assert outcome.run_at == NOW


def test_a_failure_of_the_last_allowed_attempt_makes_the_job_dead() -> None:
    outcome = decide(4, 3, AttemptResult(exit_code=3), DEFAULTS, NOW)
    assert outcome == Outcome(JobState.DEAD, run_at=None, exit_code=3, error="exit code 3")


def test_a_job_with_no_retries_is_dead_after_its_first_failure() -> None:
    assert decide(1, 0, AttemptResult(exit_code=1), DEFAULTS, NOW).state is JobState.DEAD


@pytest.mark.parametrize("max_retries", [0, 1, 2, 3, 7])
def test_a_job_that_always_fails_runs_exactly_one_plus_max_retries_times(max_retries: int) -> None:
    runs = 0
    state = JobState.PENDING
    while state is not JobState.DEAD:
        runs += 1
        assert runs <= 100
        state = decide(runs, max_retries, AttemptResult(exit_code=1), DEFAULTS, NOW).state
        assert state in (JobState.FAILED, JobState.DEAD)
    assert runs == 1 + max_retries


def test_an_interrupted_attempt_goes_back_to_pending_without_counting() -> None:
    outcome = decide(2, 3, AttemptResult(interrupted=True, signal=15), DEFAULTS, NOW)
    assert outcome == Outcome.interrupted()
    assert outcome.state is JobState.PENDING
    assert outcome.counts is False
    assert outcome.run_at is None


def test_an_interrupted_final_attempt_is_still_not_dead() -> None:
    assert decide(4, 3, AttemptResult(interrupted=True), DEFAULTS, NOW).state is JobState.PENDING


def test_a_lost_worker_is_a_counted_failure_recorded_as_worker_lost() -> None:
    outcome = decide(1, 3, AttemptResult(lost=True), DEFAULTS, NOW)
    assert outcome.state is JobState.FAILED
    assert outcome.error == "worker lost"
    assert outcome.exit_code is None
    assert outcome.run_at == NOW + timedelta(seconds=2)
    assert outcome.counts is True


def test_a_lost_worker_on_the_last_attempt_sends_the_job_to_the_dead_letter_queue() -> None:
    outcome = decide(2, 1, AttemptResult(lost=True), DEFAULTS, NOW)
    assert (outcome.state, outcome.error) == (JobState.DEAD, "worker lost")


def test_a_timeout_is_recorded_as_timed_out_after_the_limit() -> None:
    outcome = decide(1, 3, AttemptResult(timed_out_after=2.0, signal=15), DEFAULTS, NOW)
    assert outcome.state is JobState.FAILED
    assert outcome.error == "timed out after 2s"


def test_a_fractional_timeout_is_written_without_trailing_zeros() -> None:
    outcome = decide(1, 0, AttemptResult(timed_out_after=0.5, signal=9), DEFAULTS, NOW)
    assert outcome.error == "timed out after 0.5s"


def test_death_by_signal_is_recorded_as_killed_by_signal_with_the_shell_exit_code() -> None:
    outcome = decide(1, 3, AttemptResult(signal=9), DEFAULTS, NOW)
    assert outcome.error == "killed by signal 9"
    assert outcome.exit_code == 137
    assert outcome.state is JobState.FAILED


def test_a_missing_program_exit_127_is_a_failure_naming_command_not_found() -> None:
    outcome = decide(1, 0, AttemptResult(exit_code=127), DEFAULTS, NOW)
    assert outcome.state is JobState.DEAD
    assert outcome.exit_code == 127
    assert outcome.error == "exit code 127 (command not found)"


def test_exit_126_is_explained_as_not_executable() -> None:
    assert decide(1, 0, AttemptResult(exit_code=126), DEFAULTS, NOW).error == \
        "exit code 126 (command not executable)"


def test_a_command_that_cannot_start_is_a_failure_with_the_reason() -> None:
    outcome = decide(1, 0, AttemptResult(start_error="no such file: /bin/sh"), DEFAULTS, NOW)
    assert outcome.state is JobState.DEAD
    assert outcome.error == "cannot start: no such file: /bin/sh"
    assert outcome.exit_code is None


def test_a_log_error_is_kept_on_success_and_appended_on_failure() -> None:
    ok = decide(1, 3, AttemptResult(exit_code=0, log_error="log disk full"), DEFAULTS, NOW)
    assert (ok.state, ok.error) == (JobState.COMPLETED, "log disk full")
    bad = decide(1, 3, AttemptResult(exit_code=2, log_error="log disk full"), DEFAULTS, NOW)
    assert (bad.state, bad.error) == (JobState.FAILED, "exit code 2; log disk full")


def test_every_last_error_is_a_single_line() -> None:
    results = [AttemptResult(exit_code=3), AttemptResult(signal=9), AttemptResult(lost=True),
               AttemptResult(timed_out_after=2), AttemptResult(start_error="boom"),
               AttemptResult(exit_code=127)]
    for result in results:
        error = decide(1, 0, result, DEFAULTS, NOW).error
        assert error and "\n" not in error


# --- transitions ----------------------------------------------------------------

def test_completed_is_a_final_state() -> None:
    assert not [move for move in TRANSITIONS if move[0] is C]
    assert not any(can_move(C, state) for state in JobState)


def test_only_pending_and_failed_jobs_can_be_claimed() -> None:
    assert {old for old, new in TRANSITIONS if new is R} == {P, F}


def test_a_processing_job_can_end_in_every_outcome() -> None:
    assert {new for old, new in TRANSITIONS if old is R} == {C, F, D, P}


def test_a_dead_job_can_only_be_sent_back_to_pending() -> None:
    assert {new for old, new in TRANSITIONS if old is D} == {P}


def test_no_state_moves_to_itself() -> None:
    assert all(old is not new for old, new in TRANSITIONS)


def test_a_waiting_job_cannot_skip_processing() -> None:
    for waiting in (P, F):
        for target in (C, F, D):
            if target is not waiting:
                assert not can_move(waiting, target), (waiting, target)
    assert not can_move(P, F)


def test_every_state_is_reachable_from_pending() -> None:
    reached = {P}
    frontier = [P]
    while frontier:
        current = frontier.pop()
        for old, new in TRANSITIONS:
            if old is current and new not in reached:
                reached.add(new)
                frontier.append(new)
    assert reached == set(JobState)


def test_every_decided_outcome_is_an_allowed_move_from_processing() -> None:
    results = [AttemptResult(exit_code=0), AttemptResult(exit_code=1), AttemptResult(lost=True),
               AttemptResult(interrupted=True)]
    for attempts in (1, 4):
        for result in results:
            assert can_move(R, decide(attempts, 3, result, DEFAULTS, NOW).state)
