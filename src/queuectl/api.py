"""The public Python API: ``Queue``. The CLI is a thin layer over it.

    from queuectl import Queue
    q = Queue()                      # --db / QUEUECTL_DB / the default database
    job = q.enqueue("make backup", max_retries=5, timeout=600)
    print(q.get(job.id).state)

Every method validates exactly as the CLI does and raises ``queuectl.errors``
exceptions (``InvalidInput``, ``NotFound``, ``DuplicateJob``, ``WrongState``,
``StoreError``).
"""

from __future__ import annotations

import builtins
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from . import config as config_rules
from . import jobspec
from .errors import InvalidInput, NotFound, QueuectlError
from .model import Attempt, Job, JobState, WorkerInfo
from .paths import log_dir, resolve_db
from .timeutil import now as utcnow

if TYPE_CHECKING:
    from .store import Store
    from .worker.supervisor import Summary


@dataclass(frozen=True)
class Status:
    jobs: dict[JobState, int]
    active_workers: int

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": {state.value: count for state, count in self.jobs.items()},
                "workers": {"active": self.active_workers}}


@dataclass(frozen=True)
class LogOutput:
    data: bytes
    path: str | None  # the log file, which may be on another host
    partial: bool  # only the end of the output (the database's copy), not the file


@dataclass(frozen=True)
class StopReport:
    supervisors: int
    workers: int
    still_running: int  # supervisors that had not exited when the wait ended


class ConfigAccess:
    """``queue.config``: read and change settings; running workers pick changes up."""

    def __init__(self, queue: "Queue") -> None:
        self._queue = queue

    def current(self) -> config_rules.Config:
        return config_rules.Config.from_stored(self._queue.store.get_config())

    def all(self) -> dict[str, config_rules.Value]:
        """Every key with its current value (defaults included)."""
        return self.current().as_dict()

    def get(self, key: str) -> config_rules.Value:
        return self.all()[config_rules.normalize_key(key)]

    def set(self, key: str, value: object) -> config_rules.Value:
        """Validate and store; returns the value as stored. Raises InvalidInput."""
        name = config_rules.normalize_key(key)
        parsed = config_rules.parse_value(name, value)
        self._queue.store.set_config(name, config_rules.format_value(parsed), utcnow())
        return parsed


