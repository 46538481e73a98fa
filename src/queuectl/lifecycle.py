"""The job state machine and every decision about an attempt's outcome.

Pure functions, no I/O: the worker, lost-job recovery and ``dlq retry`` all
decide here and the store only applies what was decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from .config import Config
from .model import JobState

P, R, C, F, D = (JobState.PENDING, JobState.PROCESSING, JobState.COMPLETED,
                 JobState.FAILED, JobState.DEAD)

#: Every allowed move. Anything else is a bug or a stale writer.
TRANSITIONS: frozenset[tuple[JobState, JobState]] = frozenset({
    (P, R),  # a worker claims a due job
    (F, R),  # a worker claims a retry that fell due
    (R, C),  # the attempt succeeded
    (R, F),  # the attempt failed and retries remain
    (R, D),  # the attempt failed and retries are exhausted
    (R, P),  # a force-stopped attempt is handed back, not counted
    (D, P),  # dlq retry
})


def can_move(old: JobState, new: JobState) -> bool:
    return (old, new) in TRANSITIONS


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds before retrying after failed attempt number ``attempts``:
    ``min(base ** attempts, cap)``, computed without overflowing."""
    if attempts <= 0 or cap <= 0:
        return 0.0
    if attempts * math.log(base) >= math.log(cap):  # base ** attempts may not fit a float
        return float(cap)
    return float(base**attempts)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What happened to one execution, as seen by the runner (or by recovery)."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out_after: float | None = None
    start_error: str | None = None
    interrupted: bool = False  # the supervisor force-stopped it
    lost: bool = False  # its worker vanished
    log_error: str | None = None  # the output could not be saved (the result still counts)

    @property
    def succeeded(self) -> bool:
        return (self.exit_code == 0 and self.signal is None and self.timed_out_after is None
                and self.start_error is None and not self.interrupted and not self.lost)

    def describe(self) -> str | None:
        """The one-line ``last_error``, or None on success."""
        if self.lost:
            return "worker lost"
        if self.interrupted:
            return "interrupted by worker shutdown"
        if self.start_error is not None:
            return f"cannot start: {self.start_error}"
        if self.timed_out_after is not None:
            return f"timed out after {format_seconds(self.timed_out_after)}"
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        if self.exit_code:
            hint = EXIT_HINTS.get(self.exit_code)
            return f"exit code {self.exit_code}" + (f" ({hint})" if hint else "")
        return None

    @property
    def recorded_exit_code(self) -> int | None:
        """The exit status as a shell reports it: 128 + N for death by signal N."""
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code


#: What the shell's own exit codes mean.
EXIT_HINTS = {126: "command not executable", 127: "command not found"}


def format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the store writes when an attempt ends. Build with the named constructors."""

    state: JobState
    run_at: datetime | None = None  # only for FAILED: when the retry is due
    exit_code: int | None = None
    error: str | None = None
    counts: bool = True  # False: the attempt is handed back and not counted

    @classmethod
    def completed(cls, exit_code: int = 0) -> "Outcome":
        return cls(JobState.COMPLETED, exit_code=exit_code)

    @classmethod
    def retry_at(cls, when: datetime, exit_code: int | None, error: str) -> "Outcome":
        return cls(JobState.FAILED, run_at=when, exit_code=exit_code, error=error)

    @classmethod
    def dead(cls, exit_code: int | None, error: str) -> "Outcome":
        return cls(JobState.DEAD, exit_code=exit_code, error=error)

    @classmethod
    def interrupted(cls) -> "Outcome":
        """Handed back uncounted: the job's own exit_code and last_error stay as they were;
        ``error`` is recorded on the attempt only."""
        return cls(JobState.PENDING, error="interrupted by worker shutdown", counts=False)


def decide(attempts: int, max_retries: int, result: AttemptResult, config: Config,
           now: datetime) -> Outcome:
    """The outcome of attempt number ``attempts`` (1-based, already counted at claim).

    A failed attempt k is retried at ``now + min(backoff_base ** k, max_backoff)``
    while ``k <= max_retries``; after that the job is dead.
    """
    if result.interrupted:
        return Outcome.interrupted()
    if result.succeeded:
        return Outcome(JobState.COMPLETED, exit_code=0, error=result.log_error)
    error = result.describe() or "failed"
    if result.log_error:
        error = f"{error}; {result.log_error}"
    exit_code = result.recorded_exit_code
    if attempts <= max_retries:
        delay = backoff_delay(attempts, config.backoff_base, config.max_backoff)
        return Outcome.retry_at(now + timedelta(seconds=delay), exit_code, error)
    return Outcome.dead(exit_code, error)
