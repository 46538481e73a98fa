"""Shared fixtures: a store for every backend, the real ``queuectl`` executable,
worker processes that are always cleaned up, and ``wait_until``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from queuectl.store import Store, open_store

BIN = Path(sys.executable).parent
QUEUECTL = str(BIN / "queuectl")

#: Where the PostgreSQL tests run. CI sets it, which makes them mandatory: an
#: unreachable server then fails them. Unset, the local default is tried and the
#: PostgreSQL variants skip (with the reason) where there is none.
PG_URL_ENV = "QUEUECTL_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_unavailable() -> str | None:
    """Why the PostgreSQL variants cannot run here, or None when they can."""
    url = os.environ.get(PG_URL_ENV)
    try:
        import psycopg
    except ImportError:
        if url:
            raise RuntimeError(f"{PG_URL_ENV} is set but psycopg is not installed") from None
        return "psycopg is not installed (pip install '.[postgres]')"
    try:
        psycopg.connect(url or DEFAULT_PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        if url:
            raise RuntimeError(f"{PG_URL_ENV}={url} is unreachable: {exc}") from None
        return f"no PostgreSQL at {DEFAULT_PG_URL} and {PG_URL_ENV} is not set"
    return None


_PG_SKIP_REASON = _postgres_unavailable()
PG_URL = os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL
#: Marks a PostgreSQL-only test: skipped, with the reason, where there is no server and
#: QUEUECTL_TEST_PG_URL is unset (with it set, an unreachable server fails above).
requires_pg = pytest.mark.skipif(_PG_SKIP_REASON is not None, reason=_PG_SKIP_REASON or "")
BACKENDS = ["sqlite", pytest.param("postgres", marks=requires_pg)]


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


def kill_by_env(variable: str) -> int:
    """SIGKILL every process whose environment holds ``NAME=value``; returns how many."""
    marker = variable.encode()
    killed = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        os.kill(int(entry.name), signal.SIGKILL)
                        killed += 1
            except OSError:
                pass
    return killed


def _pg_schema_url() -> tuple[str, str]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}schema={schema}", schema


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database on each backend: a temp SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
        return
    url, schema = _pg_schema_url()
    yield url
    _drop_schema(schema)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


class Cli:
    """Runs the real ``queuectl`` executable against one database."""

    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.home = home
        self.is_sqlite = "://" not in url
        self.env = {**os.environ, "QUEUECTL_DB": url, "XDG_DATA_HOME": str(home / "xdg")}
        self.env.pop("QUEUECTL_DEBUG", None)
        self.procs: list[subprocess.Popen[str]] = []

    @property
    def db(self) -> Path:
        """The SQLite file (SQLite-only tests)."""
        assert self.is_sqlite
        return Path(self.url)

    @property
    def data_dir(self) -> Path:
        """Where queuectl keeps files beside the database: logs, the detached worker's log."""
        if self.is_sqlite:
            return self.db.parent
        found = list((self.home / "xdg" / "queuectl").glob("postgresql-*"))
        assert len(found) == 1, found  # a folder of this queue's own
        return found[0]

    @property
    def worker_log(self) -> Path:
        return self.data_dir / (f"{self.db.name}.worker.log" if self.is_sqlite else "queuectl.worker.log")

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
        out = open(self.home / f"worker{n}.out", "w+")
        err = open(self.home / f"worker{n}.err", "w+")
        proc = subprocess.Popen([QUEUECTL, "worker", "start", *args], stdout=out, stderr=err,
                                text=True, env={**self.env, **(env or {})}, start_new_session=True)
        out.close()
        err.close()
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[str]) -> tuple[str, str]:
        n = self.procs.index(proc)
        return ((self.home / f"worker{n}.out").read_text(),
                (self.home / f"worker{n}.err").read_text())

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
        kill_by_env(f"QUEUECTL_DB={self.url}")


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Cli]:
    """The real executable against a fresh PostgreSQL schema (PostgreSQL-only tests)."""
    url, schema = _pg_schema_url()
    runner = Cli(url, tmp_path)
    yield runner
    runner.cleanup()
    _drop_schema(schema)


@pytest.fixture(params=BACKENDS)
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """The real executable against a fresh database, on every backend."""
    if request.param == "sqlite":
        runner = Cli(str(tmp_path / "queue.db"), tmp_path)
        yield runner
        runner.cleanup()
        return
    url, schema = _pg_schema_url()
    runner = Cli(url, tmp_path)
    yield runner
    runner.cleanup()
    _drop_schema(schema)


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Iterator[Cli]:
    """For behaviour that only a database file has (permissions, corruption, its path)."""
    runner = Cli(str(tmp_path / "queue.db"), tmp_path)
    yield runner
    runner.cleanup()
