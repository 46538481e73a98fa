"""``enqueue``, ``list``, ``show``, ``logs``, ``status``."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from .. import jobspec
from ..config import parse_duration
from ..errors import InvalidInput
from ..timeutil import now as utcnow
from . import queue_of


def _read_source(path: str) -> str:
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{'stdin' if path == '-' else path} is not UTF-8 text "
                           f"(invalid byte at offset {exc.start})") from None


FLAG_ONLY = ("id", "priority", "max_retries", "timeout", "run_at", "delay")


@click.command("enqueue")
@click.argument("job_json", metavar="[JSON]", required=False)
@click.option("--file", "-f", "file", metavar="PATH",
              help="Enqueue every job in PATH (JSON Lines or one JSON array; - reads stdin). "
                   "All or nothing.")
@click.option("--command", "-c", "command", metavar="CMD", help="The shell command to run.")
@click.option("--id", "job_id", metavar="ID", help="With --command: the job id (default: generated).")
@click.option("--priority", type=int, metavar="N", help="With --command: lower runs first (default 0).")
@click.option("--max-retries", type=int, metavar="N",
              help="With --command: retries after the first attempt (default: config max-retries).")
@click.option("--timeout", metavar="SECONDS", help="With --command: kill the job after this long (30, 30s, 5m).")
@click.option("--run-at", metavar="TIME", help="With --command: not before this ISO-8601 time (no offset = local).")
@click.option("--delay", metavar="DURATION", help="With --command: not before now + DURATION (30, 30s, 5m, 2h).")
@click.pass_context
def enqueue_command(ctx: click.Context, /, job_json: str | None, file: str | None,
                    command: str | None, **flags: Any) -> None:
    """Add a job (or many) and print each new job's id.

    \b
    Examples:
      queuectl enqueue '{"id": "job1", "command": "sleep 2", "max_retries": 2}'
      queuectl enqueue --command 'make backup' --priority -1 --delay 5m
      queuectl enqueue --file jobs.jsonl
      seq 3 | sed 's/.*/{"command": "echo &"}/' | queuectl enqueue --file -

    JSON keys: id, command (required), max_retries, priority, run_at, timeout.
    """
    sources = [name for name, given in (("JSON", job_json is not None), ("--file", file is not None),
                                        ("--command", command is not None)) if given]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of JSON, --file or --command"
                               + (f" (got {' and '.join(sources)})" if sources else ""), ctx)
    used_flags = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value is not None]
    if command is None and used_flags:
        raise click.UsageError(f"{used_flags[0]} goes with --command", ctx)
    queue = queue_of(ctx)
    if job_json is not None:
        click.echo(_enqueue_one(queue, jobspec.loads_object(job_json)))
    elif file is not None:
        entries = list(jobspec.parse_batch(_read_source(file)))
        try:
            jobs = queue.enqueue_many([fields for _where, fields in entries])
        except jobspec.InvalidEntry as exc:
            raise InvalidInput(f"{entries[exc.index][0]}: {exc.detail}") from None
        if jobs:
            click.echo("\n".join(job.id for job in jobs))
    else:
        click.echo(_enqueue_one(queue, _flag_fields(command, flags)))


def _enqueue_one(queue: Any, fields: dict[str, Any]) -> str:
    try:
        return str(queue.enqueue_many([fields])[0].id)
    except jobspec.InvalidEntry as exc:
        raise InvalidInput(exc.detail) from None


def _flag_fields(command: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"command": command, "id": flags["job_id"],
                              "priority": flags["priority"], "max_retries": flags["max_retries"]}
    if flags["timeout"] is not None:
        fields["timeout"] = parse_duration(flags["timeout"], "--timeout")
    if flags["run_at"] is not None and flags["delay"] is not None:
        raise InvalidInput("give --run-at or --delay, not both")
    if flags["run_at"] is not None:
        fields["run_at"] = flags["run_at"]
    if flags["delay"] is not None:
        delay = parse_duration(flags["delay"], "--delay")
        if delay < 0:
            raise InvalidInput(f"--delay: must be >= 0, got {flags['delay']!r}")
        fields["run_at"] = utcnow() + timedelta(seconds=delay)
    return fields


@click.command("list")
@click.option("--state", metavar="STATE", help="Only jobs in STATE: pending, processing, completed, failed, dead.")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="At most N jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of job objects.")
@click.pass_context
def list_command(ctx: click.Context, state: str | None, limit: int | None, as_json: bool) -> None:
    """List jobs in enqueue order.

    \b
    Examples:
      queuectl list --state failed
      queuectl list --limit 20 --json
    """
    from .output import jobs_table, to_json, use_colour

    jobs = queue_of(ctx).list(state, limit)
    click.echo(to_json([job.to_dict() for job in jobs]) if as_json else jobs_table(jobs, use_colour()))


@click.command("show")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job as a JSON object.")
@click.pass_context
def show_command(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show one job, its attempts and their log files.

    \b
    Example:
      queuectl show job1 --json
    """
    from .output import job_detail, to_json, use_colour

    queue = queue_of(ctx)
    job = queue.get(job_id)
    history = queue.attempts(job_id)
    if as_json:
        data = job.to_dict()
        latest = history[-1] if history else None
        data["logs"] = {"stdout": latest and latest.stdout_path,
                        "stderr": latest and latest.stderr_path}
        data["history"] = [a.to_dict() for a in history]
        click.echo(to_json(data))
    else:
        click.echo(job_detail(job, history, use_colour()))


@click.command("logs")
@click.argument("job_id", metavar="ID")
@click.option("--stderr", "stderr", is_flag=True,
              help="Print standard error instead of standard output.")
@click.option("--attempt", type=click.IntRange(min=1), metavar="N",
              help="Attempt N instead of the latest.")
@click.pass_context
def logs_command(ctx: click.Context, job_id: str, stderr: bool, attempt: int | None) -> None:
    """Print the captured output of a job's latest (or Nth) attempt.

    \b
    Examples:
      queuectl logs job1
      queuectl logs job1 --stderr --attempt 2
    """
    output = queue_of(ctx).log(job_id, "stderr" if stderr else "stdout", attempt)
    if output.partial:
        click.echo(f"(the log file {output.path} is on another host: showing the last "
                   f"{len(output.data)} bytes kept in the database)", err=True)
    sys.stdout.buffer.write(output.data)
    sys.stdout.buffer.flush()


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {\"jobs\": {state: n}, \"workers\": {\"active\": n}}.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Count jobs in each state and live workers.

    \b
    Example:
      queuectl status --json
    """
    from .output import status_text, to_json, use_colour

    status = queue_of(ctx).status()
    click.echo(to_json(status.to_dict()) if as_json
               else status_text(status.jobs, status.active_workers, use_colour()))
