"""Store conformance under real concurrency: separate processes, each with its own
store, racing on one database. Runs on every backend."""

from __future__ import annotations

import collections
import json
import multiprocessing
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from queuectl.model import JobState
from queuectl.store import Store
from queuectl.timeutil import now

from . import racers
from .support import new_job

SPAWN = multiprocessing.get_context("spawn")
DEADLINE = 60  # seconds; the tests take a few


def run_all(procs: list[Any]) -> None:
    for proc in procs:
        proc.start()
    run_all_started(procs)


def run_all_started(procs: list[Any]) -> None:
    """Wait for started processes; each must exit 0 within the deadline (killed otherwise)."""
    deadline = time.monotonic() + DEADLINE
    try:
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
        assert all(proc.exitcode == 0 for proc in procs), [p.exitcode for p in procs]
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()


def results(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in paths]


def test_racing_processes_claim_every_job_exactly_once(store: Store, store_url: str,
                                                       tmp_path: Path) -> None:
    # Enough jobs that one racer cannot drain them all while SQLite's busy handler keeps
    # the others asleep (claims got fast enough for 300 to go that way now and then).
    total, racers_count = 1000, 5
    when = now()
    store.insert_jobs([new_job(f"job-{n:04d}", run_at=when - timedelta(seconds=1))
                       for n in range(total)], when)
    start = SPAWN.Barrier(racers_count)
    outs = [tmp_path / f"racer{n}.json" for n in range(racers_count)]
    # Some racers claim one job at a time, others several in one transaction.
    procs = [SPAWN.Process(target=racers.claim_until_empty,
                           args=(store_url, f"r{n}", 1 + n % 3, start, str(outs[n])))
             for n in range(racers_count)]
    run_all(procs)

    reports = results(outs)
    assert [r["errors"] for r in reports] == [[]] * racers_count
    claimed = [job_id for r in reports for job_id in r["claimed"]]
    twice = [job_id for job_id, n in collections.Counter(claimed).items() if n > 1]
    assert twice == []
    assert sorted(claimed) == [f"job-{n:04d}" for n in range(total)]
    assert store.count_by_state()[JobState.COMPLETED] == total
    assert all(job.attempts == 1 for job in store.list_jobs())
    # The race was real: more than one process got work.
    assert sum(1 for r in reports if r["claimed"]) >= 2


def test_concurrent_enqueuers_and_claimers_never_see_a_locked_database(
        store: Store, store_url: str, tmp_path: Path) -> None:
    enqueuers, claimers, per_enqueuer = 8, 4, 40
    start = SPAWN.Barrier(enqueuers + claimers)
    done = SPAWN.Event()
    enqueue_outs = [tmp_path / f"enqueuer{n}.json" for n in range(enqueuers)]
    claim_outs = [tmp_path / f"claimer{n}.json" for n in range(claimers)]
    enqueue_procs = [SPAWN.Process(target=racers.enqueue_one_by_one,
                                   args=(store_url, f"e{n}", per_enqueuer, start, str(enqueue_outs[n])))
                     for n in range(enqueuers)]
    claim_procs = [SPAWN.Process(target=racers.claim_until_done,
                                 args=(store_url, f"c{n}", start, done, str(claim_outs[n])))
                   for n in range(claimers)]
    for proc in claim_procs:
        proc.start()
    try:
        run_all(enqueue_procs)
    finally:
        done.set()
    run_all_started(claim_procs)

    enqueued = results(enqueue_outs)
    claimed = results(claim_outs)
    errors = [e for r in enqueued + claimed for e in r["errors"]]
    assert errors == []
    all_enqueued = sorted(job_id for r in enqueued for job_id in r["enqueued"])
    all_claimed = [job_id for r in claimed for job_id in r["claimed"]]
    assert len(all_enqueued) == enqueuers * per_enqueuer
    assert sorted(all_claimed) == all_enqueued  # each exactly once
    assert store.count_by_state() == {**{s: 0 for s in JobState},
                                      JobState.COMPLETED: enqueuers * per_enqueuer}

