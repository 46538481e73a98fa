"""A scripted tour of queuectl, run by `make demo`.

It drives the real ``queuectl`` executable (the one installed next to this
Python) against a throw-away database, echoes every command it runs with its
output, and checks each result, so it doubles as a smoke test: any surprise
exits non-zero. It takes about 15 seconds.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

QUEUECTL = Path(sys.executable).parent / "queuectl"
#: No single command of the tour should take anywhere near this long.
COMMAND_TIMEOUT = 30.0


class DemoFailure(Exception):
    """A step did not do what the tour expects."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


class Tour:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.db = workdir / "queue.db"
        self.files = workdir / "files"  # the working directory: jobs run (and write) here
        self.files.mkdir()
        self.env = dict(os.environ, QUEUECTL_DB=str(self.db))
        self.env.pop("NO_COLOR", None)
        self.detached_pid: int | None = None

    # --- running queuectl -----------------------------------------------------

    def run(self, *args: str, expect: int = 0, stdin: str | None = None,
            echo: bool = True) -> Result:
        """Run ``queuectl ARGS``; echo it and its output; fail unless it exits ``expect``."""
        if echo:
            line = shlex.join(["queuectl", *args])
            if stdin is not None:
                line += " <<'EOF'\n" + stdin.rstrip("\n") + "\nEOF"
            print(f"$ {line}", flush=True)
        try:
            proc = subprocess.run([str(QUEUECTL), *args], input=stdin, capture_output=True,
                                  check=False, text=True, env=self.env, cwd=self.files,
                                  timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DemoFailure(f"`queuectl {shlex.join(args)}` took over {COMMAND_TIMEOUT:g}s") from None
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if echo:
            # Worker log lines (stderr) come first: they happen before the final summary.
            for text in (result.err, result.out):
                if text:
                    print(text, end="" if text.endswith("\n") else "\n")
            if result.code != 0:
                print(f"[exit status {result.code}]")
            print(flush=True)
        if result.code != expect:
            raise DemoFailure(f"`queuectl {shlex.join(args)}` exited {result.code}, expected "
                              f"{expect}\nstdout: {result.out}\nstderr: {result.err}")
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        """A job's JSON (``show --json``), read quietly for the tour's own checks."""
        data: dict[str, Any] = json.loads(self.run("show", job_id, "--json", echo=False).out)
        return data

    def drain(self) -> float:
        """Run one worker until no job is left; returns how long it took."""
        started = time.monotonic()
        self.run("worker", "start", "--stop-when-empty")
        return time.monotonic() - started

    def shell(self, display: str) -> None:
        """Echo a shell step the tour performs itself (in Python)."""
        print(f"$ {display}", flush=True)

    # --- the tour -----------------------------------------------------------------

    def main(self) -> None:
        header("Setup")
        print("A fresh database in a temporary folder; every command below uses it. Jobs run\n"
              "in the worker's working directory, so the files they write land in files/.\n"
              f"$ export QUEUECTL_DB={shlex.quote(str(self.db))}\n"
              f"$ cd {shlex.quote(str(self.files))}\n")
        self.run("--version")
        self.run("config", "set", "backoff-base", "2")
        self.run("config", "set", "max-backoff", "3")

        self.succeeding_job()
        self.failing_job()
        self.dead_letter_queue()
        self.priorities()
        self.scheduled_job()
        self.timeout()
        self.errors()
        self.background_workers()
        self.overview()

    def succeeding_job(self) -> None:
        header("1. A job that succeeds")
        self.run("enqueue", '{"id": "hello", "command": '
                            '"echo hello from $QUEUECTL_JOB_ID, attempt $QUEUECTL_ATTEMPT"}')
        self.run("status")
        self.drain()
        self.run("logs", "hello")
        job = self.job("hello")
        check(job["state"] == "completed" and job["exit_code"] == 0 and job["attempts"] == 1,
              f"hello should have completed in one attempt: {job}")
        output = self.run("logs", "hello", echo=False).out
        check(output == "hello from hello, attempt 1\n", f"unexpected output of hello: {output!r}")

    def failing_job(self) -> None:
        header("2. A failing job: retried with backoff, then dead")
        print("With backoff-base 2 and max-backoff 3, failed attempt k is retried after\n"
              "min(2 ** k, 3) seconds: 2 s after attempt 1, 3 s after attempt 2.\n")
        command = ('test -e input-ready || { echo "input not ready" >&2; exit 3; }; '
                   'echo "input ready, processed"')
        self.run("enqueue", "--command", command, "--id", "flaky", "--max-retries", "2")
        self.drain()
        self.run("show", "flaky")
        self.run("logs", "flaky", "--stderr", "--attempt", "1")
        job = self.job("flaky")
        check(job["state"] == "dead" and job["attempts"] == 3 and job["exit_code"] == 3
              and job["last_error"] == "exit code 3", f"flaky should be dead after 3 attempts: {job}")
        history = job["history"]
        check([a["attempt"] for a in history] == [1, 2, 3], f"unexpected attempts: {history}")
        for earlier, later, delay in ((history[0], history[1], 2.0), (history[1], history[2], 3.0)):
            gap = (parse_time(later["started_at"]) - parse_time(earlier["finished_at"])).total_seconds()
            check(gap >= delay - 0.001, f"attempt {later['attempt']} started {gap:.3f}s after "
                                        f"attempt {earlier['attempt']}, before its {delay:g}s backoff")
            print(f"check: attempt {later['attempt']} started {gap:.2f}s after attempt "
                  f"{earlier['attempt']} ended (backoff {delay:g}s)")
        print()

    def dead_letter_queue(self) -> None:
        header("3. The dead letter queue: dlq list, dlq retry")
        self.run("dlq", "list")
        self.shell("touch input-ready    # fix the cause of the failure")
        (self.files / "input-ready").touch()
        print()
        self.run("dlq", "retry", "flaky")
        self.run("list", "--state", "pending")
        self.drain()
        self.run("show", "flaky")
        print("Attempts restarted at 0 for the retry, but attempt numbers in the history and\n"
              "in log file names go on (4), so no earlier log is overwritten.\n")
        self.run("logs", "flaky")
        job = self.job("flaky")
        check(job["state"] == "completed" and job["attempts"] == 1,
              f"flaky should have completed on its first attempt after dlq retry: {job}")
        check(job["history"][-1]["attempt"] == 4 and job["logs"]["stdout"].endswith("/4.stdout"),
              f"the retried run should be attempt 4 with its own log: {job['history'][-1]}")
        self.run("dlq", "list")

    def priorities(self) -> None:
        header("4. Priority order: lower runs first, ties in enqueue order")
        entries = [("report", 10), ("build", 0), ("urgent", -5), ("test", 0)]
        lines = "".join(json.dumps({"id": name, "priority": priority,
                                    "command": f"echo {name} >> order.txt"}) + "\n"
                        for name, priority in entries)
        self.run("enqueue", "--file", "-", stdin=lines)
        self.drain()
        self.shell("cat order.txt")
        ran = (self.files / "order.txt").read_text()
        print(ran)
        check(ran.split() == ["urgent", "build", "test", "report"],
              f"jobs ran in the wrong order: {ran.split()}")
        self.run("list", "--state", "completed")

    def scheduled_job(self) -> None:
        header("5. A scheduled job does not start before its run_at")
        self.run("enqueue", "--command", "date -u +%H:%M:%S.%3N", "--id", "later", "--delay", "2s")
        self.run("list", "--state", "pending")
        took = self.drain()
        job = self.job("later")
        run_at, started = parse_time(job["run_at"]), parse_time(job["started_at"])
        self.run("logs", "later")
        check(job["state"] == "completed", f"later should have completed: {job}")
        check(started >= run_at, f"later started at {job['started_at']}, before its run_at "
                                 f"{job['run_at']}")
        print(f"check: run_at {job['run_at']}, started_at {job['started_at']}; the worker "
              f"waited {took:.1f}s\n")

    def timeout(self) -> None:
        header("6. A timeout: the job's process group is killed")
        self.run("enqueue", "--command", "sleep 10", "--id", "sleepy", "--timeout", "1",
                 "--max-retries", "0")
        took = self.drain()
        self.run("show", "sleepy")
        job = self.job("sleepy")
        check(job["state"] == "dead" and job["last_error"] == "timed out after 1s",
              f"sleepy should have timed out: {job}")
        check(took < 8, f"a 1 s timeout took the worker {took:.1f}s")
        print(f"exit_code {job['exit_code']} is 128 + 15: the shell died of SIGTERM.\n")

    def errors(self) -> None:
        header("7. Errors: one line on stderr, exit 2 for invalid input, 1 for impossible")
        self.run("enqueue", '{"command": "true", "priority": "high"}', expect=2)
        self.run("dlq", "retry", "hello", expect=1)
        self.run("show", "no-such-job", expect=1)

    def background_workers(self) -> None:
        header("8. Workers in the background: start --detach, list, stop")
        pid = self.run("worker", "start", "--count", "2", "--detach").out.strip()
        check(pid.isdigit(), f"worker start --detach printed {pid!r}, not a pid")
        self.detached_pid = int(pid)
        self.run("enqueue", "--command", "sleep 1; echo done in the background", "--id", "bg")
        wait_for(lambda: self.job("bg")["state"] == "processing", "bg to start")
        self.run("worker", "list")
        self.run("status")
        stopped = self.run("worker", "stop")
        check(stopped.out.strip() == "stopped 1 supervisor (2 workers)",
              f"unexpected worker stop output: {stopped.out!r}")
        self.detached_pid = None
        check(self.job("bg")["state"] == "completed", "worker stop should let bg finish")
        log = self.workdir / "queue.db.worker.log"
        self.shell("cat ../queue.db.worker.log")
        print(log.read_text())

    def overview(self) -> None:
        header("9. Where everything stands")
        self.run("status")
        self.run("list")
        counts = json.loads(self.run("status", "--json", echo=False).out)["jobs"]
        expected = {"pending": 0, "processing": 0, "completed": 8, "failed": 0, "dead": 1}
        check(counts == expected, f"status --json: {counts}, expected {expected}")

    def cleanup(self) -> None:
        """Stop a detached worker left behind by a failed step."""
        if self.detached_pid is None:
            return
        try:
            self.run("worker", "stop", "--timeout", "5", echo=False)
        except DemoFailure:
            pass
        try:
            os.kill(self.detached_pid, signal.SIGTERM)
        except OSError:
            pass


def header(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(3, 70 - len(title)) + "\n", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)  # Python >= 3.11 reads the "Z"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise DemoFailure(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def main() -> int:
    if not QUEUECTL.exists():
        print(f"demo: {QUEUECTL} not found: install queuectl into this Python's environment "
              "(make demo does)", file=sys.stderr)
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="queuectl-demo-") as tmp:
        tour = Tour(Path(tmp))
        try:
            tour.main()
        except DemoFailure as exc:
            print(f"\ndemo FAILED: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ndemo interrupted", file=sys.stderr)
            return 130
        finally:
            tour.cleanup()
    print(f"demo passed in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
