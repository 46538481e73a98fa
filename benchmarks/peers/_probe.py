"""The pickup probe loop, shared by every peer (standard library only: it runs both in
the project's venv, for tsp, and in the peers venv, for the Python-API peers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable


def wait_stamp(stamp: Path, timeout: float) -> int:
    """The nanosecond timestamp a probe job wrote, once the file is complete."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = stamp.read_bytes()
        except FileNotFoundError:
            data = b""
        if data.endswith(b"\n"):
            return int(data)
        if time.monotonic() > deadline:
            raise TimeoutError(f"probe job writing {stamp} did not run in {timeout} s")
        time.sleep(0.0002)


def pickup(enqueue: Callable[[str], object], probes: int, folder: Path,
           gap: float = 0.05, idle: float = 1.0) -> list[float]:
    """One warm-up job (proves the workers are up; not counted), ``idle`` seconds of
    idleness, then ``probes`` jobs one at a time, ``gap`` apart, each running
    ``date +%s%N > FILE``. Milliseconds from enqueue returning to the stamp.

    A stamp left by an earlier run in the same folder is removed first: read as this
    probe's, it would give a negative latency."""
    folder.mkdir(parents=True, exist_ok=True)
    warm = folder / "warmup"
    warm.unlink(missing_ok=True)
    enqueue(f"date +%s%N > {warm}")
    wait_stamp(warm, 120)
    time.sleep(idle)
    latencies = []
    for n in range(probes):
        stamp = folder / f"probe{n}"
        stamp.unlink(missing_ok=True)
        enqueue(f"date +%s%N > {stamp}")
        returned = time.time_ns()
        latencies.append((wait_stamp(stamp, 30) - returned) / 1e6)
        time.sleep(gap)
    return latencies
