"""Crash points: the process SIGKILLs itself at a named point (QUEUECTL_CRASH_AT);
afterwards the queue recovers with nothing lost, nothing run twice at once, and
batches all or nothing. QUEUECTL_CRASH_RUNS sets the runs per point (the issue's: 20)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import QUEUECTL, Cli

RUNS = int(os.environ.get("QUEUECTL_CRASH_RUNS", "2"))
WORKER_POINTS = ["after-claim", "after-spawn", "before-result", "in-result-transaction"]


def crashed(cli: Cli, point: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([QUEUECTL, *args], input=input, capture_output=True, text=True,
                            env={**cli.env, "QUEUECTL_CRASH_AT": point}, timeout=60)
    assert result.returncode == -9, (point, result.returncode, result.stderr[-500:])
    return result


def integrity_ok(cli: Cli) -> None:
    if cli.is_sqlite:
        with sqlite3.connect(cli.db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("point", WORKER_POINTS)
def test_a_worker_killed_at_each_point_of_an_attempt_loses_nothing_and_never_overlaps(
        cli: Cli, tmp_path: Path, point: str) -> None:
    journal, locks = tmp_path / "journal", tmp_path / "locks"
    locks.mkdir()
    cli.config(**{"lease-timeout": 2, "max-backoff": 0, "max-retries": 2 * RUNS + 2})
    command = (f'exec 9>"{locks}/$QUEUECTL_JOB_ID"; '
               f'if ! flock -n 9; then echo overlap >> "{journal}"; exit 1; fi; '
               f'echo "start $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT" >> "{journal}"; sleep 0.1')
    cli.ok("enqueue", "--file", "-", input="".join(
        json.dumps({"id": f"j{n}", "command": command}) + "\n" for n in range(4)))
    for _ in range(RUNS):
        crashed(cli, point, "worker", "start", "--count", "2")
    assert cli.run_until_empty("--count", "2").returncode == 0
    jobs = cli.json("list")
    assert [j["state"] for j in jobs] == ["completed"] * 4
    events = [line.split() for line in journal.read_text().splitlines()]
    assert not [e for e in events if e[0] == "overlap"]
    starts = Counter((e[1], e[2]) for e in events)
    assert all(n == 1 for n in starts.values()), starts  # no attempt number ran twice
    for job in jobs:
        history = cli.job(job["id"])["history"]
        assert len({a["attempt"] for a in history}) == len(history)
        for attempt in history:  # an attempt that ended normally really ran
            if attempt["error"] != "worker lost":
                assert (job["id"], str(attempt["attempt"])) in starts, (job["id"], attempt)
    integrity_ok(cli)


def test_a_bulk_enqueue_killed_midway_enqueues_nothing(cli: Cli) -> None:
    batch = "".join(json.dumps({"command": "true"}) + "\n" for _ in range(2000))
    for run in range(RUNS):
        row = 1 + (500 + run * 997) % 2000  # somewhere inside the 2,000-row batch
        result = crashed(cli, f"enqueue-row:{row}", "enqueue", "--file", "-", input=batch)
        assert result.stdout == ""  # no id was printed, so none may exist
        assert sum(cli.json("status")["jobs"].values()) == 0
    assert len(cli.ok("enqueue", "--file", "-", input=batch).split()) == 2000
    integrity_ok(cli)


def test_a_dlq_retry_killed_midway_changes_nothing(cli: Cli) -> None:
    cli.config(**{"max-backoff": 0})
    for n in range(5):
        cli.enqueue(id=f"d{n}", command="exit 1", max_retries=0)
    cli.run_until_empty()
    for _ in range(RUNS):
        crashed(cli, "in-dlq-retry", "dlq", "retry", "--all")
        assert [j["state"] for j in cli.json("list")] == ["dead"] * 5
        crashed(cli, "in-dlq-retry", "dlq", "retry", "d1", "d3")
        assert [j["state"] for j in cli.json("list")] == ["dead"] * 5
    assert len(cli.ok("dlq", "retry", "--all").split()) == 5
    integrity_ok(cli)


def test_a_migration_killed_midway_leaves_no_mixed_schema(cli: Cli) -> None:
    for _ in range(RUNS):
        crashed(cli, "in-migration", "status")
    assert cli.json("status")["jobs"]["pending"] == 0
    cli.enqueue(id="after", command="true")
    assert cli.job("after")["state"] == "pending"
    integrity_ok(cli)
