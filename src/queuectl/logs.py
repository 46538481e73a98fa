"""Attempt output: capped log files, created only when a stream has output."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidInput
from .paths import private_dir

#: How much of the end of each stream is also kept for the database (see Store.finish_attempt).
TAIL_BYTES = 64 * 1024


def attempt_paths(log_dir: Path, job_id: str, attempt: int) -> tuple[Path, Path]:
    base = log_dir / job_id
    return base / f"{attempt}.stdout", base / f"{attempt}.stderr"


def read_tail(path: Path) -> bytes | None:
    """The last TAIL_BYTES of a log file, as CappedLog.tail would have kept them."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - TAIL_BYTES))
            return f.read() or None
    except OSError:
        return None


class CappedLog:
    """Keeps the first ``limit`` bytes written, then one marker line; drops the rest.

    The file is created on the first byte, so a silent stream costs no file.
    A failure to write (disk full, no permission) is remembered in ``error``
    and the rest is dropped: the caller keeps draining the pipe either way.
    """

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.written = 0
        self.dropped = 0
        self.error: str | None = None
        self._fd: int | None = None
        self._tail = bytearray()  # the last TAIL_BYTES of everything written, kept or not

    @property
    def created(self) -> bool:
        return self._fd is not None

    @property
    def tail(self) -> bytes | None:
        """The end of the stream (None if it had no output)."""
        return bytes(self._tail) if self._tail else None

    def write(self, data: bytes) -> None:
        self._tail += data[-TAIL_BYTES:]
        if len(self._tail) > TAIL_BYTES:
            del self._tail[:-TAIL_BYTES]
        if self.error is not None:
            return
        room = self.limit - self.written
        keep = data[:room] if room > 0 else b""
        self.dropped += len(data) - len(keep)
        try:
            if self._fd is None:
                private_dir(self.path.parent)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            view = memoryview(keep)
            while view:
                view = view[os.write(self._fd, view):]
            self.written += len(keep)
        except OSError as exc:
            self.error = f"cannot write log {self.path}: {exc.strerror}"
        except InvalidInput as exc:  # the folder is not safely ours
            self.error = f"cannot write log {self.path}: {exc.message}"

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            if self.dropped and self.error is None:
                os.write(self._fd, f"\n[queuectl: output truncated at {self.limit} bytes; "
                                   f"{self.dropped} more bytes dropped]\n".encode())
        except OSError as exc:
            self.error = f"cannot write log {self.path}: {exc.strerror}"
        finally:
            os.close(self._fd)
