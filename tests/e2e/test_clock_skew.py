"""Leases are timed on the database's clock (PostgreSQL, where workers may sit on hosts
whose clocks disagree): a supervisor whose own clock is an hour behind still holds its
job's lease, so a worker with a correct clock does not take the job over and run it a
second time."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from queuectl import Queue
from queuectl.timeutil import iso
from queuectl.timeutil import now as real_now
from queuectl.worker import supervisor
from tests.conftest import (
    PG_URL,
    Cli,
    requires_pg,
    wait_until,
)

pytestmark = requires_pg

SKEW = timedelta(hours=-1)


def lease_left(url: str, job_id: str) -> float | None:
    """Seconds until the job's lease expires, by the database's own clock."""
    import psycopg

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT lease_expires_at - (extract(epoch FROM clock_timestamp()) * 1000)::bigint '
            f'FROM "{schema}".jobs WHERE id = %s', (job_id,)).fetchone()
    return None if row is None or row[0] is None else row[0] / 1000


def test_a_supervisor_an_hour_behind_keeps_its_lease_and_no_one_runs_its_job_twice(
        pg: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = tmp_path / "journal"
    pg.config(**{"lease-timeout": 2, "max-backoff": 0})
    # Due two hours ago, so due by either clock: what is tested is the lease, not run_at.
    due = iso(real_now() - timedelta(hours=2))
    pg.enqueue(id="long", run_at=due,
               command=f"echo start >> {journal}; sleep 4; echo end >> {journal}")

    def behind() -> datetime:
        return real_now() + SKEW

    monkeypatch.setattr(supervisor, "utcnow", behind)  # this process's supervisor only
    summaries = []
    with Queue(pg.url) as queue:
        skewed = threading.Thread(target=lambda: summaries.append(
            queue.work(1, stop_when_empty=True)))
        skewed.start()
        try:
            wait_until(journal.exists, 10, message="the skewed worker to start the job")
            honest = pg.start_worker("--stop-when-empty")
            for _ in range(3):  # across several heartbeats of both workers
                left = wait_until(lambda: lease_left(pg.url, "long"), 5, message="a lease")
                assert 0 < left <= 2.5, left  # not an hour in the past (or future)
                time.sleep(0.7)
            assert honest.wait(30) == 0, pg.output(honest)
        finally:
            skewed.join(15)
            if skewed.is_alive():  # the assertions failed: stop it before the queue closes
                queue.stop_workers(timeout=15)
                skewed.join(15)
    assert summaries and summaries[0].jobs_run == 1
    job = pg.job("long")
    assert (job["state"], job["attempts"]) == ("completed", 1)
    assert journal.read_text().split() == ["start", "end"]
