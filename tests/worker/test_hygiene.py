"""Promise 8 (Process hygiene): huge output, timeouts of whole process groups, background
children, and a worker whose descriptors and memory stay flat over many jobs.

Sized for CI by default; ``QUEUECTL_SOAK=1`` runs the issue's sizes:

=============================  ========  =========
what                           CI        soak
=============================  ========  =========
stdout of one job              200 MB    1 GB
stderr of one job, no newline  50 MB     100 MB
jobs leaving a background one  200       1,000
``true`` jobs for flatness     2,000     10,000
=============================  ========  =========

Liveness is judged from ``/proc/PID/stat`` (state and process group), never from
``kill(pid, 0)``, which succeeds on a zombie here. Killed orphans are reaped by PID 1
only every ~1.5 s, so a zombie reparented to PID 1 is dead, not "left over"; a zombie
whose parent is the worker is a leak.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

from queuectl.liveness import attempt_processes
from queuectl.worker.runner import KILL_GRACE, Execution, RunReport, RunSpec, base_environment
from tests.conftest import Cli, kill_by_env, wait_until

SOAK = os.environ.get("QUEUECTL_SOAK") == "1"
MB = 1024 * 1024


def sized(ci: int, soak: int) -> int:
    return soak if SOAK else ci


STDOUT_BYTES = sized(200 * MB, 1024 * MB)
STDERR_BYTES = sized(50 * MB, 100 * MB)
BACKGROUND_JOBS = sized(100, 1000)
FLAT_JOBS = sized(1000, 10000)
FLAT_WARMUP = 200
#: Waits scale with the work (a soak run moves five times the data).
PATIENCE = 300 if SOAK else 90

RSS_LIMIT_KB = 100 * 1024
LOG_SLACK = 4096  # the "+4 KiB" per stream: room for the truncation marker


# --- /proc ---------------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, process group), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _live(state: str) -> bool:
    return state not in ("Z", "X")


def live_in_group(pgid: int) -> list[int]:
    return [pid for pid in _pids() if (s := _stat(pid)) and s[2] == pgid and _live(s[0])]


def zombie_children(parent: int) -> list[int]:
    return [pid for pid in _pids() if (s := _stat(pid)) and s[1] == parent and s[0] == "Z"]


def live_with_job_env(job_ids: set[str]) -> list[int]:
    """Live processes whose environment carries QUEUECTL_JOB_ID of one of ``job_ids``."""
    wanted = {f"QUEUECTL_JOB_ID={j}".encode() for j in job_ids}
    found = []
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                variables = f.read().split(b"\0")
        except OSError:
            continue
        if wanted.intersection(variables) and (s := _stat(pid)) and _live(s[0]):
            found.append(pid)
    return found


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Sampler:
    """Samples a process's RSS and open descriptors every ``interval`` s in a thread."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.rss: list[int] = []
        self.fds: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.rss.append(rss_kb(self.pid))
                self.fds.append(fd_count(self.pid))
            except OSError:
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- helpers for a real worker -----------------------------------------------------------

def enqueue_all(cli: Cli, jobs: list[dict[str, object]]) -> None:
    cli.ok("enqueue", "--file", "-", input="\n".join(json.dumps(j) for j in jobs))


def wait_for_completed(cli: Cli, n: int, timeout: float) -> dict[str, int]:
    """Poll `status` until n jobs are completed; nothing may fail on the way."""
    def check() -> dict[str, int] | None:
        jobs: dict[str, int] = cli.json("status")["jobs"]
        assert jobs["failed"] == 0 and jobs["dead"] == 0, jobs
        return jobs if jobs["completed"] >= n else None

    return wait_until(check, timeout, interval=0.2, message=f"{n} completed jobs")  # type: ignore[no-any-return]


def start_worker(cli: Cli, count: int) -> int:
    proc = cli.start_worker("--count", str(count))
    cli.wait_for_workers(1)
    assert proc.poll() is None
    return proc.pid


# --- huge output ---------------------------------------------------------------------------

