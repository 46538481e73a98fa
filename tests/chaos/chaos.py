"""Chaos run: jobs of `sleep` on several worker supervisors while supervisors and
running jobs' process groups are SIGKILLed at random and restarted.

Every attempt journals `start`/`end` lines and holds an flock on a per-job file while it
runs, so two attempts of one job running at the same time are caught even under SIGKILL.
Pass: every job completed, 0 overlaps, no attempt number started twice, 0 jobs left
processing, and (SQLite) `PRAGMA integrity_check` ok with the -wal file bounded.

    .venv/bin/python tests/chaos/chaos.py --db /tmp/chaos.db --jobs 2000 --seconds 600
    .venv/bin/python tests/chaos/chaos.py --db 'postgresql://postgres@127.0.0.1/test?schema=chaos'

Prints one line: jobs, kills, recoveries, overlaps, lost. Exit 0 on pass, 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from queuectl import Queue

QUEUECTL = str(Path(sys.executable).parent / "queuectl")


def job_processes(env_marker: bytes) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    variables = f.read().split(b"\0")
            except OSError:
                continue
            if env_marker in variables and any(v.startswith(b"QUEUECTL_JOB_ID=") for v in variables):
                found.append(int(entry.name))
    return found


def terminate_a_connection(url: str, rng: random.Random) -> int:
    """pg_terminate_backend of one random connection of the workers' (PostgreSQL only)."""
    import psycopg

    admin_url = url.split("?")[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")]
        if not pids:
            return 0
        conn.execute("SELECT pg_terminate_backend(%s)", (rng.choice(pids),))
    return 1


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="queuectl-chaos-"))
    os.chmod(work, 0o700)
    db = args.db or str(work / "chaos.db")
    env = {**os.environ, "QUEUECTL_DB": db, "XDG_DATA_HOME": str(work / "xdg")}
    journal, locks = work / "journal", work / "locks"
    locks.mkdir()

    def queuectl(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([QUEUECTL, *argv], env=env, capture_output=True, text=True,
                              check=True, **kwargs)  # type: ignore[call-overload]

    for key, value in (("max-retries", 50), ("backoff-base", 1), ("max-backoff", 0.2),
                       ("lease-timeout", 3)):
        queuectl("config", "set", key, str(value))
    rng = random.Random(args.seed)
    lines = []
    for n in range(args.jobs):
        pause = rng.uniform(0.05, 0.5)
        command = (f'exec 9>"{locks}/$QUEUECTL_JOB_ID"; '
                   f'if ! flock -n 9; then echo "overlap $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT" >> "{journal}"; exit 1; fi; '
                   f'echo "start $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $$ $(cut -d" " -f1 /proc/uptime)" >> "{journal}"; '
                   f'sleep {pause:.3f}; '
                   f'echo "end $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $$ $(cut -d" " -f1 /proc/uptime)" >> "{journal}"')
        lines.append(json.dumps({"id": f"c{n:05d}", "command": command}))
    queuectl("enqueue", "--file", "-", input="\n".join(lines))

    marker = f"QUEUECTL_DB={db}".encode()
    supervisors = [subprocess.Popen([QUEUECTL, "worker", "start", "--count", str(args.slots)],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True) for _ in range(args.supervisors)]
    kills = Counter[str]()
    deadline = time.monotonic() + args.seconds
    done = False
    try:
        while time.monotonic() < deadline:
            time.sleep(args.kill_interval)
            status = json.loads(queuectl("status", "--json").stdout)["jobs"]
            if status["completed"] == args.jobs:
                done = True
                break
            roll = rng.random()
            if "://" in db and roll < 0.2:
                kills["connection"] += terminate_a_connection(db, rng)
            elif roll < 0.6:
                n = rng.randrange(len(supervisors))
                supervisors[n].send_signal(signal.SIGKILL)
                supervisors[n].wait()
                supervisors[n] = subprocess.Popen(
                    [QUEUECTL, "worker", "start", "--count", str(args.slots)], env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                kills["supervisor"] += 1
            else:
                pids = job_processes(marker)
                if pids:
                    try:
                        os.killpg(os.getpgid(rng.choice(pids)), signal.SIGKILL)
                        kills["job"] += 1
                    except OSError:
                        pass
        if not done:  # stop the chaos; let the queue drain
            drain_deadline = time.monotonic() + 120
            while time.monotonic() < drain_deadline:
                if json.loads(queuectl("status", "--json").stdout)["jobs"]["completed"] == args.jobs:
                    break
                time.sleep(0.5)
    finally:
        for proc in supervisors:
            proc.send_signal(signal.SIGTERM)
        for proc in supervisors:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    jobs = json.loads(queuectl("list", "--json").stdout)
    events = [line.split() for line in journal.read_text().splitlines()]
    overlaps = sum(1 for e in events if e[0] == "overlap")
    starts = Counter((e[1], e[2]) for e in events if e[0] == "start")
    restarted_attempts = sum(1 for count in starts.values() if count > 1)
    lost = sum(1 for j in jobs if j["state"] != "completed")
    processing = sum(1 for j in jobs if j["state"] == "processing")
    recoveries = 0
    beyond = 0
    os.environ["XDG_DATA_HOME"] = env["XDG_DATA_HOME"]
    with Queue(db) as queue:  # in-process: thousands of histories, one connection
        histories = {job["id"]: queue.attempts(job["id"]) for job in jobs}
    ends = Counter((e[1], e[2]) for e in events if e[0] == "end")
    # Attempt records and journal starts agree: every start has its record, and a record
    # without a start is an attempt a kill cut short before the command's first
    # instruction, so it never ends "completed". The attempt that completed the job
    # journaled both its start and its end.
    unjournaled = 0
    for job in jobs:
        history = histories[job["id"]]
        recoveries += sum(1 for a in history if a.error == "worker lost")
        numbers = {a.number for a in history}
        beyond += sum(1 for (job_id, attempt) in starts if job_id == job["id"]
                      and int(attempt) not in numbers)
        for a in history:
            key = (job["id"], str(a.number))
            if key not in starts and a.error is None and a.exit_code == 0:
                unjournaled += 1  # "completed" without ever running
        final = [a for a in history if a.error is None and a.exit_code == 0]
        if job["state"] == "completed" and (len(final) != 1 or (
                job["id"], str(final[0].number)) not in ends):
            unjournaled += 1
    problems = []
    if sqlite_file := (None if "://" in db else Path(db)):
        with sqlite3.connect(sqlite_file) as conn:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            problems.append(f"integrity_check: {check}")
        wal = sqlite_file.with_name(sqlite_file.name + "-wal")
        if wal.exists() and wal.stat().st_size > 16 * 1024 * 1024:
            problems.append(f"-wal is {wal.stat().st_size} bytes")
    for name, value in (("overlaps", overlaps), ("lost", lost), ("processing", processing),
                        ("attempts started twice", restarted_attempts),
                        ("starts without an attempt record", beyond),
                        ("completed attempts the journal does not show", unjournaled)):
        if value:
            problems.append(f"{name}={value}")
    print(f"chaos: jobs={args.jobs} kills={sum(kills.values())} (supervisors={kills['supervisor']} "
          f"jobs={kills['job']} connections={kills['connection']}) recoveries={recoveries} overlaps={overlaps} lost={lost}"
          + ("" if not problems else f" FAILED: {', '.join(problems)}"))
    if problems:
        print(f"chaos: evidence kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database (default: a SQLite file in a temp folder)")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--supervisors", type=int, default=4)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=600, help="chaos budget")
    parser.add_argument("--kill-interval", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=None)
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
