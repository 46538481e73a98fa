"""The SQLite store: one database file, WAL, ``synchronous=FULL``, every write
transaction ``BEGIN IMMEDIATE`` so writers queue on the busy timeout instead of
failing with "database is locked" halfway through."""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from ..crashpoints import armed, crash_point
from ..errors import (
    DuplicateJob,
    NotFound,
    QueuectlError,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    WrongState,
)
from ..model import Attempt, Job, JobState, NewJob, SupervisorInfo, WorkerInfo
from ..paths import check_private, private_dir
from ..timeutil import now as utcnow
from ..timeutil import to_ms
from . import migrations
from .base import Claim, Heartbeat, HeldJob, Result, Settlement, SettleShortcuts
from .fifo_wakeup import FifoListener, fifo_path, poke
from .rows import (
    ATTEMPT_COLUMNS,
    JOB_COLUMNS,
    SQL_HELD,
    SQL_WORKERS,
    SUPERVISOR_COLUMNS,
    attempt_from_row,
    first_repeated,
    held_from_row,
    job_from_row,
    new_job_rows,
    supervisor_values,
    time_or_none,
    worker_from_row,
)

#: Bytes the -wal file is truncated to when SQLite resets it (about the 1,000-page
#: auto-checkpoint size, so a busy queue does not re-grow it on every cycle).
WAL_SIZE_LIMIT = 4 * 1024 * 1024
#: Seconds a writer waits for the write lock before "database busy"; QUEUECTL_BUSY_TIMEOUT overrides.
DEFAULT_BUSY_TIMEOUT = 10.0

SQL_INSERT_JOB = """
INSERT INTO jobs (id, command, state, attempts, max_retries, priority, run_at, timeout,
                  created_at, updated_at)
VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?)"""

SQL_FIRST_DUE = """
SELECT 1 FROM jobs INDEXED BY jobs_waiting
 WHERE state IN ('pending', 'failed') AND run_at <= ? LIMIT 1"""

SQL_CLAIM = f"""
UPDATE jobs
   SET state = 'processing', attempts = attempts + 1, worker_id = :worker, lease_token = :token,
       lease_expires_at = :expires, started_at = :now, finished_at = NULL, updated_at = :now
 WHERE seq = (SELECT seq FROM jobs INDEXED BY jobs_due
               WHERE state IN ('pending', 'failed') AND run_at <= :now
               ORDER BY priority, run_at, seq LIMIT 1)
RETURNING {JOB_COLUMNS}"""

# Numbered after every earlier attempt of the job, dlq retries included.
SQL_START_ATTEMPT = """
INSERT INTO attempts (job_id, number, worker_id, started_at)
SELECT :id, coalesce(max(number), 0) + 1, :worker, :now FROM attempts WHERE job_id = :id
RETURNING number"""

SQL_FINISH = """
UPDATE jobs
   SET state = :state, attempts = attempts - :uncount, run_at = coalesce(:run_at, run_at),
       exit_code = CASE WHEN :uncount THEN exit_code ELSE :exit_code END,
       last_error = CASE WHEN :uncount THEN last_error ELSE :error END,
       started_at = CASE WHEN :uncount THEN NULL ELSE started_at END,
       worker_id = CASE WHEN :uncount THEN NULL ELSE worker_id END,
       finished_at = :finished, updated_at = :now, lease_token = NULL, lease_expires_at = NULL
 WHERE id = :id AND lease_token = :token AND state = 'processing'"""

SQL_FINISH_ATTEMPT = """
UPDATE attempts SET finished_at = ?, exit_code = ?, error = ?, stdout_path = ?, stderr_path = ?
 WHERE job_id = ? AND number = ?"""

SQL_RETRY_DEAD = """
UPDATE jobs
   SET state = 'pending', attempts = 0, run_at = :now, exit_code = NULL, last_error = NULL,
       started_at = NULL, finished_at = NULL, worker_id = NULL, updated_at = :now
 WHERE state = 'dead'"""

T = TypeVar("T")


