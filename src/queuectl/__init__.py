"""queuectl: a durable background job queue for shell commands.

The public API is ``Queue`` (see ``queuectl.api``); records are ``Job`` and
``JobState``; errors live in ``queuectl.errors``. Importing this package is
cheap: nothing heavy is loaded until it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Queue", "Job", "JobState", "QueuectlError", "__version__"]

if TYPE_CHECKING:
    from .api import Queue
    from .errors import QueuectlError
    from .model import Job, JobState


def __getattr__(name: str) -> Any:
    if name == "Queue":
        from .api import Queue

        return Queue
    if name in ("Job", "JobState"):
        from . import model

        return getattr(model, name)
    if name == "QueuectlError":
        from .errors import QueuectlError

        return QueuectlError
    raise AttributeError(f"module 'queuectl' has no attribute {name!r}")
