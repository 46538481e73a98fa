"""procrastinate side of the benchmark, run in the peers venv: the task (an async task
running the shell command with asyncio's subprocess) that
``procrastinate --app=procrastinate_app.app worker`` executes, and the driver commands
the adapter (procrastinate_peer.py) calls. The database comes from
$BENCH_PROCRASTINATE_DSN; $BENCH_PROCRASTINATE_ADMIN is the server's maintenance URL
used to create and drop it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import psycopg
from procrastinate import App, PsycopgConnector

DSN = os.environ.get("BENCH_PROCRASTINATE_DSN",
                     "postgresql://postgres@127.0.0.1:5432/bench_procrastinate")
ADMIN = os.environ.get("BENCH_PROCRASTINATE_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
CHUNK = 10_000  # jobs per batch_defer call

app = App(connector=PsycopgConnector(conninfo=DSN))


@app.task(name="run")
async def run(cmd: str) -> None:
    proc = await asyncio.create_subprocess_shell(cmd)
    code = await proc.wait()
    if code:
        raise RuntimeError(f"{cmd!r} exited {code}")


def _batch_defer(jobs: int) -> None:
    left = jobs
    while left:
        n = min(CHUNK, left)
        run.batch_defer(*({"cmd": "true"} for _ in range(n)))
        left -= n


def _counts() -> dict[str, int]:
    with psycopg.connect(DSN) as conn:
        rows = conn.execute("SELECT status::text, count(*) FROM procrastinate_jobs "
                            "GROUP BY status").fetchall()
    return dict(rows)


def main(what: str, *args: str) -> object:
    if what == "ping":
        psycopg.connect(ADMIN, connect_timeout=3).close()
        return True
    if what in ("create", "drop"):
        name = args[0]
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if what == "create":
                conn.execute(f'CREATE DATABASE "{name}"')
        if what == "create":
            with app.open():
                app.schema_manager.apply_schema()
        return {what: name}
    if what == "reset":
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute("TRUNCATE procrastinate_events, procrastinate_periodic_defers, "
                         "procrastinate_jobs, procrastinate_workers RESTART IDENTITY CASCADE")
        return _counts()
    if what == "enqueue":  # set-up, untimed
        with app.open():
            _batch_defer(int(args[0]))
        return _counts()
    if what == "bulk":
        started = time.perf_counter()
        with app.open():
            _batch_defer(int(args[0]))
        took = time.perf_counter() - started
        return {"seconds": took, **_counts()}
    if what == "check":
        return _counts()
    if what == "pickup":
        from _probe import pickup
        with app.open():
            return pickup(lambda cmd: run.defer(cmd=cmd), int(args[0]), Path(args[1]))
    raise SystemExit(f"unknown command {what}")


if __name__ == "__main__":
    import procrastinate_app
    print(json.dumps(procrastinate_app.main(*sys.argv[1:])), flush=True)
