"""procrastinate with the local PostgreSQL: a database of its own
(``bench_procrastinate_<pid>_<hex>``, procrastinate's schema applied), emptied before
every workload and dropped at close. One worker process with ``--concurrency SLOTS``
(procrastinate runs a worker's jobs as asyncio tasks in one process; the task awaits
``asyncio.create_subprocess_shell``). Drain starts it with ``--one-shot``, so the clock
stops when it exits after the queue is empty (worker start included). Idle workers
wake on LISTEN/NOTIFY.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .base import PG_URL, VENV, Peer


class Procrastinate(Peer):
    name = "procrastinate"
    driver_module = "procrastinate_app"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.database = f"bench_procrastinate_{self.tag.split('-', 1)[1].replace('-', '_')}"
        self.dsn = urlunsplit(urlsplit(PG_URL)._replace(path=f"/{self.database}", query=""))
        self.created = False

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(BENCH_PROCRASTINATE_DSN=self.dsn,
                           BENCH_PROCRASTINATE_ADMIN=PG_URL, **extra)

    def unavailable(self) -> str | None:
        reason = super().unavailable()
        if reason:
            return reason
        try:
            self.driver("ping", timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure means "skip, say why"
            return f"no PostgreSQL at {PG_URL}: {str(exc)[-300:]}"
        return None

    def _fresh(self) -> None:
        if not self.created:
            self.created = True  # from here on, close() drops it
            self.driver("create", self.database, timeout=120)
        else:
            self.driver("reset")

    def _worker(self, slots: int, *extra: str):
        return self.spawn([str(VENV / "bin" / "procrastinate"), "--app=procrastinate_app.app",
                           "worker", "--concurrency", str(slots), *extra], "worker.log")

    def drain(self, jobs: int, slots: int) -> float:
        self.notes["drain"] = "one worker, --concurrency SLOTS --one-shot: start to exit"
        with self.running():
            self._fresh()
            self.driver("enqueue", jobs)
            started = time.perf_counter()
            worker = self._worker(slots, "--one-shot")
            code = worker.wait(600)
            took = time.perf_counter() - started
            if code != 0:
                raise RuntimeError(f"procrastinate: worker exited {code}: "
                                   f"{self.log_tail('worker.log')}")
            counts = self.driver("check")
            if counts != {"succeeded": jobs}:
                raise RuntimeError(f"procrastinate: {counts}")
        return jobs / took

    def pickup(self, probes: int) -> list[float]:
        self.notes["pickup"] = "task.defer() from Python; the idle worker wakes on NOTIFY"
        with self.running():
            self._fresh()
            self._worker(2)
            return self.driver("pickup", probes, self.workdir / "probes")

    def bulk_enqueue(self, jobs: int) -> float:
        self.notes[f"bulk_enqueue_{jobs}"] = "task.batch_defer, 10,000 jobs a call"
        with self.running():
            self._fresh()
            out = self.driver("bulk", jobs)
            if out.get("todo") != jobs:
                raise RuntimeError(f"procrastinate: {out}")
            self.driver("reset")
        return jobs / out["seconds"]

    def cleanup(self) -> None:
        if self.created:
            self.driver("drop", self.database, timeout=60)
            self.created = False
