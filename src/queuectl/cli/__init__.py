"""The ``queuectl`` command: parsing and printing only; every decision is the API's.

Subcommands are imported only when invoked, so ``queuectl enqueue`` starts fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from ..errors import QueuectlError

#: command name -> module under queuectl.cli that defines it
COMMANDS = {
    "enqueue": "jobs", "list": "jobs", "show": "jobs", "logs": "jobs", "status": "jobs",
    "worker": "workers", "dlq": "dlq", "config": "settings",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        command = getattr(importlib.import_module(f"{__name__}.{module}"), f"{name}_command")
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", metavar="PATH", envvar="QUEUECTL_DB", show_envvar=True,
              help="SQLite database file, or a postgresql:// URL "
                   "(default: $XDG_DATA_HOME/queuectl/queuectl.db).")
@click.version_option(package_name="queuectl", prog_name="queuectl")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """A durable background job queue for shell commands.

    \b
    Examples:
      queuectl enqueue '{"id": "job1", "command": "sleep 2"}'
      queuectl worker start --count 3
      queuectl status
    """
    from ..api import Queue

    queue = Queue(db)
    ctx.obj = queue
    ctx.call_on_close(queue.close)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one ``error: …`` line and an exit code for every failure."""
    debug = os.environ.get("QUEUECTL_DEBUG") == "1"
    try:
        code = cli.main(args=argv, prog_name="queuectl", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "")
        code = 0
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _fail(f"{_one_line(exc.format_message())}{hint}", exc.exit_code)
    except QueuectlError as exc:
        if debug:
            raise
        _fail(exc.message, exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        _fail("interrupted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`queuectl list | head`): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:  # a bug: still one line, the traceback on request
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (QUEUECTL_DEBUG=1 shows a traceback)", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(code)


def queue_of(ctx: click.Context) -> Any:
    return ctx.find_root().obj
