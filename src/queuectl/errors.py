"""The errors queuectl raises, each carrying the exit code the CLI maps it to.

The API raises these typed exceptions; the CLI's single ``except`` turns them
into one ``error: …`` line and ``exit_code``. Drivers' own errors
(``sqlite3.*``) never escape the store: it translates them into these.
"""

from __future__ import annotations


class QueuectlError(Exception):
    """Something queuectl cannot do."""

    exit_code: int = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(QueuectlError):
    """Invalid input."""

    exit_code = 2


class NotFound(QueuectlError):
    """No such job."""


class DuplicateJob(QueuectlError):
    """A job with that id already exists."""


class WrongState(QueuectlError):
    """The job is not in a state that allows this."""


class StoreError(QueuectlError):
    """The database cannot be used."""


class StoreUnavailable(StoreError):
    """The database server cannot be reached (the call may succeed later)."""


class StoreCorrupt(StoreError):
    """The database file is damaged; retrying cannot help."""


class StoreBusy(StoreError):
    """database busy: another process held the write lock past the busy timeout"""
