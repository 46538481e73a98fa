"""Huey (``SqliteHuey``, a SQLite file in the work folder) with ``huey_consumer`` started
by the benchmark: ``-w SLOTS -k thread``. Thread workers because each task only waits on
a child shell (subprocess releases the GIL), which is what Huey's docs advise threads
for; process workers would add a forked Python per slot for nothing. The consumer polls
SQLite (Huey's defaults: -d 0.1 s, backoff 1.15, max 10 s), so pickup includes that.
Drain: the consumer never exits on an empty queue, so a waiter process polls
``result_count()`` every 5 ms and the clock stops when all results are stored.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .base import VENV, Peer

BULK_BUDGET = 60.0  # seconds; past this bulk_enqueue stops and reports the rate so far


class Huey(Peer):
    name = "huey"
    driver_module = "huey_app"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self._n = 0
        self.db = ""

    def _fresh(self) -> str:
        self._n += 1
        self.db = str(self.workdir / f"huey{self._n}.db")
        return self.db

    def _drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(self.db + suffix).unlink(missing_ok=True)

    def _consumer(self, slots: int):
        return self.spawn([str(VENV / "bin" / "huey_consumer"), "huey_app.huey",
                           "-w", str(slots), "-k", "thread", "-q"], "consumer.log",
                          BENCH_HUEY_DB=self.db)

    def drain(self, jobs: int, slots: int) -> float:
        self.notes["drain"] = ("huey_consumer -k thread start to the last result stored "
                               "(seen by a waiter polling result_count every 5 ms)")
        try:
            with self.running():
                self._fresh()
                self.driver("enqueue", jobs, BENCH_HUEY_DB=self.db)
                _, reader = self.driver_stream("wait", jobs, 600, BENCH_HUEY_DB=self.db)
                if reader.readline(60) != "ready":
                    raise RuntimeError("huey: the waiter did not start")
                started = time.time()
                consumer = self._consumer(slots)
                try:
                    finished = json.loads(reader.readline(600))["at"]
                except Exception as exc:
                    raise RuntimeError(f"huey: drain failed ({exc}); consumer exit "
                                       f"{consumer.poll()}: {self.log_tail('consumer.log')}")
                check = self.driver("check", BENCH_HUEY_DB=self.db)
                if check["results"] != jobs or check["errors"]:
                    raise RuntimeError(f"huey: {check}")
        finally:
            self._drop()
        return jobs / (finished - started)

    def pickup(self, probes: int) -> list[float]:
        self.notes["pickup"] = "task() call from Python; consumer polls (defaults)"
        try:
            with self.running():
                self._fresh()
                self._consumer(2)
                return self.driver("pickup", probes, self.workdir / f"probes{self._n}",
                                   BENCH_HUEY_DB=self.db)
        finally:
            self._drop()

    def bulk_enqueue(self, jobs: int) -> float:
        self.notes[f"bulk_enqueue_{jobs}"] = "a loop of task() calls (Huey has no bulk path)"
        try:
            with self.running():
                self._fresh()
                out = self.driver("bulk", jobs, BULK_BUDGET, BENCH_HUEY_DB=self.db)
                if out["pending"] != out["done"]:
                    raise RuntimeError(f"huey: {out}")
        finally:
            self._drop()
        if out["done"] < jobs:
            self.notes[f"bulk_enqueue_{jobs}"] += (
                f"; {out['done']} of {jobs} in the {BULK_BUDGET:.0f} s budget, extrapolated")
        return out["done"] / out["seconds"]