class Queue:
    """A queue of shell commands in one database (SQLite file path or URL)."""

    def __init__(self, db: str | os.PathLike[str] | None = None) -> None:
        self.url = resolve_db(None if db is None else os.fspath(db))
        self._store: Store | None = None
        self.config = ConfigAccess(self)

    @property
    def store(self) -> "Store":
        if self._store is None:
            from .store import open_store

            self._store = open_store(self.url)
        return self._store

    @property
    def log_dir(self) -> Path:
        return log_dir(self.url)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- enqueueing -------------------------------------------------------------

    def enqueue(self, command: str, *, id: str | None = None, priority: int | None = 0,
                max_retries: int | None = None, run_at: str | datetime | None = None,
                timeout: float | None = None) -> Job:
        """Add one job. ``run_at`` is an ISO-8601 string (no offset = local time) or a datetime."""
        fields = {"id": id, "command": command, "priority": priority, "max_retries": max_retries,
                  "run_at": run_at, "timeout": timeout}
        return self._insert([fields], single=True)[0]

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> builtins.list[Job]:
        """Add many jobs in one transaction: all or nothing.

        Each job is a mapping with the keys of ``enqueue``'s arguments. An invalid one
        raises ``jobspec.InvalidEntry`` (with its ``index``); an id that exists or
        repeats raises DuplicateJob; either way nothing is added."""
        return self._insert(jobs, single=False)

    def _insert(self, jobs: Iterable[Mapping[str, Any]], single: bool) -> builtins.list[Job]:
        now = utcnow()
        default_retries: int | None = None
        built = []
        for index, fields in enumerate(jobs):
            try:
                # typing.Mapping's isinstance is slow; dicts (nearly every caller) skip it.
                if type(fields) is not dict and not isinstance(fields, Mapping):
                    raise InvalidInput(f"expected a mapping of job fields, got {type(fields).__name__}")
                if default_retries is None and fields.get("max_retries") is None:
                    default_retries = int(self.config.current().max_retries)
                built.append(jobspec.build(fields, default_max_retries=default_retries or 0,
                                           now=now))
            except jobspec.InvalidEntry:
                raise
            except InvalidInput as exc:
                if single:
                    raise
                raise jobspec.InvalidEntry(index, exc.message) from None
        if not built:
            return []
        return self.store.insert_jobs(built, now)

    # --- reading ------------------------------------------------------------------

    def get(self, id: str) -> Job:
        job = self.store.get_job(_known_id(id))
        if job is None:
            raise NotFound(f"no job with id {id!r}")
        return job

    def list(self, state: JobState | str | None = None,
             limit: int | None = None) -> builtins.list[Job]:
        """Jobs in enqueue order, optionally of one state and at most ``limit`` of them."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidInput(f"limit: must be an integer >= 0, got {limit!r}")
        if limit is not None and limit >= jobspec.INT64:
            limit = None  # more than any database can hold: no limit
        return self.store.list_jobs(parse_state(state) if state is not None else None, limit)

    def dead(self, limit: int | None = None) -> builtins.list[Job]:
        """The dead letter queue."""
        return self.list(JobState.DEAD, limit)

    def attempts(self, id: str) -> builtins.list[Attempt]:
        self.get(id)
        return self.store.attempts(id)

    def log(self, id: str, stream: str = "stdout", attempt: int | None = None) -> LogOutput:
        """An attempt's captured output (the latest attempt by default).

        The full log file when it is on this host; otherwise the tail the database
        keeps (PostgreSQL), flagged ``partial``. Raises NotFound for an unknown job
        or attempt."""
        if stream not in ("stdout", "stderr"):
            raise InvalidInput(f"stream: must be stdout or stderr, got {stream!r}")
        chosen = self._attempt(id, attempt)
        path = chosen.stdout_path if stream == "stdout" else chosen.stderr_path
        if path is not None:
            try:
                with open(path, "rb") as f:
                    return LogOutput(f.read(), path, partial=False)
            except OSError:
                pass  # written on another host, or removed: fall back to the stored tail
        tail = self.store.attempt_output(id, chosen.number, stream)
        if tail is not None:
            return LogOutput(tail, path, partial=True)
        if path is not None:
            raise NotFound(f"log {path} of job {id!r} is not on this host and the database keeps no copy")
        return LogOutput(b"", None, partial=False)

    def _attempt(self, id: str, attempt: int | None) -> Attempt:
        history = self.attempts(id)
        if not history:
            raise NotFound(f"job {id!r} has not run yet")
        if attempt is None:
            chosen = history[-1]
        else:
            matches = [a for a in history if a.number == attempt]
            if not matches:
                raise NotFound(f"job {id!r} has no attempt {attempt} (attempts: "
                               f"{', '.join(str(a.number) for a in history)})")
            chosen = matches[0]
        return chosen

    def status(self) -> Status:
        return Status(jobs=self.store.count_by_state(), active_workers=len(self.workers()))

    def workers(self) -> builtins.list[WorkerInfo]:
        """Live worker slots (heartbeating, and on this host with their process alive)."""
        from .liveness import hostname, supervisor_alive  # not on the enqueue path

        lease = float(self.config.current().lease_timeout)
        now, host = self.store.clock(), hostname()  # heartbeats are on the database's clock
        return [w for w in self.store.workers() if supervisor_alive(w.supervisor, now, lease, host)]

    # --- the dead letter queue ----------------------------------------------------

    def retry_dead(self, ids: Iterable[str] | None = None, *, all: bool = False) -> builtins.list[str]:
        """Move dead jobs back to pending. All or nothing: an unknown id (NotFound) or a job
        that is not dead (WrongState) changes nothing. Returns the ids moved."""
        if all:
            if ids:
                raise InvalidInput("give job ids or all=True, not both")
            return self.store.retry_dead(None, utcnow())
        chosen = [_known_id(job_id) for job_id in ids or []]
        if not chosen:
            raise InvalidInput("give at least one job id, or all=True")
        return self.store.retry_dead(chosen, utcnow())

    # --- workers ----------------------------------------------------------------

    def work(self, count: int = 1, *, stop_when_empty: bool = False,
             poll_interval: float | None = None) -> "Summary":
        """Run ``count`` workers in this process until stopped (see ``worker start``)."""
        from .worker.supervisor import Supervisor

        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidInput(f"count: must be an integer >= 1, got {count!r}")
        if poll_interval is not None:
            poll_interval = float(config_rules.parse_value("poll-interval", poll_interval))
        supervisor = Supervisor(self.store, self.log_dir, count, stop_when_empty=stop_when_empty,
                                poll_interval=poll_interval)
        return supervisor.run()

    def stop_workers(self, timeout: float = 60.0, host: str | None = None,
                     poll: float = 0.05) -> StopReport:
        """Ask every live supervisor (or those on ``host``) to finish its current jobs and
        exit; wait up to ``timeout`` seconds for them."""
        live = {w.supervisor.id: w.supervisor for w in self.workers()
                if host is None or w.supervisor.host == host}
        slots = sum(s.slots for s in live.values())
        if not live:
            return StopReport(0, 0, 0)
        self.store.request_stop(builtins.list(live))
        from .liveness import hostname, process_alive

        host = hostname()
        for sup in live.values():
            # Local supervisors also get a nudge so they notice before their next heartbeat.
            if sup.host == host and process_alive(sup.pid, sup.pid_start):
                try:
                    os.kill(sup.pid, signal.SIGUSR1)
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        remaining = set(live)
        while remaining:
            registered = {w.supervisor.id for w in self.workers()}
            remaining = {s for s in remaining if s in registered and not (
                live[s].host == host and not process_alive(live[s].pid, live[s].pid_start))}
            if not remaining or time.monotonic() >= deadline:
                break
            time.sleep(poll)
        return StopReport(len(live), slots, len(remaining))


def _known_id(job_id: str) -> str:
    """An id to look up; one that no job could have (invalid characters, undecodable
    bytes from the command line) is simply not found, without asking the database."""
    if not isinstance(job_id, str) or not jobspec.ID_PATTERN.fullmatch(job_id):
        raise NotFound(f"no job with id {job_id!r}")
    return job_id


def parse_state(state: JobState | str) -> JobState:
    if isinstance(state, JobState):
        return state
    try:
        return JobState(str(state).lower())
    except ValueError:
        raise InvalidInput(f"unknown state {state!r}; valid states: "
                           f"{', '.join(s.value for s in JobState)}") from None


__all__ = ["Queue", "Status", "StopReport", "QueuectlError"]
