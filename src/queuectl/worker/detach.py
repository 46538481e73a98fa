"""``worker start --detach``: the same supervisor as a background process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from ..errors import QueuectlError
from ..paths import private_dir, sqlite_path, worker_log

if TYPE_CHECKING:
    from ..api import Queue

#: How long to wait for the background supervisor to register before returning anyway.
REGISTER_WAIT = 10.0


def start_detached(queue: "Queue", args: list[str]) -> int:
    """Start ``queuectl worker start ARGS`` in a new session, logging beside the database.
    Returns its pid once it has registered (or failed with a message from its log)."""
    path = sqlite_path(queue.url)
    db = str(path.resolve()) if path is not None else queue.url
    log_path = worker_log(queue.url)
    private_dir(log_path.parent)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # The URL travels in the environment, not argv, where `ps` would show a password.
        proc = subprocess.Popen([sys.executable, "-m", "queuectl", *args],
                                env={**os.environ, "QUEUECTL_DB": db},
                                stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        raise QueuectlError(f"cannot start a worker process: {exc.strerror}") from None
    finally:
        os.close(log_fd)
    deadline = time.monotonic() + REGISTER_WAIT
    while time.monotonic() < deadline:
        if proc.poll() == 0:
            break  # it ran and finished already (--stop-when-empty on an empty queue)
        if proc.poll() is not None:
            raise QueuectlError(f"the worker exited at once (code {proc.returncode}): "
                                f"{_last_line(log_path)} (log: {log_path})")
        if any(w.supervisor.pid == proc.pid for w in queue.store.workers()):
            break
        time.sleep(0.02)
    return proc.pid


def _last_line(path: os.PathLike[str]) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read()[-4096:].decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
