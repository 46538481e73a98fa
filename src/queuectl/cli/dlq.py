"""``dlq list`` and ``dlq retry``."""

from __future__ import annotations

import click

from . import queue_of


@click.group("dlq")
def dlq_command() -> None:
    """The dead letter queue: jobs whose retries are exhausted.

    \b
    Examples:
      queuectl dlq list
      queuectl dlq retry job1 job2
      queuectl dlq retry --all
    """


@dlq_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of job objects.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """List dead jobs.

    \b
    Example:
      queuectl dlq list --json
    """
    from .output import jobs_table, to_json, use_colour

    jobs = queue_of(ctx).dead()
    click.echo(to_json([job.to_dict() for job in jobs]) if as_json else jobs_table(jobs, use_colour()))


@dlq_command.command("retry")
@click.argument("job_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead job.")
@click.pass_context
def retry_command(ctx: click.Context, job_ids: tuple[str, ...], retry_all: bool) -> None:
    """Send dead jobs back to pending with their attempts reset; prints each id.

    All or nothing: if any ID is unknown or not dead, nothing changes.

    \b
    Examples:
      queuectl dlq retry job1
      queuectl dlq retry --all
    """
    if bool(job_ids) == retry_all:
        raise click.UsageError("give job ids or --all", ctx)
    moved = queue_of(ctx).retry_dead(None if retry_all else list(job_ids), all=retry_all)
    if moved:
        click.echo("\n".join(moved))
    else:
        click.echo("no dead jobs", err=True)
