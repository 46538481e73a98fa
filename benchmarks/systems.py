"""queuectl under the benchmark's workloads, with the same interface as the peers
(``benchmarks/peers``): drain, pickup and bulk enqueue, each driving the real
``queuectl`` executable (or the Python API where a workload says so)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
QUEUECTL = str(BIN / "queuectl")
PG_URL = os.environ.get("QUEUECTL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def floor(jobs: int, threads: int) -> float:
    """The machine's spawn limit as Python sees it: ``sh -c true`` from ``threads``
    threads, no queue at all. Jobs per second."""
    left = [jobs]
    lock = threading.Lock()

    def spawn() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            subprocess.run(["/bin/sh", "-c", "true"], check=True)

    started = time.perf_counter()
    workers = [threading.Thread(target=spawn) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return jobs / (time.perf_counter() - started)


def jsonl(path: Path, jobs: int, command: str = "true") -> Path:
    line = json.dumps({"command": command}) + "\n"
    path.write_text(line * jobs)
    return path


class Queuectl:
    """One queuectl database (SQLite file or PostgreSQL schema) in a scratch folder."""

    def __init__(self, workdir: Path, store: str) -> None:
        self.store = store
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self._n = 0
        self.name = f"queuectl-{store}"
        self.url = ""
        self._schemas: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self.fresh()

    # --- databases ----------------------------------------------------------------

    def fresh(self) -> str:
        """Point at a new, empty database."""
        self._n += 1
        if self.store == "sqlite":
            self.url = str(self.workdir / f"q{self._n}.db")
        else:
            schema = f"bench_{os.getpid()}_{self._n}"
            self._schemas.append(schema)
            self.url = f"{PG_URL}?schema={schema}"
        return self.url

    def env(self) -> dict[str, str]:
        return {**os.environ, "QUEUECTL_DB": self.url}

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([QUEUECTL, *args], env=self.env(), input=stdin,
                              capture_output=True, check=True)

    def unavailable(self) -> str | None:
        if self.store == "postgresql":
            try:
                import psycopg
                psycopg.connect(PG_URL, connect_timeout=3).close()
            except Exception as exc:  # noqa: BLE001 - any failure means "skip, say why"
                return f"no PostgreSQL at {PG_URL}: {exc}"
        return None

    # --- workloads ----------------------------------------------------------------

    def drain(self, jobs: int, slots: int) -> float:
        """Enqueue ``jobs`` × ``true``, then time ``worker start --count slots
        --stop-when-empty`` from launch to exit. Jobs per second."""
        self.fresh()
        self.run("enqueue", "--file", str(jsonl(self.workdir / "drain.jsonl", jobs)))
        started = time.perf_counter()
        self.run("worker", "start", "--count", str(slots), "--stop-when-empty")
        took = time.perf_counter() - started
        self._check_drained(jobs)
        return jobs / took

    def _check_drained(self, jobs: int) -> None:
        status = json.loads(self.run("status", "--json").stdout)
        done = status["jobs"]["completed"]
        if done != jobs:
            raise RuntimeError(f"{self.name}: {done} of {jobs} jobs completed: {status}")

    def pickup(self, probes: int, via: str = "api") -> list[float]:
        """Idle workers (poll-interval left at 1 s), one job at a time writing its start
        time: milliseconds from ``enqueue`` returning to the command's first instruction."""
        self.fresh()
        self.run("status")  # creates the database
        worker = self._start_workers(2)
        latencies: list[float] = []
        try:
            from queuectl import Queue
            with Queue(self.url) as queue, tempfile.TemporaryDirectory() as folder:
                for n in range(probes):
                    stamp = Path(folder) / str(n)
                    command = f"date +%s%N > {stamp}.tmp && mv {stamp}.tmp {stamp}"
                    if via == "api":
                        queue.enqueue(command)
                    else:
                        self.run("enqueue", "--command", command)
                    returned = time.time_ns()
                    deadline = time.monotonic() + 10
                    while not stamp.exists():
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{self.name}: probe {n} did not start in 10 s")
                        time.sleep(0.0002)
                    latencies.append((int(stamp.read_text()) - returned) / 1e6)
                    time.sleep(0.05)
        finally:
            self._stop(worker)
        return latencies

    def bulk_enqueue(self, jobs: int) -> float:
        """``enqueue --file`` of ``jobs`` JSON lines, process start included. Jobs/s."""
        self.fresh()
        self.run("status")  # the schema exists: we time the enqueue, not the migration
        path = jsonl(self.workdir / f"bulk{jobs}.jsonl", jobs)
        started = time.perf_counter()
        out = self.run("enqueue", "--file", str(path)).stdout
        took = time.perf_counter() - started
        printed = len(out.splitlines())
        if printed != jobs:
            raise RuntimeError(f"{self.name}: enqueue printed {printed} ids, not {jobs}")
        return jobs / took

    def bulk_enqueue_api(self, jobs: int) -> float:
        """``Queue.enqueue_many`` of ``jobs`` jobs inside a running interpreter: measured
        the way the Python peers' bulk enqueue is. Jobs/s."""
        from queuectl import Queue

        self.fresh()
        batch = [{"command": "true"} for _ in range(jobs)]
        with Queue(self.url) as queue:
            queue.status()  # the schema exists: we time the enqueue, not the migration
            started = time.perf_counter()
            queued = queue.enqueue_many(batch)
            took = time.perf_counter() - started
        if len(queued) != jobs:
            raise RuntimeError(f"{self.name}: enqueue_many returned {len(queued)} jobs, not {jobs}")
        return jobs / took

    def close(self) -> None:
        for proc in self._procs:
            self._stop(proc)
        if self._schemas:
            import psycopg
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                for schema in self._schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- workers ------------------------------------------------------------------

    def _start_workers(self, slots: int, *extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([QUEUECTL, "worker", "start", "--count", str(slots), *extra],
                                env=self.env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self._procs.append(proc)
        deadline = time.monotonic() + 20
        while True:
            workers = json.loads(self.run("status", "--json").stdout)["workers"]["active"]
            if workers >= slots:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{self.name}: workers did not start")
            time.sleep(0.05)
        time.sleep(0.3)  # let the supervisor reach its idle wait
        return proc

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)
