"""The runner against a real /bin/sh: output capture, caps, timeouts, process groups."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from queuectl.liveness import start_time
from queuectl.worker.runner import KILL_GRACE, Execution, RunReport, RunSpec, base_environment


def run(tmp_path: Path, command: str, *, timeout: float | None = None, limit: int = 1 << 20,
        attempt: int = 1, log_dir: Path | None = None,
        stop_after: tuple[float, str] | None = None) -> RunReport:
    done = threading.Event()
    spec = RunSpec(job_id="job-1", command=command, attempt=attempt, timeout=timeout,
                   max_log_bytes=limit, log_dir=log_dir or tmp_path / "logs",
                   env=base_environment({"PATH": os.environ["PATH"], "HOME": str(tmp_path)}))
    execution = Execution(spec, lambda _e: done.set())
    execution.start()
    if stop_after is not None:
        time.sleep(stop_after[0])
        execution.stop(stop_after[1])
    assert done.wait(30), "the attempt did not finish"
    assert execution.report is not None
    return execution.report


def read(path: str | None) -> bytes:
    assert path is not None
    return Path(path).read_bytes()


def alive(pid: int) -> bool:
    return start_time(pid) is not None


def dies(pid: int) -> bool:
    """The process is gone (or a zombie) within a moment: SIGKILL is delivered at once,
    but a loaded machine may take a few milliseconds to tear the process down."""
    deadline = time.monotonic() + 2
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_successful_command_has_its_output_captured_per_stream(tmp_path: Path) -> None:
    report = run(tmp_path, "echo out; echo err >&2")
    assert report.result.succeeded and report.result.exit_code == 0
    assert read(report.stdout_path) == b"out\n"
    assert read(report.stderr_path) == b"err\n"
    assert report.stdout_path == str(tmp_path / "logs" / "job-1" / "1.stdout")


def test_a_silent_stream_creates_no_log_file(tmp_path: Path) -> None:
    report = run(tmp_path, "true")
    assert report.stdout_path is None and report.stderr_path is None
    assert not (tmp_path / "logs" / "job-1").exists()


def test_the_job_sees_its_id_and_attempt_and_a_closed_stdin(tmp_path: Path) -> None:
    report = run(tmp_path, 'echo "$QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT"; cat; echo "cat=$?"', attempt=3)
    assert read(report.stdout_path) == b"job-1 3\ncat=0\n"


def test_a_non_zero_exit_is_reported_with_its_code(tmp_path: Path) -> None:
    result = run(tmp_path, "exit 3").result
    assert not result.succeeded
    assert result.exit_code == 3 and result.describe() == "exit code 3"


def test_a_missing_program_is_exit_127_not_a_crash(tmp_path: Path) -> None:
    result = run(tmp_path, "definitely-not-a-program-xyz").result
    assert result.exit_code == 127
    assert result.describe() == "exit code 127 (command not found)"


def test_death_by_signal_is_reported_as_the_signal(tmp_path: Path) -> None:
    result = run(tmp_path, "kill -9 $$").result
    assert result.signal == 9 and result.recorded_exit_code == 137
    assert result.describe() == "killed by signal 9"


def test_a_timeout_kills_the_whole_process_group_including_grandchildren(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    report = run(tmp_path, f"sh -c 'sleep 100 & echo $! >> {pids}; wait' & echo $! >> {pids}; "
                           f"sleep 100", timeout=0.5)
    elapsed = time.monotonic() - started
    assert report.result.timed_out_after == 0.5
    assert report.result.describe() == "timed out after 0.5s"
    assert elapsed < 0.5 + KILL_GRACE + 1
    for pid in map(int, pids.read_text().split()):
        assert dies(pid), f"process {pid} survived the timeout"


def test_a_command_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    started = time.monotonic()
    report = run(tmp_path, "trap '' TERM; sleep 100", timeout=0.3)
    elapsed = time.monotonic() - started
    assert report.result.timed_out_after == 0.3
    assert 0.3 + KILL_GRACE - 0.1 <= elapsed < 0.3 + KILL_GRACE + 1


def test_background_children_left_by_the_shell_are_ended_with_the_job(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    report = run(tmp_path, f"sleep 100 > /dev/null 2>&1 & echo $! > {pid_file}")
    assert report.result.succeeded
    assert dies(int(pid_file.read_text()))


def test_a_background_child_holding_stdout_does_not_hang_the_attempt(tmp_path: Path) -> None:
    started = time.monotonic()
    report = run(tmp_path, "sleep 100 & echo started")
    assert report.result.succeeded
    assert read(report.stdout_path) == b"started\n"
    assert time.monotonic() - started < KILL_GRACE + 1


def test_output_beyond_the_cap_is_dropped_with_a_marker_and_the_job_still_finishes(tmp_path: Path) -> None:
    report = run(tmp_path, "head -c 5000000 /dev/zero; printf 'x%.0s' $(seq 100) >&2", limit=1000)
    assert report.result.succeeded
    out = read(report.stdout_path)
    assert out.startswith(b"\0" * 1000)
    assert b"output truncated at 1000 bytes; 4999000 more bytes dropped" in out
    assert len(out) < 1000 + 200
    assert read(report.stderr_path) == b"x" * 100


def test_stop_interrupted_kills_the_job_and_reports_it_interrupted(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    report = run(tmp_path, f"echo $$ > {pid_file}; sleep 100", stop_after=(0.3, "interrupted"))
    assert report.result.interrupted and not report.result.succeeded
    assert dies(int(pid_file.read_text()))


def test_stop_lost_reports_the_attempt_as_lost(tmp_path: Path) -> None:
    report = run(tmp_path, "sleep 100", stop_after=(0.2, "lost"))
    assert report.result.lost and report.result.describe() == "worker lost"


def test_a_log_folder_that_is_a_file_still_yields_a_result_with_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    report = run(tmp_path, "echo hi; exit 4", log_dir=not_a_dir)
    assert report.result.exit_code == 4
    assert report.result.log_error is not None and "cannot write log" in report.result.log_error
    assert report.stdout_path is None


def test_the_job_inherits_no_descriptor_of_the_worker(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Only stdin, stdout and stderr: not the database, a wake-up pipe, nor a descriptor
    the worker itself inherited without close-on-exec (the first spawn of a process seals
    every descriptor it has; a fresh process is simulated here)."""
    from queuectl.worker import runner

    leaked_r, leaked_w = os.pipe()
    os.set_inheritable(leaked_r, True)  # as if whoever started the worker had leaked it
    monkeypatch.setattr(runner, "_sealed", False)
    try:
        report = run(tmp_path, "ls /proc/$$/fd")
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
    assert report.result.exit_code == 0
    assert sorted(int(fd) for fd in read(report.stdout_path).split()) == [0, 1, 2]


def test_the_job_gets_default_sigpipe_so_a_pipeline_ends_normally(tmp_path: Path) -> None:
    """Python ignores SIGPIPE; a job must not inherit that, or `yes | head -1` would make
    `yes` fail with write errors instead of being ended by the signal."""
    report = run(tmp_path, "yes | head -n 1")
    assert report.result.exit_code == 0
    assert read(report.stdout_path).splitlines() == [b"y"]
    assert report.stderr_path is None  # no "yes: standard output: Broken pipe"