def _translated(method: Callable[..., T]) -> Callable[..., T]:
    """Turn sqlite3's errors into queuectl's, so no driver error reaches a user."""

    @functools.wraps(method)
    def wrapper(self: "SqliteStore", *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    return wrapper


class SqliteStore(SettleShortcuts):
    """A queuectl database in one SQLite file."""

    def __init__(self, path: str, busy_timeout: float | None = None) -> None:
        self.path = Path(path).expanduser().absolute()
        self.url = str(self.path)
        if busy_timeout is None:
            busy_timeout = float(os.environ.get("QUEUECTL_BUSY_TIMEOUT", DEFAULT_BUSY_TIMEOUT))
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._conn = self._connect()

    # --- connection -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise StoreError(f"cannot open database {self.path}: it is a directory")
        check_private(self.path.parent, "database folder")
        check_private(self.path, "database")
        try:
            if not self.path.exists():
                private_dir(self.path.parent)
                # Owner-only from the first byte; SQLite gives -wal and -shm the same mode.
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            elif not self.path.is_file():
                raise StoreError(f"cannot open database {self.path}: not a regular file")
        except OSError as exc:
            raise StoreError(f"cannot create database {self.path}: {exc.strerror}") from None
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._refuse_foreign(conn)  # before any setting below changes the file
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            # After a long reader held checkpoints back, shrink the -wal file again once
            # it is reset, instead of keeping its high-water size for ever.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
            self._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc) from None
        except QueuectlError:
            conn.close()
            raise
        return conn

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """A database with tables but no queuectl schema version is someone else's.
        Both facts are read in one snapshot: a concurrent first use commits them together."""
        conn.execute("BEGIN")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master "
                                  "WHERE name NOT LIKE 'sqlite_%'").fetchone()[0]
        finally:
            conn.execute("COMMIT")
        if version == 0 and tables:
            raise StoreError(f"{self.path} is a SQLite database that queuectl did not create")

    def _translate(self, exc: sqlite3.Error) -> QueuectlError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return StoreBusy(f"database busy: {self.path} stayed locked by another process for "
                             f"{self.busy_timeout:g}s (QUEUECTL_BUSY_TIMEOUT sets the wait)")
        if "not a database" in text or "malformed" in text:
            return StoreCorrupt(f"database {self.path} is not a usable queuectl database: {text}")
        if "readonly" in text or "unable to open" in text:
            return StoreError(f"cannot write database {self.path}: {text}")
        if "disk is full" in text or "disk I/O" in text:
            return StoreError(f"database {self.path}: {text}")
        return StoreError(f"database {self.path}: {text}")

    def _migrate(self) -> None:
        known = migrations.load("sqlite")
        latest = known[-1].version
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == latest:
            return
        with self._write() as conn:
            # Decide under the write lock: another process may be creating the schema too.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > latest:
                raise StoreError(f"database {self.path} has schema version {version}, newer "
                                 f"than this queuectl understands ({latest}): upgrade queuectl")
            if version == 0 and conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()[0]:
                raise StoreError(f"{self.path} is a SQLite database that queuectl did not create")
            for migration in known:
                if migration.version > version:
                    for statement in _statements(migration.sql):
                        conn.execute(statement)
                        crash_point("in-migration")
                    conn.execute(f"PRAGMA user_version = {migration.version}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the write lock from its first statement."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.rollback()
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A short read transaction: one consistent snapshot across its statements."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- jobs -------------------------------------------------------------------

    @_translated
    def insert_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        repeated = first_repeated([j.id for j in jobs])
        if repeated is not None:
            raise DuplicateJob(f"job id {repeated!r} appears twice")
        values, records = new_job_rows(jobs, now)  # before the write lock is taken
        try:
            with self._write() as conn:
                conn.executemany(SQL_INSERT_JOB, _crashable(values) if armed("enqueue-row") else values)
        except sqlite3.IntegrityError:
            raise DuplicateJob(f"job {self._first_existing([j.id for j in jobs])!r} already exists") from None
        self.wake()
        return records

    def _first_existing(self, ids: list[str]) -> str:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            row = self._conn.execute(f"SELECT id FROM jobs WHERE id IN ({marks}) LIMIT 1",
                                     chunk).fetchone()
            if row:
                return str(row[0])
        return ids[0]

    @_translated
    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?",
                                     (job_id,)).fetchone()
        return None if row is None else job_from_row(row)

    @_translated
    def list_jobs(self, state: JobState | None = None, limit: int | None = None) -> list[Job]:
        sql = f"SELECT {JOB_COLUMNS} FROM jobs"
        params: list[Any] = []
        if state is not None:
            sql += " WHERE state = ?"
            params.append(state.value)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            return [job_from_row(row) for row in self._conn.execute(sql, params)]

    @_translated
    def count_by_state(self) -> dict[JobState, int]:
        # Finished jobs pile up by the million; the others are few. SQLite counts a whole
        # table from its smallest index without decoding a row (9 ms for a million rows,
        # where GROUP BY state takes 110 ms), so "completed" is the total minus the rest,
        # each of which is a range of the state index. One snapshot for all of them.
        counts = {state: 0 for state in JobState}
        with self._read() as conn:
            total = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
            for state in JobState:
                if state is not JobState.COMPLETED:
                    counts[state] = conn.execute("SELECT count(*) FROM jobs WHERE state = ?",
                                                 (state.value,)).fetchone()[0]
        counts[JobState.COMPLETED] = total - sum(counts.values())
        return counts

    @_translated
    def attempts(self, job_id: str) -> list[Attempt]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY number",
                (job_id,)).fetchall()
        return [attempt_from_row(r) for r in rows]

    def attempt_output(self, job_id: str, attempt: int, stream: str) -> bytes | None:
        return None  # the log files beside the database are the whole output

    @_translated
    def next_due_at(self) -> datetime | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT min(run_at) FROM jobs INDEXED BY jobs_waiting "
                "WHERE state IN ('pending', 'failed')").fetchone()
        return time_or_none(row[0])

    @_translated
    def retry_dead(self, job_ids: Sequence[str] | None, now: datetime) -> list[str]:
        params = {"now": to_ms(now)}
        with self._write() as conn:
            if job_ids is None:
                moved = [row[0] for row in conn.execute(
                    "SELECT id FROM jobs WHERE state = 'dead' ORDER BY seq")]
                conn.execute(SQL_RETRY_DEAD, params)
            else:
                moved = list(dict.fromkeys(job_ids))
                for job_id in moved:
                    row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                    if row is None:
                        raise NotFound(f"no job with id {job_id!r}")
                    if row[0] != JobState.DEAD.value:
                        raise WrongState(f"job {job_id!r} is {row[0]}, not dead")
                    conn.execute(SQL_RETRY_DEAD + " AND id = :id", {**params, "id": job_id})
            crash_point("in-dlq-retry")
        if moved:
            self.wake()
        return moved

    # --- workers' verbs -----------------------------------------------------------

    @_translated
    def settle(self, results: Sequence[Result], worker_ids: Sequence[str], now: datetime,
               lease_seconds: float) -> Settlement:
        now_ms = to_ms(now)
        if not results:
            with self._lock:
                # A plain read first: idle workers then never take the write lock.
                if not worker_ids or self._conn.execute(SQL_FIRST_DUE, (now_ms,)).fetchone() is None:
                    return Settlement([], [])
        with self._write() as conn:
            applied = [self._finish(conn, result, now_ms) for result in results]
            if any(applied):
                crash_point("in-result-transaction")
            claims = self._claim(conn, worker_ids, now_ms,
                                 to_ms(now + timedelta(seconds=lease_seconds)))
        return Settlement(applied, claims)

    @staticmethod
    def _finish(conn: sqlite3.Connection, result: Result, now_ms: int) -> bool:
        # The tails are not stored: a SQLite database and its log files share one host.
        outcome = result.outcome
        applied = conn.execute(SQL_FINISH, {
            "state": outcome.state.value, "uncount": 0 if outcome.counts else 1,
            "run_at": None if outcome.run_at is None else to_ms(outcome.run_at),
            "exit_code": outcome.exit_code, "error": outcome.error,
            "finished": None if outcome.state is JobState.PENDING else now_ms,
            "now": now_ms, "id": result.job_id, "token": result.token,
        }).rowcount == 1
        if applied:
            # An uncounted attempt keeps its record too, so its number (and log files)
            # are never reused.
            conn.execute(SQL_FINISH_ATTEMPT, (now_ms, outcome.exit_code, outcome.error,
                                              result.stdout_path, result.stderr_path,
                                              result.job_id, result.attempt))
        return applied

    @staticmethod
    def _claim(conn: sqlite3.Connection, worker_ids: Sequence[str], now_ms: int,
               expires_ms: int) -> list[Claim]:
        claims: list[Claim] = []
        for worker_id in worker_ids:
            token = os.urandom(16).hex()
            row = conn.execute(SQL_CLAIM, {"worker": worker_id, "token": token,
                                           "expires": expires_ms, "now": now_ms}).fetchone()
            if row is None:
                break
            job = job_from_row(row)
            number = conn.execute(SQL_START_ATTEMPT, {"id": job.id, "worker": worker_id,
                                                      "now": now_ms}).fetchone()[0]
            claims.append(Claim(job=job, token=token, attempt=number, worker_id=worker_id))
        return claims

    @_translated
    def heartbeat(self, supervisor_id: str, tokens: Sequence[str], now: datetime,
                  lease_seconds: float) -> Heartbeat:
        now_ms = to_ms(now)
        expires = to_ms(now + timedelta(seconds=lease_seconds))
        with self._write() as conn:
            row = conn.execute("UPDATE supervisors SET heartbeat_at = ? WHERE id = ? "
                               "RETURNING stop_requested", (now_ms, supervisor_id)).fetchone()
            held: set[str] = set()
            for token in tokens:
                if conn.execute("UPDATE jobs SET lease_expires_at = ? WHERE lease_token = ? "
                                "AND state = 'processing'", (expires, token)).rowcount:
                    held.add(token)
        return Heartbeat(registered=row is not None, stop_requested=bool(row and row[0]),
                         lost_tokens=frozenset(tokens) - held)

    @_translated
    def held_jobs(self) -> list[HeldJob]:
        with self._lock:
            rows = self._conn.execute(SQL_HELD).fetchall()
        return [held_from_row(row) for row in rows]

    # --- worker registry ----------------------------------------------------------

    @_translated
    def register_supervisor(self, info: SupervisorInfo, worker_ids: Sequence[str]) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM supervisors WHERE id = ?", (info.id,))
            conn.execute(f"INSERT INTO supervisors ({SUPERVISOR_COLUMNS}) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", supervisor_values(info))
            conn.executemany("INSERT INTO workers (id, supervisor_id, slot) VALUES (?, ?, ?)",
                             [(w, info.id, n) for n, w in enumerate(worker_ids, start=1)])

    @_translated
    def forget_supervisors(self, supervisor_ids: Sequence[str]) -> None:
        with self._write() as conn:
            conn.executemany("DELETE FROM supervisors WHERE id = ?",
                             [(s,) for s in supervisor_ids])

    @_translated
    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            rows = self._conn.execute(SQL_WORKERS).fetchall()
        return [worker_from_row(row) for row in rows]

    @_translated
    def request_stop(self, supervisor_ids: Sequence[str]) -> None:
        with self._write() as conn:
            conn.executemany("UPDATE supervisors SET stop_requested = 1 WHERE id = ?",
                             [(s,) for s in supervisor_ids])

    def clock(self) -> datetime:
        return utcnow()  # one file, one host: its clock is the database's

    # --- wake-ups -----------------------------------------------------------------

    def listen(self) -> FifoListener:
        try:
            return FifoListener(fifo_path(self.path))
        except OSError as exc:
            raise StoreError(f"cannot listen for wake-ups at {fifo_path(self.path)}: "
                             f"{exc.strerror}") from None

    def wake(self) -> None:
        poke(fifo_path(self.path))

    # --- config -------------------------------------------------------------------

    @_translated
    def get_config(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT key, value FROM config").fetchall())

    @_translated
    def set_config(self, key: str, value: str, now: datetime) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                         "updated_at = excluded.updated_at", (key, value, to_ms(now)))


def _crashable(rows: Iterable[T]) -> Iterator[T]:
    for row in rows:
        yield row
        crash_point("enqueue-row")


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (``executescript`` would commit mid-migration)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
