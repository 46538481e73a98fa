"""Run every workload once per peer and print a table:

    .venv/bin/python -m benchmarks.peers [--quick] [--only tsp,rq]

Full sizes: drain 2,000 jobs with 2 and 4 slots, pickup 50 probes, bulk enqueue 1,000
and 100,000. --quick: drain 200, pickup 10, bulk 100 and 1,000.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import PEERS, ensure_installed
from .base import tagged


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--only", default="", help="comma-separated peers")
    opts = parser.parse_args()
    drain_jobs, probes, bulks = (200, 10, (100, 1000)) if opts.quick else (2000, 50, (1000, 100_000))
    names = [n for n in opts.only.split(",") if n] or list(PEERS)

    ensure_installed()
    scratch = Path(tempfile.mkdtemp(prefix="queuectl-peers-"))
    rows: list[list[str]] = []
    tags: list[str] = []
    failed = False
    began = time.perf_counter()
    try:
        for name in names:
            peer = PEERS[name](scratch / name)
            tags.append(peer.tag)
            row = [name]
            try:
                reason = peer.unavailable()
                if reason:
                    print(f"{name}: skipped ({reason})", flush=True)
                    rows.append([name, f"skipped: {reason}"])
                    continue
                for label, call, fmt in (
                        (f"drain {drain_jobs} x2", lambda: peer.drain(drain_jobs, 2), _rate),
                        (f"drain {drain_jobs} x4", lambda: peer.drain(drain_jobs, 4), _rate),
                        (f"pickup {probes}", lambda: peer.pickup(probes), _latency),
                        *((f"bulk {n:,}", (lambda n=n: peer.bulk_enqueue(n)), _rate) for n in bulks)):
                    started = time.perf_counter()
                    try:
                        cell = fmt(call())
                    except Exception:  # noqa: BLE001 - report, go on with the next workload
                        failed = True
                        traceback.print_exc()
                        cell = "FAILED"
                    print(f"{name:<14} {label:<16} {cell:<32} ({time.perf_counter() - started:.1f} s)",
                          flush=True)
                    row.append(cell)
            finally:
                peer.close()
            rows.append(row)
            for key, note in peer.notes.items():
                print(f"  {name} {key}: {note}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    heads = ["peer", f"drain {drain_jobs} x2 (jobs/s)", f"drain {drain_jobs} x4 (jobs/s)",
             f"pickup {probes} p50/p95/max ms", *(f"bulk {n:,} (jobs/s)" for n in bulks)]
    print()
    _table(heads, rows)
    left = [pid for tag in tags for pid in tagged(tag)]
    print(f"\n{time.perf_counter() - began:.0f} s in all; processes left behind: "
          f"{left or 'none'}")
    return 1 if failed or left else 0


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _latency(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return f"{statistics.median(ordered):.1f} / {p95:.1f} / {ordered[-1]:.1f}"


def _table(heads: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows if i < len(r))) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    sys.exit(main())
