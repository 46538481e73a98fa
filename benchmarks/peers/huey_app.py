"""Huey side of the benchmark, run in the peers venv: the task (a shell command via
subprocess) that ``huey_consumer huey_app.huey`` executes, and the driver commands
the adapter (huey_peer.py) calls. The SQLite file comes from $BENCH_HUEY_DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from huey import SqliteHuey
from huey.utils import Error

huey = SqliteHuey("bench", filename=os.environ.get("BENCH_HUEY_DB", "huey.db"))


@huey.task()
def run(cmd: str) -> int:
    code = subprocess.run(cmd, shell=True).returncode
    if code:
        raise RuntimeError(f"{cmd!r} exited {code}")
    return code


def main(what: str, *args: str) -> object:
    if what == "enqueue":  # set-up, untimed
        for _ in range(int(args[0])):
            run("true")
        return {"pending": huey.pending_count()}
    if what == "bulk":  # huey has no bulk enqueue: a loop, one transaction per task
        jobs, budget = int(args[0]), float(args[1])
        done = 0
        started = time.perf_counter()
        while done < jobs:
            for _ in range(min(1000, jobs - done)):
                run("true")
            done += min(1000, jobs - done)
            if time.perf_counter() - started > budget:
                break
        took = time.perf_counter() - started
        return {"done": done, "seconds": took, "pending": huey.pending_count()}
    if what == "wait":  # prints "ready", then the wall time the results reached N
        jobs = int(args[0])
        huey.result_count()
        print("ready", flush=True)
        deadline = time.monotonic() + float(args[1])
        while huey.result_count() < jobs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{huey.result_count()} of {jobs} results")
            time.sleep(0.005)
        return {"at": time.time()}
    if what == "check":
        results = huey.all_results()
        errors = sum(1 for v in results.values()
                     if isinstance(huey.serializer.deserialize(v), Error))
        return {"results": len(results), "errors": errors, "pending": huey.pending_count()}
    if what == "pickup":
        from _probe import pickup
        return pickup(run, int(args[0]), Path(args[1]))
    raise SystemExit(f"unknown command {what}")


if __name__ == "__main__":
    # through the module's own name, so tasks are registered as the consumer sees them
    import huey_app
    print(json.dumps(huey_app.main(*sys.argv[1:])), flush=True)
