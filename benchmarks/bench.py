"""queuectl's benchmark: ``make bench`` (queuectl alone) and ``make bench-peers``
(the same workloads on task-spooler, Huey, RQ and procrastinate, side by side).

Every figure is taken ``--runs`` times (default 3) and printed as min / median / max;
ratios are taken in the same run (drain against the spawn floor, a CLI call against
``python -c pass``). Raw results go to ``benchmarks/results/<name>.json``.

    .venv/bin/python benchmarks/bench.py [--runs 3] [--peers] [--quick] [--only drain,pickup]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.systems import PG_URL, QUEUECTL, Queuectl, floor, jsonl  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STORES = ("sqlite", "postgresql")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "runs": values}


class Bench:
    def __init__(self, runs: int, quick: bool) -> None:
        self.runs = runs
        self.quick = quick
        self.results: dict[str, Any] = {}
        self.rows: list[tuple[str, str, dict[str, float], str]] = []
        self.scratch = Path(tempfile.mkdtemp(prefix="queuectl-bench-"))

    def record(self, key: str, label: str, values: list[float], unit: str,
               note: str = "") -> dict[str, float]:
        figure = spread(values)
        self.results[key] = {**figure, "unit": unit, "note": note}
        self.rows.append((label, unit, figure, note))
        print(f"  {label:<48} {_fmt(figure['min'])} / {_fmt(figure['median'])} / "
              f"{_fmt(figure['max'])} {unit}  {note}", flush=True)
        return figure

    def system(self, store: str) -> Queuectl | None:
        system = Queuectl(self.scratch / store, store)
        reason = system.unavailable()
        if reason:
            print(f"  {store}: skipped ({reason})")
            system.close()
            return None
        return system

    # --- workloads ------------------------------------------------------------------

    def drain(self) -> None:
        jobs = 500 if self.quick else 2000
        print(f"drain: {jobs} x `true`, worker start --count 4 --stop-when-empty")
        floors = [floor(jobs, 4) for _ in range(self.runs)]
        base = self.record("floor", "floor: sh -c true from 4 threads, no queue",
                           floors, "jobs/s")
        for store in STORES:
            system = self.system(store)
            if system is None:
                continue
            try:
                rates = [system.drain(jobs, 4) for _ in range(self.runs)]
            finally:
                system.close()
            figure = self.record(f"drain.{store}", f"drain {store}", rates, "jobs/s",
                                 f"{figure_ratio(rates, floors):.0%} of floor")
            self.results[f"drain.{store}"]["ratio_to_floor"] = figure["median"] / base["median"]

    def pickup(self) -> None:
        probes = 20 if self.quick else 50
        print(f"pickup: idle workers (2 slots, poll-interval 1 s), {probes} probes per run")
        for store in STORES:
            system = self.system(store)
            if system is None:
                continue
            try:
                for via in ("api", "cli"):
                    p50s, p95s = [], []
                    for _ in range(self.runs):
                        latencies = system.pickup(probes, via)
                        p50s.append(statistics.median(latencies))
                        p95s.append(percentile(latencies, 0.95))
                    # Negative: the command ran before the `queuectl enqueue` process had
                    # exited (its commit wakes a worker; teardown of the CLI comes after).
                    early = "job started before enqueue exited" if via == "cli" else ""
                    self.record(f"pickup.{store}.{via}.p50", f"pickup {store} via {via}: p50",
                                p50s, "ms", early if max(p50s) < 0 else "")
                    self.record(f"pickup.{store}.{via}.p95", f"pickup {store} via {via}: p95",
                                p95s, "ms", early if max(p95s) < 0 else "")
            finally:
                system.close()

    def bulk(self) -> None:
        jobs = 20_000 if self.quick else 100_000
        print(f"bulk enqueue: enqueue --file of {jobs} JSON lines, process start included")
        for store in STORES:
            system = self.system(store)
            if system is None:
                continue
            try:
                rates = [system.bulk_enqueue(jobs) for _ in range(self.runs)]
            finally:
                system.close()
            self.record(f"bulk.{store}", f"bulk enqueue {store}", rates, "jobs/s")

    def cli(self) -> None:
        calls = 10 if self.quick else 20
        print(f"one CLI call: p50 wall time of {calls} calls (SQLite)")
        system = self.system("sqlite")
        assert system is not None
        try:
            system.run("status")
            commands: dict[str, list[str]] = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "queuectl enqueue '{...}'": [QUEUECTL, "enqueue", '{"command": "true"}'],
                "queuectl status": [QUEUECTL, "status"],
            }
            medians: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(self.runs):
                for name, argv in commands.items():
                    times = []
                    for _ in range(calls):
                        started = time.perf_counter()
                        subprocess.run(argv, env=system.env(), check=True,
                                       stdout=subprocess.DEVNULL)
                        times.append((time.perf_counter() - started) * 1000)
                    medians[name].append(statistics.median(times))
            base = statistics.median(medians["python -c pass"])
            for name, values in medians.items():
                note = "" if name.startswith("python") else \
                    f"{statistics.median(values) / base:.1f}x python -c pass"
                self.record(f"cli.{name.split()[1] if name.startswith('queuectl') else 'python'}",
                            f"call: {name}", values, "ms", note)
        finally:
            system.close()

    def scale(self) -> None:
        rows = 100_000 if self.quick else 1_000_000
        jobs = 500 if self.quick else 2000
        print(f"scale: {rows:,} finished jobs in the table")
        for store in STORES:
            system = self.system(store)
            if system is None:
                continue
            try:
                empty = [system.drain(jobs, 4) for _ in range(self.runs)]
                system.fresh()
                system.run("status")
                started = time.perf_counter()
                fill_finished(system, rows)
                print(f"  ({store}: {rows:,} rows written in {time.perf_counter() - started:.0f} s)")
                full = []
                for _ in range(self.runs):
                    system.run("enqueue", "--file", str(jsonl(system.workdir / "s.jsonl", jobs)))
                    before = json.loads(system.run("status", "--json").stdout)["jobs"]["completed"]
                    started = time.perf_counter()
                    system.run("worker", "start", "--count", "4", "--stop-when-empty")
                    full.append(jobs / (time.perf_counter() - started))
                    after = json.loads(system.run("status", "--json").stdout)["jobs"]["completed"]
                    assert after - before == jobs, (before, after)
                ratio = statistics.median(full) / statistics.median(empty)
                self.record(f"scale.{store}.drain_empty", f"drain {store}, empty table", empty,
                            "jobs/s")
                self.record(f"scale.{store}.drain_full", f"drain {store}, {rows:,} finished",
                            full, "jobs/s", f"{ratio:.0%} of empty")
                for name, argv in (("status", ["status"]),
                                   ("list", ["list", "--state", "pending", "--limit", "20"]),
                                   ("dlq", ["dlq", "list"])):
                    times = []
                    for _ in range(max(5, self.runs)):
                        started = time.perf_counter()
                        system.run(*argv)
                        times.append((time.perf_counter() - started) * 1000)
                    self.record(f"scale.{store}.{name}", f"{' '.join(argv)} ({store}, "
                                f"{rows:,} rows)", times, "ms")
            finally:
                system.close()

    def idle(self) -> None:
        seconds = 5 if self.quick else 15
        print(f"idle: a supervisor with 8 slots, watched for {seconds} s")
        for store in STORES:
            system = self.system(store)
            if system is None:
                continue
            try:
                system.run("status")
                worker = system._start_workers(8)
                time.sleep(1)
                writes = WriteCounter(system)
                cpu_before = cpu_seconds(worker.pid)
                started = time.monotonic()
                while time.monotonic() - started < seconds:
                    writes.poll()
                    time.sleep(0.02)
                cpu = (cpu_seconds(worker.pid) - cpu_before) / (time.monotonic() - started)
                rss = rss_mb(worker.pid)
                changes = writes.finish()
                system._stop(worker)
                lease = float(system.run("config", "get", "lease-timeout").stdout)
                beats = seconds / (lease / 3)
                self.record(f"idle.{store}.cpu", f"idle CPU {store}", [cpu * 100], "% of a core")
                self.record(f"idle.{store}.rss", f"idle RSS {store}", [rss], "MB")
                self.record(f"idle.{store}.writes", f"idle database writes {store}",
                            [float(changes)], "writes", f"~{beats:.0f} heartbeat(s) due")
            finally:
                system.close()

    def peers(self) -> None:
        from benchmarks import peers as peer_systems
        peer_systems.ensure_installed()
        jobs = 500 if self.quick else 2000
        probes = 20 if self.quick else 50
        bulk_sizes = (1000, 20_000) if self.quick else (1000, 100_000)
        print(f"peers: drain {jobs} x `true` (2 and 4 slots), pickup {probes} probes, bulk "
              f"{' and '.join(str(n) for n in bulk_sizes)}")
        systems: list[Any] = []
        for store in STORES:
            system = self.system(store)
            if system is not None:
                systems.append(system)
        for name, cls in peer_systems.PEERS.items():
            peer = cls(self.scratch / name)
            reason = peer.unavailable()
            if reason:
                print(f"  {name}: skipped ({reason})")
                peer.close()
                continue
            systems.append(peer)
            for workload, note in getattr(peer, "notes", {}).items():
                print(f"  ({name}, {workload}: {note})")
        try:
            for system in systems:
                name = system.name
                for slots in (2, 4):
                    self.record(f"peers.{name}.drain{slots}", f"{name}: drain, {slots} slots",
                                [system.drain(jobs, slots) for _ in range(self.runs)], "jobs/s")
                p50s = [statistics.median(system.pickup(probes)) for _ in range(self.runs)]
                self.record(f"peers.{name}.pickup", f"{name}: pickup p50", p50s, "ms")
                for size in bulk_sizes:
                    self.record(f"peers.{name}.bulk{size}", f"{name}: bulk enqueue {size}",
                                [system.bulk_enqueue(size) for _ in range(self.runs)], "jobs/s")
                    if isinstance(system, Queuectl):
                        # The CLI figure includes starting a process (imports, connect);
                        # the Python peers are timed inside a running interpreter.
                        self.record(f"peers.{name}.bulk{size}_api",
                                    f"{name}: bulk enqueue {size}, Python API",
                                    [system.bulk_enqueue_api(size) for _ in range(self.runs)],
                                    "jobs/s")
        finally:
            for system in systems:
                system.close()

    def close(self) -> None:
        import shutil
        shutil.rmtree(self.scratch, ignore_errors=True)


def figure_ratio(values: list[float], base: list[float]) -> float:
    return statistics.median(values) / statistics.median(base)


def fill_finished(system: Queuectl, rows: int) -> None:
    """``rows`` completed jobs, each with one finished attempt, written straight into
    the schema (a benchmark fixture: going through workers would take an hour)."""
    now = int(time.time() * 1000)
    job_sql = ("INSERT INTO jobs (id, command, state, attempts, max_retries, priority, run_at, "
               "created_at, updated_at, started_at, finished_at, exit_code) ")
    attempt_sql = "INSERT INTO attempts (job_id, number, worker_id, started_at, finished_at, exit_code) "
    if system.store == "sqlite":
        conn = sqlite3.connect(system.url, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(job_sql + f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n
            WHERE i < {rows}) SELECT 'old' || i, 'true', 'completed', 1, 3, 0, {now}, {now},
            {now}, {now}, {now}, 0 FROM n""")
        conn.execute(attempt_sql + f"SELECT id, 1, 'bench', {now}, {now}, 0 FROM jobs "
                     "WHERE id LIKE 'old%'")
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
    else:
        import psycopg
        schema = system.url.split("schema=")[1]
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute(job_sql + f"SELECT 'old' || i, 'true', 'completed', 1, 3, 0, {now}, "
                         f"{now}, {now}, {now}, {now}, 0 FROM generate_series(1, {rows}) i")
            conn.execute(attempt_sql + f"SELECT 'old' || i, 1, 'bench', {now}, {now}, 0 "
                         f"FROM generate_series(1, {rows}) i")
            conn.execute("VACUUM ANALYZE jobs")
            conn.execute("VACUUM ANALYZE attempts")


