"""RQ with the local Redis (127.0.0.1:6379): a Redis database of its own, claimed with
a marker key and flushed after every workload and at close. Workers are ``rq worker``
processes (RQ's default Worker class: it forks a work horse per job), one per slot,
started in their own sessions. Drain starts them with ``--burst`` and the clock stops
when the last one exits after the queue is empty (worker start included). Pickup
starts them without ``--burst``: idle workers block on Redis (BLMOVE/BLPOP), no polling.
"""

from __future__ import annotations

import time
from pathlib import Path

from .base import VENV, Peer


class Rq(Peer):
    name = "rq"
    driver_module = "rq_app"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.db: int | None = None
        self.queue = f"queuectl-bench-{self.tag}"

    def unavailable(self) -> str | None:
        reason = super().unavailable()
        if reason:
            return reason
        try:
            self.driver("ping", timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure means "skip, say why"
            return f"no Redis at 127.0.0.1:6379: {str(exc)[-300:]}"
        return None

    def env(self, **extra: str) -> dict[str, str]:
        env = super().env(BENCH_RQ_QUEUE=self.queue, **extra)
        if self.db is not None:
            env["BENCH_RQ_DB"] = str(self.db)
        return env

    def _fresh(self) -> None:
        if self.db is None:
            self.db = self.driver("claim", self.tag)["db"]
        else:
            self.driver("flush", self.tag, self.db)

    def _workers(self, slots: int, *extra: str) -> list:
        url = f"redis://127.0.0.1:6379/{self.db}"
        return [self.spawn([str(VENV / "bin" / "rq"), "worker", "-q", "-u", url, *extra,
                            self.queue], f"worker{n}.log") for n in range(slots)]

    def drain(self, jobs: int, slots: int) -> float:
        self.notes["drain"] = "SLOTS x `rq worker --burst` (forking Worker): start to the last exit"
        with self.running():
            self._fresh()
            self.driver("enqueue", jobs)
            started = time.perf_counter()
            workers = self._workers(slots, "--burst")
            for worker in workers:
                code = worker.wait(600)
                if code != 0:
                    raise RuntimeError(f"rq: worker exited {code}: {self.log_tail('worker0.log')}")
            took = time.perf_counter() - started
            check = self.driver("check")
            if check["finished"] != jobs or check["failed"] or check["queued"]:
                raise RuntimeError(f"rq: {check}")
        return jobs / took

    def pickup(self, probes: int) -> list[float]:
        self.notes["pickup"] = "Queue.enqueue from Python; idle workers block on Redis"
        with self.running():
            self._fresh()
            self._workers(2)
            return self.driver("pickup", probes, self.workdir / "probes")

    def bulk_enqueue(self, jobs: int) -> float:
        self.notes[f"bulk_enqueue_{jobs}"] = "enqueue_many on a pipeline, 1,000 jobs a pipeline"
        with self.running():
            self._fresh()
            out = self.driver("bulk", jobs)
            if out["queued"] != jobs:
                raise RuntimeError(f"rq: {out}")
            self.driver("flush", self.tag, self.db)
        return jobs / out["seconds"]

    def cleanup(self) -> None:
        if self.db is not None:
            self.driver("release", self.tag, self.db, timeout=60)
            self.db = None
