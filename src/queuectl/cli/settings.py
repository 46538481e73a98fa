"""``config get`` and ``config set``."""

from __future__ import annotations

import click

from .. import config as rules
from . import queue_of


@click.group("config")
def config_command() -> None:
    """Read and change settings; running workers pick up changes.

    \b
    Examples:
      queuectl config get
      queuectl config set max-retries 5
    """


@config_command.command("get")
@click.argument("key", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def get_command(ctx: click.Context, key: str | None, as_json: bool) -> None:
    """Print one setting's bare value, or every setting.

    \b
    Examples:
      queuectl config get backoff-base
      queuectl config get --json
    """
    from .output import table, to_json

    queue = queue_of(ctx)
    if key is not None:
        value = queue.config.get(key)
        click.echo(to_json(value) if as_json else rules.format_value(value))
        return
    values = queue.config.all()
    if as_json:
        click.echo(to_json(values))
    else:
        click.echo(table(["KEY", "VALUE", "MEANING"],
                         [(k, rules.format_value(v), rules.KEYS[k].help) for k, v in values.items()]))


@config_command.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@click.pass_context
def set_command(ctx: click.Context, key: str, value: str) -> None:
    """Change a setting. Keys: max-retries, backoff-base, max-backoff, poll-interval,
    job-timeout, lease-timeout, max-log-bytes (dashes or underscores).

    \b
    Examples:
      queuectl config set max-retries 5
      queuectl config set max-backoff 10m
      queuectl config set max-log-bytes 1MiB
    """
    name = rules.normalize_key(key)
    stored = queue_of(ctx).config.set(name, value)
    click.echo(f"{name} = {rules.format_value(stored)}")