class WriteCounter:
    """Counts write transactions committed by others: SQLite's data_version; on
    PostgreSQL, rows inserted, updated or deleted in the queue's schema."""

    def __init__(self, system: Queuectl) -> None:
        self.system = system
        self.changes = 0
        if system.store == "sqlite":
            self.conn = sqlite3.connect(system.url, isolation_level=None)
            self.last = self._version()
        else:
            import psycopg
            self.pg = psycopg.connect(PG_URL, autocommit=True)
            self.schema = system.url.split("schema=")[1]
            self.start = self._tuples()

    def _version(self) -> int:
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def _tuples(self) -> int:
        self.pg.execute("SELECT pg_stat_clear_snapshot()")
        row = self.pg.execute("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
                              "FROM pg_stat_user_tables WHERE schemaname = %s",
                              (self.schema,)).fetchone()
        return int(row[0]) if row else 0

    def poll(self) -> None:
        if self.system.store == "sqlite":
            version = self._version()
            if version != self.last:
                self.changes += 1
                self.last = version

    def finish(self) -> int:
        if self.system.store == "sqlite":
            self.conn.close()
            return self.changes
        time.sleep(1.5)  # PostgreSQL flushes table statistics about once a second
        changed = self._tuples() - self.start
        self.pg.close()
        return changed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


