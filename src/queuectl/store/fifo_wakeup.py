"""Wake-ups for a file database: a named pipe beside it that writers poke.

Idle supervisors read the pipe (through ``select``), so a job enqueued by any
process starts at once instead of at the next poll. Best effort by design: a
lost poke only means the job waits for ``poll-interval``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def fifo_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + "-wake")


def poke(path: Path) -> None:
    """Wake one listening supervisor, if any; never blocks, never fails."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no pipe yet, or nobody listening (ENXIO)
        return
    try:
        os.write(fd, b"!")
    except OSError:  # the pipe is full: a wake-up is already pending
        pass
    finally:
        os.close(fd)


class FifoListener:
    """The reading end, held by a supervisor. ``fileno()`` is readable after a poke.
    One reader takes each poke, so only supervisors with a free slot listen."""

    broadcast = False

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            os.mkfifo(path, 0o600)
        except FileExistsError:
            if not stat.S_ISFIFO(os.stat(path).st_mode):
                raise
        self._read = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # Hold a writer ourselves: with none, a FIFO reads as end-of-file forever and select spins.
        self._keep_open = os.open(path, os.O_WRONLY | os.O_NONBLOCK)

    def fileno(self) -> int:
        return self._read

    def drain(self) -> set[str]:
        try:
            while os.read(self._read, 4096):
                pass
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
        return {"jobs"}

    def close(self) -> None:
        os.close(self._read)
        os.close(self._keep_open)
