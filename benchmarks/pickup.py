"""Pickup latency: time from `enqueue` returning to the job's first instruction.

Starts `queuectl worker start --count 2` with poll-interval 60 s (so wake-ups, not
polling, must start the job), enqueues 50 jobs one at a time through the Python API,
each writing `date +%s%N`, and prints p50/p95/max.

    .venv/bin/python benchmarks/pickup.py /tmp/bench.db
    .venv/bin/python benchmarks/pickup.py 'postgresql://postgres@127.0.0.1:5432/test?schema=bench'
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from queuectl import Queue


def main(url: str, probes: int = 50) -> None:
    queue = Queue(url)
    queue.config.set("poll-interval", 60)
    worker = subprocess.Popen([str(Path(sys.executable).parent / "queuectl"), "worker", "start",
                               "--count", "2"], env={**os.environ, "QUEUECTL_DB": url},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while queue.status().active_workers < 2:
            time.sleep(0.05)
        time.sleep(0.5)
        latencies = []
        with tempfile.TemporaryDirectory() as folder:
            for n in range(probes):
                stamp = Path(folder) / str(n)
                queue.enqueue(f"date +%s%N > {stamp}")
                returned = time.time_ns()
                while not stamp.exists() or not stamp.read_text().strip():
                    time.sleep(0.0005)
                latencies.append((int(stamp.read_text()) - returned) / 1e6)
                time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait()
    latencies.sort()
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    print(f"{url}: pickup over {probes} probes: p50 {statistics.median(latencies):.1f} ms, "
          f"p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1])
