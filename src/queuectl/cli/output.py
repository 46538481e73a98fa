"""Rendering for people (aligned tables, colour on a terminal) and for scripts
(JSON), both drawn from the same records. Renderers return strings."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

import click

from ..model import Attempt, Job, JobState, WorkerInfo
from ..timeutil import iso

STATE_COLOURS = {
    JobState.PENDING: "cyan", JobState.PROCESSING: "yellow", JobState.COMPLETED: "green",
    JobState.FAILED: "magenta", JobState.DEAD: "red",
}


def use_colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def state_text(state: JobState, colour: bool) -> str:
    return str(click.style(state.value, fg=STATE_COLOURS[state])) if colour else state.value


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    from tabulate import tabulate  # imported only when a table is drawn

    return str(tabulate(list(rows), headers=list(headers), tablefmt="simple",
                    missingval="-", disable_numparse=True))


def short_time(value: Any) -> str:
    text = iso(value)
    return "-" if text is None else text[:19].replace("T", " ")


def ellipsis(text: str | None, width: int) -> str:
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def jobs_table(jobs: Sequence[Job], colour: bool) -> str:
    if not jobs:
        return "no jobs"
    return table(
        ["ID", "STATE", "ATTEMPTS", "PRIORITY", "RUN AT (UTC)", "COMMAND", "LAST ERROR"],
        [(j.id, state_text(j.state, colour), f"{j.attempts}/{j.max_retries + 1}", j.priority,
          short_time(j.run_at), ellipsis(j.command, 40), ellipsis(j.last_error, 30))
         for j in jobs])


def job_detail(job: Job, history: Sequence[Attempt], colour: bool) -> str:
    fields = job.to_dict()
    fields["state"] = state_text(job.state, colour)
    width = max(len(k) for k in fields)
    lines = [f"{key.ljust(width)}  {'-' if value is None else value}" for key, value in fields.items()]
    if history:
        lines.append("")
        lines.append(table(
            ["ATTEMPT", "STARTED (UTC)", "FINISHED (UTC)", "EXIT", "ERROR", "STDOUT", "STDERR"],
            [(a.number, short_time(a.started_at), short_time(a.finished_at), a.exit_code,
              ellipsis(a.error, 30), a.stdout_path or "(none)", a.stderr_path or "(none)")
             for a in history]))
    return "\n".join(lines)


def status_text(counts: dict[JobState, int], active: int, colour: bool) -> str:
    """The same layout as ``table``, drawn by hand: ``status`` is called in loops and
    importing tabulate would double its time."""
    rows = [(state.value, state_text(state, colour), str(counts.get(state, 0)))
            for state in JobState]
    rows.append(("workers", "workers", f"{active} active"))
    first = max(len("STATE"), *(len(plain) for plain, _shown, _n in rows))
    second = max(len("JOBS"), *(len(n) for _plain, _shown, n in rows))
    lines = [f"{'STATE'.ljust(first)}  JOBS", f"{'-' * first}  {'-' * second}"]
    lines += [f"{shown}{' ' * (first - len(plain))}  {n}" for plain, shown, n in rows]
    return "\n".join(lines)


def workers_table(workers: Sequence[WorkerInfo]) -> str:
    if not workers:
        return "no workers running"
    return table(["WORKER", "PID", "HOST", "STARTED (UTC)", "HEARTBEAT (UTC)", "CURRENT JOB"],
                 [(w.id, w.supervisor.pid, w.supervisor.host, short_time(w.supervisor.started_at),
                   short_time(w.supervisor.heartbeat_at), w.current_job or "-") for w in workers])
