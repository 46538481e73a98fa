"""RQ side of the benchmark, run in the peers venv: the job function (a shell command
via subprocess) that ``rq worker`` imports as ``rq_app.run``, and the driver commands
the adapter (rq_peer.py) calls. Redis URL and queue come from $BENCH_RQ_URL and
$BENCH_RQ_QUEUE; the Redis database is claimed with a marker key, so flushing it
removes only the benchmark's keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry

HOST = os.environ.get("BENCH_RQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("BENCH_RQ_PORT", "6379"))
QUEUE = os.environ.get("BENCH_RQ_QUEUE", "queuectl-bench")
MARK = "queuectl-bench-peers:owner"
CHUNK = 1000  # jobs per pipeline in enqueue_many


def run(cmd: str) -> int:
    code = subprocess.run(cmd, shell=True).returncode
    if code:
        raise RuntimeError(f"{cmd!r} exited {code}")
    return code


def _redis(db: int) -> Redis:
    return Redis(host=HOST, port=PORT, db=db, socket_connect_timeout=3)


def _enqueue_many(queue: Queue, jobs: int) -> None:
    """RQ's bulk path: Queue.prepare_data + enqueue_many on a pipeline, CHUNK at a time."""
    left = jobs
    while left:
        n = min(CHUNK, left)
        with queue.connection.pipeline() as pipe:
            queue.enqueue_many([Queue.prepare_data("rq_app.run", ("true",))
                                for _ in range(n)], pipeline=pipe)
            pipe.execute()
        left -= n


def main(what: str, *args: str) -> object:
    if what == "ping":
        return _redis(0).ping()
    if what == "claim":  # a database holding nothing but our marker
        tag = args[0]
        for db in range(15, 0, -1):
            r = _redis(db)
            if r.set(MARK, tag, nx=True):
                if r.dbsize() == 1:
                    return {"db": db}
                r.delete(MARK)
        raise SystemExit("no empty Redis database (1-15) to claim")
    db = int(args[1]) if what in ("flush", "release") else int(os.environ["BENCH_RQ_DB"])
    r = _redis(db)
    if what in ("flush", "release"):
        tag = args[0]
        owner = r.get(MARK)
        if owner != tag.encode():
            raise SystemExit(f"Redis db {db} is not ours (marker {owner!r})")
        r.flushdb()
        if what == "flush":
            r.set(MARK, tag)
        return {"db": db}
    queue = Queue(QUEUE, connection=r)
    if what == "enqueue":  # set-up, untimed
        _enqueue_many(queue, int(args[0]))
        return {"queued": queue.count}
    if what == "bulk":
        jobs = int(args[0])
        started = time.perf_counter()
        conn = _redis(db)
        _enqueue_many(Queue(QUEUE, connection=conn), jobs)
        took = time.perf_counter() - started
        return {"seconds": took, "queued": queue.count}
    if what == "check":
        return {"finished": FinishedJobRegistry(queue=queue).count,
                "failed": FailedJobRegistry(queue=queue).count, "queued": queue.count}
    if what == "pickup":
        from _probe import pickup
        return pickup(lambda cmd: queue.enqueue("rq_app.run", cmd), int(args[0]),
                      Path(args[1]))
    raise SystemExit(f"unknown command {what}")


if __name__ == "__main__":
    import rq_app
    print(json.dumps(rq_app.main(*sys.argv[1:])), flush=True)
