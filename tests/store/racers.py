"""Bodies of the processes that race on one database in the concurrency tests.

Run in children started with the 'spawn' context: each opens its own store from
the URL and writes what it did to a JSON file (exceptions included, as text)."""

from __future__ import annotations

import json
import time
import traceback
from datetime import timedelta
from typing import Any

from queuectl.lifecycle import Outcome
from queuectl.model import NewJob
from queuectl.store import open_store
from queuectl.timeutil import now


def _report(path: str, result: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(result, f)


def claim_until_empty(url: str, name: str, slots: int, start: Any, out: str) -> None:
    """Claim (``slots`` jobs at a time) and complete jobs until none is left."""
    result: dict[str, Any] = {"claimed": [], "errors": []}
    try:
        store = open_store(url)
        try:
            start.wait(60)
            workers = [f"{name}-{n}" for n in range(slots)]
            while True:
                claims = store.claim(workers, now(), 60)
                if not claims:
                    break
                for claim in claims:
                    result["claimed"].append(claim.job.id)
                    if not store.finish_attempt(claim.job.id, claim.token, claim.attempt,
                                                Outcome.completed(), now()):
                        result["errors"].append(f"finish of {claim.job.id} was refused")
        finally:
            store.close()
    except BaseException:
        result["errors"].append(traceback.format_exc())
    _report(out, result)


def enqueue_one_by_one(url: str, name: str, count: int, start: Any, out: str) -> None:
    """Enqueue ``count`` jobs, one transaction each."""
    result: dict[str, Any] = {"enqueued": [], "errors": []}
    try:
        store = open_store(url)
        try:
            start.wait(60)
            for n in range(count):
                job_id = f"{name}-{n:04d}"
                when = now()
                store.insert_jobs([NewJob(id=job_id, command="true", max_retries=3, priority=0,
                                          run_at=when - timedelta(seconds=1), timeout=None)], when)
                result["enqueued"].append(job_id)
        finally:
            store.close()
    except BaseException:
        result["errors"].append(traceback.format_exc())
    _report(out, result)


def claim_until_done(url: str, name: str, start: Any, enqueuers_done: Any, out: str) -> None:
    """Claim and complete jobs one at a time until the enqueuers are done and none is left."""
    result: dict[str, Any] = {"claimed": [], "errors": []}
    try:
        store = open_store(url)
        try:
            start.wait(60)
            while True:
                finished = enqueuers_done.is_set()  # read before claiming: no job can be missed
                claims = store.claim([name], now(), 60)
                for claim in claims:
                    result["claimed"].append(claim.job.id)
                    if not store.finish_attempt(claim.job.id, claim.token, claim.attempt,
                                                Outcome.completed(), now()):
                        result["errors"].append(f"finish of {claim.job.id} was refused")
                if not claims:
                    if finished:
                        break
                    time.sleep(0.002)  # idle: let the enqueuers in
        finally:
            store.close()
    except BaseException:
        result["errors"].append(traceback.format_exc())
    _report(out, result)
