"""The PostgreSQL store: many hosts, one database.

Claims take rows with ``FOR UPDATE SKIP LOCKED`` in one statement; enqueues and
retries NOTIFY listening supervisors; migrations run under an advisory lock.
Tables live in their own schema (``queuectl`` by default) so queuectl can share
a database with an application. Connections come from a psycopg_pool pool; a
dropped connection surfaces as StoreUnavailable and the next call reconnects.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Sequence, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..crashpoints import crash_point
from ..errors import (
    DuplicateJob,
    InvalidInput,
    NotFound,
    StoreError,
    StoreUnavailable,
    WrongState,
)
from ..model import Attempt, Job, JobState, NewJob, SupervisorInfo, WorkerInfo
from ..paths import without_password
from ..timeutil import from_ms, to_ms
from . import migrations
from .base import Claim, Heartbeat, HeldJob, Result, Settlement, SettleShortcuts
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

try:
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError:  # pragma: no cover - exercised only without the extra
    raise StoreError("PostgreSQL support is not installed: pip install 'queuectl[postgres]'") from None

# The pool reports each connection it drops; the supervisor reports the failed call itself.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

DEFAULT_SCHEMA = "queuectl"
ENV_SCHEMA = "QUEUECTL_PG_SCHEMA"
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CONNECT_TIMEOUT = 5

# A settle is two statements sent together (pipeline mode) in one transaction: one
# round trip to the server however many results and claims it carries.

# Every result of the batch, each applied only under its lease token (fencing); the
# ids that applied come back.
SQL_FINISH_ALL = """
WITH r AS (
    SELECT * FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(attempts)s::int[],
                         %(states)s::text[], %(uncounts)s::int[], %(run_ats)s::bigint[],
                         %(exit_codes)s::int[], %(errors)s::text[], %(stdout_paths)s::text[],
                         %(stderr_paths)s::text[], %(stdout_tails)s::bytea[],
                         %(stderr_tails)s::bytea[])
        AS r(id, token, attempt, state, uncount, run_at, exit_code, error, stdout_path,
             stderr_path, stdout_tail, stderr_tail)
), done AS (
    UPDATE jobs j
       SET state = r.state, attempts = j.attempts - r.uncount, run_at = coalesce(r.run_at, j.run_at),
           exit_code = CASE WHEN r.uncount = 1 THEN j.exit_code ELSE r.exit_code END,
           last_error = CASE WHEN r.uncount = 1 THEN j.last_error ELSE r.error END,
           started_at = CASE WHEN r.uncount = 1 THEN NULL ELSE j.started_at END,
           worker_id = CASE WHEN r.uncount = 1 THEN NULL ELSE j.worker_id END,
           finished_at = CASE WHEN r.state = 'pending' THEN NULL ELSE %(now)s END,
           updated_at = %(now)s, lease_token = NULL, lease_expires_at = NULL
      FROM r
     WHERE j.id = r.id AND j.lease_token = r.token AND j.state = 'processing'
    RETURNING j.id
), recorded AS (
    -- An uncounted attempt keeps its record too, so its number is never reused.
    UPDATE attempts a
       SET finished_at = %(now)s, exit_code = r.exit_code, error = r.error,
           stdout_path = r.stdout_path, stderr_path = r.stderr_path,
           stdout_tail = r.stdout_tail, stderr_tail = r.stderr_tail
      FROM r JOIN done ON done.id = r.id
     WHERE a.job_id = r.id AND a.number = r.attempt
)
SELECT id FROM done"""

# Up to one due job per worker slot, each with its new attempt record and number.
SQL_CLAIM = f"""
WITH picked AS (
    SELECT seq FROM jobs
     WHERE state IN ('pending', 'failed') AND run_at <= %(now)s
     ORDER BY priority, run_at, seq
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), numbered AS (
    SELECT seq, row_number() OVER () AS n FROM picked
), slots AS (
    SELECT worker, token, n
      FROM unnest(%(workers)s::text[], %(tokens)s::text[]) WITH ORDINALITY AS s(worker, token, n)
), claimed AS (
    UPDATE jobs j
       SET state = 'processing', attempts = j.attempts + 1, worker_id = slots.worker,
           lease_token = slots.token, lease_expires_at = %(expires)s, started_at = %(now)s,
           finished_at = NULL, updated_at = %(now)s
      FROM numbered JOIN slots ON slots.n = numbered.n
     WHERE j.seq = numbered.seq
    RETURNING j.*
), started AS (
    INSERT INTO attempts (job_id, number, worker_id, started_at)
    SELECT c.id, coalesce((SELECT max(a.number) FROM attempts a WHERE a.job_id = c.id), 0) + 1,
           c.worker_id, %(now)s
      FROM claimed c
    RETURNING job_id, number
)
SELECT {', '.join('c.' + c.strip() for c in JOB_COLUMNS.split(','))}, c.lease_token, s.number
  FROM claimed c JOIN started s ON s.job_id = c.id
 ORDER BY c.priority, c.run_at, c.seq"""

SQL_RETRY_DEAD = """
UPDATE jobs
   SET state = 'pending', attempts = 0, run_at = %(now)s, exit_code = NULL, last_error = NULL,
       started_at = NULL, finished_at = NULL, worker_id = NULL, updated_at = %(now)s
 WHERE state = 'dead'"""

T = TypeVar("T")


def parse_url(url: str) -> tuple[str, str, str]:
    """Split a URL into a libpq conninfo URL, the schema to use, and the server
    ``options`` to connect with (the URL's own, plus the schema's search_path).

    The schema comes from a ``schema=`` query parameter (removed before
    connecting), else ``$QUEUECTL_PG_SCHEMA``, else ``queuectl``.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None) or os.environ.get(ENV_SCHEMA) \
        or DEFAULT_SCHEMA
    if not SCHEMA_NAME.fullmatch(schema):
        raise InvalidInput(f"invalid PostgreSQL schema name {schema!r}: use lowercase letters, "
                           "digits and _, starting with a letter or _")
    options = " ".join([v for k, v in query if k == "options"] + [f"-c search_path={schema}"])
    kept = [(k, v) for k, v in query if k not in ("schema", "options")]
    return urlunsplit(parts._replace(query=urlencode(kept))), schema, options


