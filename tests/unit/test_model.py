"""The records queuectl hands out, and that the job states match the database schema."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

import queuectl
from queuectl.model import UNFINISHED_STATES, WAITING_STATES, Job, JobState

MIGRATIONS = Path(queuectl.__file__).parent / "store" / "migrations"

CONTRACT_FIELDS = ["id", "command", "state", "attempts", "max_retries", "priority", "run_at",
                   "timeout", "created_at", "updated_at", "started_at", "finished_at",
                   "exit_code", "last_error", "worker_id"]


def check_constraint_states(sql: str) -> list[str]:
    match = re.search(r"CHECK\s*\(\s*state\s+IN\s*\(([^)]*)\)\s*\)", sql, re.IGNORECASE)
    assert match, "no CHECK (state IN (...)) constraint found"
    return re.findall(r"'([^']*)'", match.group(1))


def test_job_states_equal_the_check_constraint_of_the_sqlite_schema() -> None:
    sql = (MIGRATIONS / "sqlite" / "001_initial.sql").read_text()
    states = check_constraint_states(sql)
    assert len(states) == len(set(states))
    assert set(states) == {state.value for state in JobState}


def test_job_states_equal_the_check_constraint_of_the_postgres_schema() -> None:
    sql = (MIGRATIONS / "postgres" / "001_initial.sql").read_text()
    assert set(check_constraint_states(sql)) == {state.value for state in JobState}


def test_job_states_are_the_five_documented_names() -> None:
    assert [state.value for state in JobState] == ["pending", "processing", "completed", "failed",
                                                   "dead"]
    assert str(JobState.DEAD) == "dead"


def test_waiting_and_unfinished_state_groups() -> None:
    assert set(WAITING_STATES) == {JobState.PENDING, JobState.FAILED}
    assert set(UNFINISHED_STATES) == {JobState.PENDING, JobState.FAILED, JobState.PROCESSING}


def make_job(**changes: object) -> Job:
    fields: dict[str, object] = dict(
        id="j1", command="echo hi", state=JobState.FAILED, attempts=2, max_retries=3, priority=-1,
        run_at=datetime(2026, 1, 1, 0, 0, 4, 500_000, tzinfo=timezone.utc), timeout=2.5,
        created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        updated_at=datetime(2026, 1, 1, 0, 0, 2, tzinfo=timezone.utc),
        started_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc), finished_at=None,
        exit_code=3, last_error="exit code 3", worker_id="w-1")
    fields.update(changes)
    return Job(**fields)  # type: ignore[arg-type]


def test_a_jobs_json_form_has_every_contract_field_in_order() -> None:
    assert list(make_job().to_dict()) == CONTRACT_FIELDS


def test_a_jobs_json_form_writes_times_as_iso_utc_and_unset_ones_as_null() -> None:
    data = make_job().to_dict()
    assert data["state"] == "failed"
    assert data["run_at"] == "2026-01-01T00:00:04.500Z"
    assert data["created_at"] == "2026-01-01T00:00:00.000Z"
    assert data["finished_at"] is None
    assert (data["attempts"], data["max_retries"], data["priority"], data["timeout"]) == (2, 3, -1, 2.5)


def test_a_job_record_is_immutable() -> None:
    with pytest.raises(AttributeError):
        make_job().state = JobState.DEAD  # type: ignore[misc]
