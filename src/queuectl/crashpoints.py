"""Named crash points, for proving crash recovery: with ``QUEUECTL_CRASH_AT=POINT`` (or
``POINT:N``, the Nth time it is reached) the process SIGKILLs itself there.

Points: ``after-claim``, ``after-spawn``, ``before-result``, ``in-result-transaction``,
``enqueue-row`` (per row of a bulk insert, inside its transaction), ``in-dlq-retry``,
``in-migration``. Unset (always, outside tests), a point costs one comparison.
"""

from __future__ import annotations

import os
import signal

ENV = "QUEUECTL_CRASH_AT"
_POINT, _, _NTH = (os.environ.get(ENV) or "").partition(":")
_seen = 0


def crash_point(name: str) -> None:
    global _seen
    if name != _POINT:
        return
    _seen += 1
    if _seen >= int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def armed(name: str) -> bool:
    """Whether ``name`` is the crash point set for this process (hot loops check once)."""
    return name == _POINT
