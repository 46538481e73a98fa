"""Leases and fencing: a stale worker never overwrites a newer attempt, and a worker
that cannot renew its lease kills its own job before the lease can expire."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

from queuectl.liveness import start_time
from tests.conftest import Cli, wait_until


def test_a_paused_worker_loses_its_job_and_its_late_result_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    cli.config(**{"lease-timeout": 2, "max-backoff": 0})
    cli.enqueue(id="contested", command=f"echo start $QUEUECTL_ATTEMPT >> {journal}; sleep 3; "
                                        f"echo end $QUEUECTL_ATTEMPT >> {journal}")
    stale = cli.start_worker()
    cli.wait_for_state("contested", "processing")
    stale.send_signal(signal.SIGSTOP)
    try:
        fresh = cli.start_worker()
        job = cli.wait_for_state("contested", "completed", timeout=30)
    finally:
        stale.send_signal(signal.SIGCONT)
    assert job["attempts"] == 2 and job["history"][0]["error"] == "worker lost"
    # The first attempt's processes were ended when its lease expired: it never finished.
    assert journal.read_text().split("\n")[:-1] == ["start 1", "start 2", "end 2"]
    wait_until(lambda: "lease" in cli.output(stale)[1], 10, message="the stale worker to notice")
    time.sleep(0.5)  # give a (wrong) late write the chance to land
    after = cli.job("contested")
    assert (after["state"], after["attempts"], after["worker_id"]) == ("completed", 2, job["worker_id"])
    for proc in (stale, fresh):
        proc.terminate()
        assert proc.wait(10) == 0


def test_a_worker_that_cannot_renew_its_lease_kills_its_job_before_the_lease_expires(
        sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    pid_file = tmp_path / "pid"
    cli.config(**{"lease-timeout": 2, "max-backoff": 0})
    cli.enqueue(id="fenced", command=f"echo $$ > {pid_file}; exec sleep 30", max_retries=0)
    worker = cli.start_worker(env={"QUEUECTL_BUSY_TIMEOUT": "0.1"})
    cli.wait_for_state("fenced", "processing")
    wait_until(pid_file.exists)
    pid = int(pid_file.read_text())
    lock = sqlite3.connect(cli.db, isolation_level=None, timeout=10)
    lock.execute("BEGIN IMMEDIATE")  # every heartbeat now fails: the lease cannot be renewed
    held_at = time.monotonic()
    try:
        wait_until(lambda: start_time(pid) is None, 5, message="the job to be killed")
        killed_after = time.monotonic() - held_at
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # Killed within the 2 s lease: no other worker could have taken it over yet.
    assert killed_after < 2.0, killed_after
    job = cli.wait_for_state("fenced", "dead")
    assert job["last_error"] == "worker lost"
    assert "could not renew the lease" in cli.output(worker)[1]
    worker.terminate()
    assert worker.wait(10) == 0
