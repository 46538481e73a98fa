"""``worker start``, ``worker stop``, ``worker list``."""

from __future__ import annotations

import logging
import sys

import click

from ..errors import QueuectlError
from . import queue_of


@click.group("worker")
def worker_command() -> None:
    """Start, stop and list workers.

    \b
    Examples:
      queuectl worker start --count 4
      queuectl worker stop
    """


@worker_command.command("start")
@click.option("--count", "-n", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
              help="Worker slots: jobs run at the same time.")
@click.option("--stop-when-empty", is_flag=True,
              help="Exit 0 once no job is pending, failed or processing.")
@click.option("--poll-interval", metavar="SECONDS",
              help="Look for due jobs this often when no wake-up arrives (default: config poll-interval).")
@click.option("--detach", is_flag=True,
              help="Run in the background; print the supervisor's pid; log beside the database.")
@click.pass_context
def start_command(ctx: click.Context, count: int, stop_when_empty: bool,
                  poll_interval: str | None, detach: bool) -> None:
    """Run workers until Ctrl-C, SIGTERM or `queuectl worker stop`.

    The first signal lets running jobs finish; a second one stops them and
    puts them back to pending.

    \b
    Examples:
      queuectl worker start --count 3
      queuectl worker start --stop-when-empty
      queuectl worker start --count 8 --detach
    """
    queue = queue_of(ctx)
    if detach:
        from ..worker.detach import start_detached

        args = ["worker", "start", "--count", str(count)]
        if stop_when_empty:
            args.append("--stop-when-empty")
        if poll_interval is not None:
            args += ["--poll-interval", poll_interval]
        click.echo(start_detached(queue, args))
        return
    # A busy worker logs two lines per job: skip what the format does not show (the
    # logging HOWTO's "Optimization": caller, thread and process lookups per record).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SecondsFormatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("queuectl")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    summary = queue.work(count, stop_when_empty=stop_when_empty, poll_interval=poll_interval)
    click.echo(f"stopped supervisor {summary.supervisor_id} ({_count(summary.workers, 'worker')}, "
               f"{_count(summary.jobs_run, 'attempt')} run)")


@worker_command.command("stop")
@click.option("--timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS", help="How long to wait for the workers to exit.")
@click.option("--host", metavar="NAME", help="Only the workers on host NAME.")
@click.pass_context
def stop_command(ctx: click.Context, timeout: float, host: str | None) -> None:
    """Ask every running worker on this database to finish its current job and exit.

    \b
    Examples:
      queuectl worker stop --timeout 120
      queuectl worker stop --host build-3
    """
    report = queue_of(ctx).stop_workers(timeout, host=host)
    if report.supervisors == 0:
        click.echo("no workers running")
        return
    if report.still_running:
        raise QueuectlError(f"{report.still_running} of {report.supervisors} supervisors still "
                            f"running after {timeout:g}s; they exit after their current jobs")
    click.echo(f"stopped {_count(report.supervisors, 'supervisor')} "
               f"({_count(report.workers, 'worker')})")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@worker_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """List live workers: id, pid, host, started, last heartbeat, current job.

    \b
    Example:
      queuectl worker list --json
    """
    from .output import to_json, workers_table

    workers = queue_of(ctx).workers()
    click.echo(to_json([w.to_dict() for w in workers]) if as_json else workers_table(workers))


class _SecondsFormatter(logging.Formatter):
    """Formats each second's timestamp once, not once per line."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, super().formatTime(record, datefmt))
        return self._second[1]