WORKLOADS: dict[str, Callable[[Bench], None]] = {
    "drain": Bench.drain, "pickup": Bench.pickup, "bulk": Bench.bulk, "cli": Bench.cli,
    "scale": Bench.scale, "idle": Bench.idle, "peers": Bench.peers,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument("--peers", action="store_true", help="only the side-by-side run")
    parser.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    parser.add_argument("--out", help="where to write the JSON results")
    args = parser.parse_args()
    if args.only:
        chosen = args.only.split(",")
    elif args.peers:
        chosen = ["peers"]
    else:
        chosen = [name for name in WORKLOADS if name != "peers"]
    bench = Bench(args.runs, args.quick)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "pg_url": PG_URL}
    print(f"queuectl benchmark: {machine['cpus']} CPUs, Python {machine['python']}, "
          f"{args.runs} runs each (min / median / max)")
    started = time.monotonic()
    try:
        for name in chosen:
            WORKLOADS[name](bench)
    finally:
        bench.close()
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / ("peers.json" if args.peers else "bench.json")
    out.write_text(json.dumps({"machine": machine, "results": bench.results,
                               "seconds": time.monotonic() - started}, indent=2) + "\n")
    print(f"done in {time.monotonic() - started:.0f} s; raw results in {out}")


if __name__ == "__main__":
    main()
