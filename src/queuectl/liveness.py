"""Is a process (or a supervisor) alive?

On these machines ``kill(pid, 0)`` succeeds on a zombie and pids are reused
within minutes, so a process is judged from ``/proc/PID/stat``: it must exist,
not be a zombie, and have the start time recorded when it registered.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime

from .model import SupervisorInfo


def hostname() -> str:
    """This host's name as workers record it. ``QUEUECTL_HOSTNAME`` overrides it: hosts
    sharing a name (containers, clones) must set distinct ones."""
    return os.environ.get("QUEUECTL_HOSTNAME") or os.uname().nodename  # gethostname(), without importing socket


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def process_alive(pid: int, started: int | None) -> bool:
    current = start_time(pid)
    return current is not None and (started is None or current == started)


def supervisor_alive(info: SupervisorInfo, now: datetime, lease_timeout: float,
                     host: str | None = None) -> bool:
    """Live: heartbeated within the lease timeout and, on this host, its process still exists."""
    if (now - info.heartbeat_at).total_seconds() > lease_timeout:
        return False
    if info.host == (host or hostname()):
        return process_alive(info.pid, info.pid_start)
    return True


def attempt_processes(job_id: str, attempt: int) -> list[int]:
    """Pids of this host's processes that belong to one attempt of a job.

    Every process of an attempt inherits ``QUEUECTL_JOB_ID`` and
    ``QUEUECTL_ATTEMPT``, so they are found by environment rather than by a
    recorded pid, which the system may have reused since.
    """
    wanted = (f"QUEUECTL_JOB_ID={job_id}".encode(), f"QUEUECTL_ATTEMPT={attempt}".encode())
    own = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                variables = f.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if all(item in variables for item in wanted):
            found.append(int(entry.name))
    return found


def kill_attempt(job_id: str, attempt: int, rounds: int = 5) -> int:
    """SIGKILL every process of an attempt (orphans of a dead worker). Returns how many."""
    killed = 0
    for _ in range(rounds):  # again, in case one forked while we looked
        pids = [pid for pid in attempt_processes(job_id, attempt) if start_time(pid) is not None]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed
