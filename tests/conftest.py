"""Shared fixtures: a store for every backend, the real ``queuectl`` executable,
worker processes that are always cleaned up, and ``wait_until``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from queuectl.store import Store, open_store

BIN = Path(sys.executable).parent
QUEUECTL = str(BIN / "queuectl")

#: Backends every store test runs against. PostgreSQL joins in the PostgreSQL issue.
BACKENDS = ["sqlite"]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    raise AssertionError(request.param)  # pragma: no cover


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


class Cli:
    """Runs the real ``queuectl`` executable against one database."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.env = {**os.environ, "QUEUECTL_DB": str(db)}
        self.env.pop("QUEUECTL_DEBUG", None)
        self.procs: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, input: str | None = None, check: bool | None = None,
                 timeout: float = 30) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([QUEUECTL, *args], input=input, capture_output=True, text=True,
                                env=self.env, timeout=timeout)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def ok(self, *args: str, input: str | None = None) -> str:
        return self(*args, input=input, check=True).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def job(self, job_id: str) -> dict[str, Any]:
        return self.json("show", job_id)  # type: ignore[no-any-return]

    def enqueue(self, **fields: Any) -> str:
        return self.ok("enqueue", json.dumps(fields)).strip()

    def config(self, **values: Any) -> None:
        for key, value in values.items():
            self.ok("config", "set", key, str(value))

    def start_worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """``queuectl worker start ARGS`` in the background, in its own process group.

        Its output goes to files (a pipe nobody reads would fill up and block it):
        ``output(proc)`` returns (stdout, stderr)."""
        n = len(self.procs)
        out = open(self.db.parent / f"worker{n}.out", "w+")
        err = open(self.db.parent / f"worker{n}.err", "w+")
        proc = subprocess.Popen([QUEUECTL, "worker", "start", *args], stdout=out, stderr=err,
                                text=True, env={**self.env, **(env or {})}, start_new_session=True)
        out.close()
        err.close()
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[str]) -> tuple[str, str]:
        n = self.procs.index(proc)
        return ((self.db.parent / f"worker{n}.out").read_text(),
                (self.db.parent / f"worker{n}.err").read_text())

    def wait_for_workers(self, n: int, timeout: float = 10) -> None:
        wait_until(lambda: self.json("status")["workers"]["active"] >= n, timeout,
                   message=f"{n} live workers")

    def wait_for_state(self, job_id: str, state: str, timeout: float = 15) -> dict[str, Any]:
        return wait_until(lambda: (job := self.job(job_id))["state"] == state and job, timeout,
                          interval=0.05, message=f"job {job_id} to be {state}")

    def run_until_empty(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self("worker", "start", "--stop-when-empty", *args, timeout=timeout)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=10)
        # Jobs run in sessions of their own, so a killed worker can leave them behind:
        # they all carry this test's QUEUECTL_DB in their environment.
        marker = f"QUEUECTL_DB={self.db}".encode()
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/environ", "rb") as f:
                        if marker in f.read().split(b"\0"):
                            os.kill(int(entry.name), signal.SIGKILL)
                except OSError:
                    pass


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path / "queue.db")
    yield runner
    runner.cleanup()
