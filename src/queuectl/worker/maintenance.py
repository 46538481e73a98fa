"""Recovery of lost jobs: a processing job whose worker stopped heartbeating
within ``lease-timeout`` (or, on this host, whose supervisor process is gone)
is ended as a failed attempt ("worker lost") under the normal retry rules.

Run by every supervisor on start-up and at every heartbeat. The write is
fenced by the lease token, so a worker that was only slow and a recoverer
racing each other cannot both win.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..config import Config
from ..lifecycle import AttemptResult, decide
from ..liveness import kill_attempt, process_alive, supervisor_alive
from ..logs import attempt_paths, read_tail
from ..store import HeldJob, Store

log = logging.getLogger("queuectl.worker")


@dataclass(frozen=True)
class Recovery:
    recovered: list[str]  # job ids
    forgotten: list[str]  # supervisor ids removed from the registry


def is_lost(held: HeldJob, now: datetime, host: str) -> bool:
    if held.lease_expires_at < now:
        return True
    sup = held.supervisor
    return sup is not None and sup.host == host and not process_alive(sup.pid, sup.pid_start)


def recover_lost_jobs(store: Store, config: Config, now: datetime, host: str,
                      own_supervisor: str, log_dir: Path) -> Recovery:
    recovered = []
    for held in store.held_jobs():
        sup = held.supervisor
        if sup is not None and sup.id == own_supervisor:
            continue  # ours: our heartbeat keeps the lease; a lost one is fenced there
        if not is_lost(held, now, host):
            continue
        job = held.claim.job
        logs: list[str | None] = [None, None]
        tails: list[bytes | None] = [None, None]
        if sup is None or sup.host == host:
            # Its processes may still run here, orphaned: end them before anyone reruns the job.
            kill_attempt(job.id, held.claim.attempt)
            # What it wrote before it was lost is kept, as for any attempt.
            for n, path in enumerate(attempt_paths(log_dir, job.id, held.claim.attempt)):
                if path.exists():
                    logs[n], tails[n] = str(path), read_tail(path)
        outcome = decide(job.attempts, job.max_retries, AttemptResult(lost=True), config, now)
        if store.finish_attempt(job.id, held.claim.token, held.claim.attempt, outcome, now,
                                logs[0], logs[1], tails[0], tails[1]):
            recovered.append(job.id)
            log.warning("recovered job %s from lost worker %s: now %s", job.id,
                        held.claim.worker_id, outcome.state.value)
    dead = {w.supervisor.id for w in store.workers()
            if w.supervisor.id != own_supervisor
            and not supervisor_alive(w.supervisor, now, config.lease_timeout, host)}
    if dead:
        store.forget_supervisors(sorted(dead))
    return Recovery(recovered=recovered, forgotten=sorted(dead))