def test_huge_output_is_capped_on_disk_and_the_worker_stays_small(cli: Cli) -> None:
    """One job prints STDOUT_BYTES of lines, another writes STDERR_BYTES to stderr without a
    single newline, at the same time (two slots). Both complete with exit 0; each stream's
    file holds at most max-log-bytes + 4 KiB (the first max-log-bytes of the output, then the
    truncation marker); the supervisor's VmRSS, sampled every 10 ms, stays under 100 MB."""
    limit = 1 * MB
    cli.config(**{"max-log-bytes": limit})
    line = b"queuectl hygiene 0123456789 abcdefghijklmnopqrstuvwxyz\n"
    pid = start_worker(cli, 2)
    with Sampler(pid) as sampler:
        enqueue_all(cli, [
            {"id": "loud-out", "command": f"yes '{line.decode().strip()}' | head -c {STDOUT_BYTES}"},
            {"id": "loud-err", "command": f"head -c {STDERR_BYTES} /dev/zero | tr '\\0' x >&2"},
        ])
        wait_for_completed(cli, 2, PATIENCE)
    out_job, err_job = cli.job("loud-out"), cli.job("loud-err")
    for job in (out_job, err_job):
        assert (job["state"], job["exit_code"], job["attempts"], job["last_error"]) == \
            ("completed", 0, 1, None), job
    assert out_job["logs"]["stderr"] is None and err_job["logs"]["stdout"] is None

    out = Path(out_job["logs"]["stdout"]).read_bytes()
    whole_lines = limit // len(line)
    assert out[: whole_lines * len(line)] == line * whole_lines
    assert f"output truncated at {limit} bytes; {STDOUT_BYTES - limit} more bytes dropped".encode() in out
    err = Path(err_job["logs"]["stderr"]).read_bytes()
    assert err[:limit] == b"x" * limit
    assert f"output truncated at {limit} bytes; {STDERR_BYTES - limit} more bytes dropped".encode() in err

    for job_id in ("loud-out", "loud-err"):  # every file of both attempts, whatever its name
        files = [p for p in (cli.data_dir / "logs" / job_id).rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert path.stat().st_size <= limit + LOG_SLACK, (path, path.stat().st_size)

    assert len(sampler.rss) >= 20, "too few RSS samples to judge"
    assert max(sampler.rss) < RSS_LIMIT_KB, f"worker RSS peaked at {max(sampler.rss)} kB"


# --- timeouts end the whole group ------------------------------------------------------------

TIMEOUT = 2.0
GROUP_COMMANDS = {
    "plain": "sh -c 'sleep 1000 & sleep 1000 & wait'",
    # Everything in the group ignores SIGTERM: only the SIGKILL after the grace period ends it.
    "ignores-sigterm": "sh -c 'trap \"\" TERM; sleep 1000 & sleep 1000 & wait'",
}


@pytest.mark.parametrize("kind", list(GROUP_COMMANDS))
def test_a_timeout_leaves_no_process_in_the_group_within_timeout_plus_grace(
        tmp_path: Path, kind: str) -> None:
    """``sh -c 'sleep 1000 & sleep 1000 & wait'`` with a 2 s timeout: the attempt returns
    after the timeout but no later than timeout + KILL_GRACE + 1 s, reports the timeout,
    and by that same moment no live process is left in its process group (nor anywhere
    with its QUEUECTL_JOB_ID)."""
    job_id = f"group-{uuid.uuid4().hex[:12]}"
    done = threading.Event()
    returned: list[float] = []

    def on_done(_execution: Execution) -> None:
        returned.append(time.monotonic())
        done.set()

    spec = RunSpec(job_id=job_id, command=GROUP_COMMANDS[kind], attempt=1, timeout=TIMEOUT,
                   max_log_bytes=MB, log_dir=tmp_path / "logs",
                   env=base_environment({"PATH": os.environ["PATH"], "HOME": str(tmp_path)}))
    execution = Execution(spec, on_done)
    limit = TIMEOUT + KILL_GRACE + 1
    started = time.monotonic()
    execution.start()
    try:
        def both_sleeps() -> list[int] | None:
            found = [p for p in attempt_processes(job_id, 1) if comm(p) == "sleep"]
            return found if len(found) == 2 else None

        sleeps = wait_until(both_sleeps, timeout=TIMEOUT, interval=0.01,
                            message="both sleeps to start")
        groups = {s[2] for p in sleeps if (s := _stat(p))}
        assert len(groups) == 1, groups
        pgid = groups.pop()
        assert done.wait(limit + 10), "the attempt did not return"
        elapsed = returned[0] - started
        assert TIMEOUT <= elapsed <= limit, f"the attempt returned after {elapsed:.2f}s"
        report: RunReport | None = execution.report
        assert report is not None and report.result.timed_out_after == TIMEOUT
        wait_until(lambda: not live_in_group(pgid) and not live_with_job_env({job_id}),
                   timeout=max(0.0, started + limit - time.monotonic()), interval=0.01,
                   message=f"no live process in group {pgid}")
    finally:
        execution.stop("interrupted", at_once=True)
        execution.join(10)
        kill_by_env(f"QUEUECTL_JOB_ID={job_id}")


# --- background children ----------------------------------------------------------------

BACKGROUND_FORMS = [
    "sleep 1000 &",  # holds the job's stdout and stderr pipes
    "sleep 1000 >/dev/null 2>&1 &",  # holds nothing of the job's
    "(sleep 1000 &)",  # an orphan from the start: reparented away from the job's shell
    "sh -c 'sleep 1000 & exec sleep 1000' >/dev/null 2>&1 &",  # a tree of them
]


def test_jobs_leaving_background_children_leave_no_zombies_and_no_processes(cli: Cli) -> None:
    """BACKGROUND_JOBS jobs each leave a background process behind (four forms, see
    BACKGROUND_FORMS) and exit 0 at once. All complete; once they have, the worker has no
    zombie children, and no live process carries one of those jobs' QUEUECTL_JOB_ID (1 s
    allowed for SIGKILLs already sent to take effect)."""
    tag = uuid.uuid4().hex[:8]
    ids = [f"bg-{tag}-{i}" for i in range(BACKGROUND_JOBS)]
    pid = start_worker(cli, 8)
    try:
        enqueue_all(cli, [{"id": job_id, "command": f"{BACKGROUND_FORMS[i % 4]}\necho $$"}
                          for i, job_id in enumerate(ids)])
        jobs = wait_for_completed(cli, len(ids), PATIENCE)
        assert jobs["completed"] == len(ids) and jobs["processing"] == 0, jobs
        zombies = zombie_children(pid)
        assert zombies == [], f"zombie children of the worker: {zombies}"
        leftovers: list[int] = []

        def none_left() -> bool:
            leftovers[:] = live_with_job_env(set(ids))
            return not leftovers

        try:
            wait_until(none_left, timeout=1.0, interval=0.05, message="the jobs' processes to end")
        except AssertionError:
            raise AssertionError(f"{len(leftovers)} processes left over: "
                                 f"{[(p, comm(p)) for p in leftovers[:10]]}") from None
        assert zombie_children(pid) == []
    finally:
        for leftover in live_with_job_env(set(ids)):
            try:
                os.kill(leftover, 9)
            except OSError:
                pass


# --- flat over many jobs ------------------------------------------------------------------

FD_SLACK = 2
RSS_GROWTH_LIMIT_KB = 4 * 1024
#: Descriptors one running attempt may hold: its two pipes, a pidfd, the stop pipe (two),
#: the selector, two log files, and the pipe Popen uses while it spawns (two).
FDS_PER_RUNNING_JOB = 10


def _settled(pid: int) -> tuple[int, int]:
    """(fds, RSS kB) of an idle worker: the fewest descriptors over a few samples."""
    time.sleep(0.5)
    samples = []
    for _ in range(5):
        samples.append((fd_count(pid), rss_kb(pid)))
        time.sleep(0.05)
    return min(s[0] for s in samples), samples[-1][1]


def test_descriptors_and_memory_stay_flat_over_many_jobs(cli: Cli) -> None:
    """FLAT_JOBS `true` jobs on 4 slots. The idle worker is measured after a warm-up of
    FLAT_WARMUP jobs and again after the rest: open descriptors equal within 2, VmRSS grown
    by less than 4 MB. While they run, descriptors never exceed the idle count plus what
    the running attempts hold, and RSS stays under 100 MB."""
    slots = 4
    pid = start_worker(cli, slots)
    enqueue_all(cli, [{"id": f"warm-{i}", "command": "true"} for i in range(FLAT_WARMUP)])
    wait_for_completed(cli, FLAT_WARMUP, PATIENCE)
    warm_fds, warm_rss = _settled(pid)
    with Sampler(pid, interval=0.02) as sampler:
        enqueue_all(cli, [{"id": f"flat-{i}", "command": "true"}
                          for i in range(FLAT_JOBS - FLAT_WARMUP)])
        jobs = wait_for_completed(cli, FLAT_JOBS, PATIENCE)
    assert jobs["completed"] == FLAT_JOBS and jobs["processing"] == 0, jobs
    end_fds, end_rss = _settled(pid)
    assert abs(end_fds - warm_fds) <= FD_SLACK, f"open fds {warm_fds} after warm-up, {end_fds} at the end"
    growth = end_rss - warm_rss
    assert growth < RSS_GROWTH_LIMIT_KB, f"RSS grew {growth} kB ({warm_rss} -> {end_rss}) over {FLAT_JOBS} jobs"
    assert sampler.fds and max(sampler.fds) <= warm_fds + slots * FDS_PER_RUNNING_JOB + FD_SLACK, \
        (warm_fds, max(sampler.fds))
    assert max(sampler.rss) < RSS_LIMIT_KB
    assert zombie_children(pid) == []