def _translated(method: Callable[..., T]) -> Callable[..., T]:
    """Turn psycopg's errors into queuectl's, so no driver error reaches a user."""

    @functools.wraps(method)
    def wrapper(self: "PostgresStore", *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"database {self.url} unavailable: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"database {self.url}: {_first_line(exc)}") from exc

    return wrapper


def _claim_from_row(row: Sequence[Any]) -> Claim:
    """A row of SQL_CLAIM: the job's columns, its lease token, its attempt number."""
    return Claim(job=job_from_row(row), token=row[15], attempt=row[16], worker_id=row[14] or "")


def _finish_params(results: Sequence[Result], now_ms: int) -> dict[str, Any]:
    """SQL_FINISH_ALL's parameters: one array per column, one element per result."""
    outcomes = [r.outcome for r in results]
    return {
        "now": now_ms, "ids": [r.job_id for r in results], "tokens": [r.token for r in results],
        "attempts": [r.attempt for r in results], "states": [o.state.value for o in outcomes],
        "uncounts": [0 if o.counts else 1 for o in outcomes],
        "run_ats": [None if o.run_at is None else to_ms(o.run_at) for o in outcomes],
        "exit_codes": [o.exit_code for o in outcomes], "errors": [o.error for o in outcomes],
        "stdout_paths": [r.stdout_path for r in results],
        "stderr_paths": [r.stderr_path for r in results],
        "stdout_tails": [r.stdout_tail for r in results],
        "stderr_tails": [r.stderr_tail for r in results],
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresStore(SettleShortcuts):
    """A queuectl database in a PostgreSQL schema."""

    def __init__(self, url: str) -> None:
        self.url = without_password(url)
        self.conninfo, self.schema, options = parse_url(url)
        self.channel = f"queuectl_{self.schema}"
        self._kwargs = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                        "options": options}
        try:
            with psycopg.connect(self.conninfo, **self._kwargs) as conn:  # type: ignore[arg-type]
                self._migrate(conn)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to {self.url}: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"database {self.url}: {_first_line(exc)}") from None
        # After a server restart the pool reconnects in the background, with backoff;
        # meanwhile calls fail with StoreUnavailable and their callers try again later.
        self._pool = ConnectionPool(self.conninfo, min_size=0, max_size=2, kwargs=self._kwargs,
                                    open=False, name="queuectl", timeout=CONNECT_TIMEOUT * 2,
                                    reconnect_timeout=24 * 3600)
        self._pool.open(wait=False)

    def _migrate(self, conn: "psycopg.Connection[Any]") -> None:
        known = migrations.load("postgres")
        latest = known[-1].version
        if self._schema_version(conn) == latest:
            return
        with conn.transaction():
            # One migrator at a time, however many workers start together.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"queuectl:{self.schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            version = (row[0] if row else None) or 0
            if version > latest:
                raise StoreError(f"database {self.url} has schema version {version}, newer than "
                                 f"this queuectl understands ({latest}): upgrade queuectl")
            for migration in known:
                if migration.version > version:
                    conn.execute(migration.sql.encode())  # no parameters: several statements at once
                    crash_point("in-migration")
                    conn.execute("DELETE FROM schema_version")
                    conn.execute("INSERT INTO schema_version VALUES (%s)", (migration.version,))

    @staticmethod
    def _schema_version(conn: "psycopg.Connection[Any]") -> int | None:
        if conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return row[0] if row else None

    @contextmanager
    def _tx(self) -> Iterator["psycopg.Connection[Any]"]:
        with self._pool.connection() as conn:
            with conn.transaction():
                yield conn

    @contextmanager
    def _conn(self) -> Iterator["psycopg.Connection[Any]"]:
        with self._pool.connection() as conn:
            yield conn

    def _notify(self, conn: "psycopg.Connection[Any]", payload: str) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))

    def close(self) -> None:
        self._pool.close()

    # --- jobs -------------------------------------------------------------------

    @_translated
    def insert_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        repeated = first_repeated([j.id for j in jobs])
        if repeated is not None:
            raise DuplicateJob(f"job id {repeated!r} appears twice")
        values, records = new_job_rows(jobs, now)
        try:
            with self._tx() as conn:
                with conn.cursor() as cur:
                    with cur.copy("COPY jobs (id, command, max_retries, priority, run_at, timeout, "
                                  "created_at, updated_at, state) FROM STDIN") as copy:
                        for row in values:
                            copy.write_row((*row, "pending"))
                            crash_point("enqueue-row")
                self._notify(conn, "jobs")
        except psycopg.errors.UniqueViolation:
            raise DuplicateJob(f"job {self._first_existing([j.id for j in jobs])!r} already exists") from None
        return records

    def _first_existing(self, ids: list[str]) -> str:
        with self._conn() as conn:
            row = conn.execute("SELECT id FROM jobs WHERE id = ANY(%s) LIMIT 1", (ids,)).fetchone()
        return str(row[0]) if row else ids[0]

    @_translated
    def get_job(self, job_id: str) -> Job | None:
        with self._conn() as conn:
            row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return None if row is None else job_from_row(row)

    @_translated
    def list_jobs(self, state: JobState | None = None, limit: int | None = None) -> list[Job]:
        query = f"SELECT {JOB_COLUMNS} FROM jobs"
        params: list[Any] = []
        if state is not None:
            query += " WHERE state = %s"
            params.append(state.value)
        query += " ORDER BY seq"
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        with self._conn() as conn:
            return [job_from_row(row) for row in conn.execute(query.encode(), params)]

    @_translated
    def count_by_state(self) -> dict[JobState, int]:
        counts = {state: 0 for state in JobState}
        with self._conn() as conn:
            for state, count in conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
                counts[JobState(state)] = count
        return counts

    @_translated
    def attempts(self, job_id: str) -> list[Attempt]:
        with self._conn() as conn:
            rows = conn.execute(f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = %s "
                                "ORDER BY number", (job_id,)).fetchall()
        return [attempt_from_row(r) for r in rows]

    @_translated
    def attempt_output(self, job_id: str, attempt: int, stream: str) -> bytes | None:
        column = {"stdout": "stdout_tail", "stderr": "stderr_tail"}[stream]
        with self._conn() as conn:
            row = conn.execute(f"SELECT {column} FROM attempts WHERE job_id = %s AND number = %s",
                               (job_id, attempt)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    @_translated
    def next_due_at(self) -> datetime | None:
        with self._conn() as conn:
            row = conn.execute("SELECT min(run_at) FROM jobs WHERE state IN ('pending', 'failed')"
                               ).fetchone()
        return time_or_none(row[0] if row else None)

    @_translated
    def retry_dead(self, job_ids: Sequence[str] | None, now: datetime) -> list[str]:
        params = {"now": to_ms(now)}
        with self._tx() as conn:
            if job_ids is None:
                # RETURNING has no order: sort by enqueue order, as list and dlq list show them.
                moved = [job_id for _seq, job_id in sorted(conn.execute(
                    SQL_RETRY_DEAD + " RETURNING seq, id", params))]
            else:
                moved = list(dict.fromkeys(job_ids))
                states = dict(conn.execute("SELECT id, state FROM jobs WHERE id = ANY(%s) FOR UPDATE",
                                           (moved,)).fetchall())
                for job_id in moved:
                    if job_id not in states:
                        raise NotFound(f"no job with id {job_id!r}")
                    if states[job_id] != JobState.DEAD.value:
                        raise WrongState(f"job {job_id!r} is {states[job_id]}, not dead")
                conn.execute(SQL_RETRY_DEAD + " AND id = ANY(%(ids)s)", {**params, "ids": moved})
            crash_point("in-dlq-retry")
            if moved:
                self._notify(conn, "jobs")
        return moved

    # --- workers' verbs -----------------------------------------------------------

    @_translated
    def settle(self, results: Sequence[Result], worker_ids: Sequence[str], now: datetime,
               lease_seconds: float) -> Settlement:
        if not results and not worker_ids:
            return Settlement([], [])
        now_ms = to_ms(now)
        tokens = [os.urandom(16).hex() for _ in worker_ids]
        claim_params = {
            "now": now_ms, "limit": len(worker_ids), "workers": list(worker_ids),
            "tokens": tokens, "expires": to_ms(now + timedelta(seconds=lease_seconds)),
        }
        if not results:
            # A claim alone is one statement, atomic by itself: no BEGIN/COMMIT round trip
            # (an idle worker woken by NOTIFY starts its job that much sooner).
            with self._pool.connection() as conn:
                rows = conn.execute(SQL_CLAIM, claim_params).fetchall()
            return Settlement([], [_claim_from_row(row) for row in rows])
        with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            finished = conn.execute(SQL_FINISH_ALL, _finish_params(results, now_ms)) \
                if results else None
            claimed = conn.execute(SQL_CLAIM, claim_params) if worker_ids else None
            done = {row[0] for row in finished.fetchall()} if finished is not None else set()
            rows = claimed.fetchall() if claimed is not None else []
            if done:
                crash_point("in-result-transaction")
            if any(r.outcome.state in (JobState.FAILED, JobState.PENDING) and r.job_id in done
                   for r in results):
                self._notify(conn, "jobs")  # idle workers recompute when the next job is due
        return Settlement([r.job_id in done for r in results],
                          [_claim_from_row(row) for row in rows])

    @_translated
    def heartbeat(self, supervisor_id: str, tokens: Sequence[str], now: datetime,
                  lease_seconds: float) -> Heartbeat:
        now_ms = to_ms(now)
        expires = to_ms(now + timedelta(seconds=lease_seconds))
        with self._tx() as conn:
            row = conn.execute("UPDATE supervisors SET heartbeat_at = %s WHERE id = %s "
                               "RETURNING stop_requested", (now_ms, supervisor_id)).fetchone()
            held = {r[0] for r in conn.execute(
                "UPDATE jobs SET lease_expires_at = %s WHERE lease_token = ANY(%s) "
                "AND state = 'processing' RETURNING lease_token", (expires, list(tokens)))}
        return Heartbeat(registered=row is not None, stop_requested=bool(row and row[0]),
                         lost_tokens=frozenset(tokens) - held)

    @_translated
    def held_jobs(self) -> list[HeldJob]:
        with self._conn() as conn:
            rows = conn.execute(SQL_HELD).fetchall()
        return [held_from_row(row) for row in rows]

    # --- worker registry ----------------------------------------------------------

    @_translated
    def register_supervisor(self, info: SupervisorInfo, worker_ids: Sequence[str]) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM supervisors WHERE id = %s", (info.id,))
            conn.execute(f"INSERT INTO supervisors ({SUPERVISOR_COLUMNS}) "
                         "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", supervisor_values(info))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO workers (id, supervisor_id, slot) VALUES (%s, %s, %s)",
                                [(w, info.id, n) for n, w in enumerate(worker_ids, start=1)])

    @_translated
    def forget_supervisors(self, supervisor_ids: Sequence[str]) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM supervisors WHERE id = ANY(%s)", (list(supervisor_ids),))

    @_translated
    def workers(self) -> list[WorkerInfo]:
        with self._conn() as conn:
            rows = conn.execute(SQL_WORKERS).fetchall()
        return [worker_from_row(row) for row in rows]

    @_translated
    def request_stop(self, supervisor_ids: Sequence[str]) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE supervisors SET stop_requested = 1 WHERE id = ANY(%s)",
                         (list(supervisor_ids),))
            self._notify(conn, "control")

    @_translated
    def clock(self) -> datetime:
        with self._conn() as conn:
            row = conn.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
                               ).fetchone()
        assert row is not None
        return from_ms(int(row[0]))

    # --- wake-ups -----------------------------------------------------------------

    def listen(self) -> "NotifyListener":
        return NotifyListener(self.conninfo, self._kwargs, self.channel)

    @_translated
    def wake(self) -> None:
        with self._conn() as conn:
            self._notify(conn, "jobs")

    # --- config -------------------------------------------------------------------

    @_translated
    def get_config(self) -> dict[str, str]:
        with self._conn() as conn:
            return dict(conn.execute("SELECT key, value FROM config").fetchall())

    @_translated
    def set_config(self, key: str, value: str, now: datetime) -> None:
        with self._tx() as conn:
            conn.execute("INSERT INTO config (key, value, updated_at) VALUES (%s, %s, %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                         "updated_at = excluded.updated_at", (key, value, to_ms(now)))
            self._notify(conn, "control")


class NotifyListener:
    """LISTEN on a connection of its own. NOTIFY reaches every listener (``broadcast``).

    If the connection drops, ``fileno()`` is None until a reconnect succeeds;
    reconnects are tried with backoff whenever ``fileno()`` is asked.
    """

    broadcast = True

    def __init__(self, conninfo: str, kwargs: dict[str, Any], channel: str) -> None:
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._channel = channel
        self._conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0
        self._backoff = 0.1
        self._connect()

    def _connect(self) -> None:
        try:
            conn = psycopg.connect(self._conninfo, **self._kwargs)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except psycopg.Error:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
            return
        self._conn = conn
        self._backoff = 0.1

    def fileno(self) -> int | None:
        if self._conn is None and time.monotonic() >= self._retry_at:
            self._connect()
        return None if self._conn is None else self._conn.fileno()

    def drain(self) -> set[str]:
        """Consume pending notifications; returns their kinds ("jobs", "control")."""
        if self._conn is None:
            return set()
        try:
            return {n.payload for n in self._conn.notifies(timeout=0)}
        except psycopg.Error:
            self._drop()
            return {"jobs", "control"}  # we may have missed some: look at everything again

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None
        self._retry_at = time.monotonic()

    def close(self) -> None:
        self._drop()
