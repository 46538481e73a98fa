"""Worker processes: concurrency without duplicates, stop, signals, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

from queuectl.liveness import start_time
from tests.conftest import QUEUECTL, Cli, wait_until


def test_three_workers_run_thirty_jobs_each_exactly_once(cli: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    jobs = "".join(json.dumps({"id": f"j{i:02d}", "command": f"echo $QUEUECTL_JOB_ID $$ >> {journal}; sleep 0.05"}) + "\n"
                   for i in range(30))
    cli.ok("enqueue", "--file", "-", input=jobs)
    result = cli.run_until_empty("--count", "3")
    assert result.returncode == 0, result.stderr
    runs = Counter(line.split()[0] for line in journal.read_text().splitlines())
    assert runs == {f"j{i:02d}": 1 for i in range(30)}
    assert cli.json("status")["jobs"]["completed"] == 30
    assert len({j["worker_id"] for j in cli.json("list")}) == 3  # all three slots did work


def test_several_supervisors_share_the_queue_without_running_a_job_twice(cli: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    jobs = "".join(json.dumps({"id": f"j{i:03d}", "command": f"echo $QUEUECTL_JOB_ID >> {journal}"}) + "\n"
                   for i in range(200))
    cli.ok("enqueue", "--file", "-", input=jobs)
    procs = [cli.start_worker("--count", "2", "--stop-when-empty") for _ in range(3)]
    for proc in procs:
        assert proc.wait(60) == 0
    assert Counter(journal.read_text().split()) == {f"j{i:03d}": 1 for i in range(200)}


def test_eight_enqueuers_and_eight_workers_never_see_database_is_locked(cli: Cli) -> None:
    worker = cli.start_worker("--count", "8")
    cli.wait_for_workers(8)
    batch = "".join(json.dumps({"command": "true"}) + "\n" for _ in range(50))
    enqueuers = [subprocess.Popen([QUEUECTL, "enqueue", "--file", "-"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env)
                 for _ in range(8)]
    outputs = [proc.communicate(batch, timeout=60) for proc in enqueuers]
    for proc, (out, err) in zip(enqueuers, outputs):
        assert proc.returncode == 0 and err == "", err
        assert len(out.split()) == 50
    wait_until(lambda: cli.json("status")["jobs"]["completed"] == 400, 60, message="400 completed")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    out, err = cli.output(worker)
    assert "locked" not in err and "busy" not in err


def test_an_idle_worker_starts_a_new_job_without_waiting_for_the_poll(cli: Cli) -> None:
    cli.config(**{"poll-interval": 60})
    proc = cli.start_worker()
    cli.wait_for_workers(1)
    cli.enqueue(id="prompt", command="true")
    # Waiting well below the 60 s poll interval proves the wake-up, not polling, started it.
    cli.wait_for_state("prompt", "completed", timeout=10)
    proc.terminate()
    assert proc.wait(10) == 0


def test_worker_list_and_status_show_live_workers(cli: Cli) -> None:
    proc = cli.start_worker("--count", "3")
    cli.wait_for_workers(3)
    workers = cli.json("worker", "list")
    assert len(workers) == 3
    assert {w["pid"] for w in workers} == {proc.pid}
    assert all({"id", "pid", "host", "started_at", "heartbeat_at", "current_job"} <= set(w) for w in workers)
    proc.terminate()
    assert proc.wait(10) == 0
    assert cli.json("status")["workers"]["active"] == 0
    assert cli.ok("worker", "list") == "no workers running\n"


def test_worker_stop_from_another_process_lets_running_jobs_finish(cli: Cli, tmp_path: Path) -> None:
    cli.enqueue(id="busy", command=f"sleep 1; touch {tmp_path / 'finished'}")
    first, second = cli.start_worker("--count", "2"), cli.start_worker()
    cli.wait_for_workers(3)
    cli.wait_for_state("busy", "processing")
    out = cli.ok("worker", "stop")
    assert out == "stopped 2 supervisors (3 workers)\n"
    assert first.wait(5) == 0 and second.wait(5) == 0
    assert cli.job("busy")["state"] == "completed"
    assert (tmp_path / "finished").exists()
    assert cli.ok("worker", "stop") == "no workers running\n"


def test_sigterm_finishes_running_jobs_then_exits_0(cli: Cli) -> None:
    cli.enqueue(id="finish-me", command="sleep 1")
    proc = cli.start_worker()
    cli.wait_for_state("finish-me", "processing")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert "stopped supervisor" in cli.output(proc)[0]
    assert cli.job("finish-me")["state"] == "completed"


def test_a_second_signal_kills_running_jobs_and_returns_them_to_pending_uncounted(cli: Cli, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    cli.enqueue(id="stubborn", command=f"echo $$ > {pid_file}; sleep 300")
    proc = cli.start_worker()
    cli.wait_for_state("stubborn", "processing")
    wait_until(pid_file.exists)
    proc.send_signal(signal.SIGINT)
    # Signals sent back to back merge into one: send the second once the first is seen.
    wait_until(lambda: "finishing 1 running job" in cli.output(proc)[1], message="the first signal")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    job = cli.job("stubborn")
    assert (job["state"], job["attempts"], job["started_at"], job["worker_id"]) == ("pending", 0, None, None)
    # The handed-back run stays in the history, so its number and logs are never reused.
    assert [(a["attempt"], a["error"]) for a in job["history"]] == [(1, "interrupted by worker shutdown")]
    assert "0 attempts run" in cli.output(proc)[0]
    wait_until(lambda: start_time(int(pid_file.read_text())) is None, 5, message="the job to die")


def test_a_sigkilled_workers_job_is_recovered_by_another_worker_and_completes(cli: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    cli.config(**{"lease-timeout": 2, "max-backoff": 0})
    cli.enqueue(id="victim", command=f"echo start $QUEUECTL_ATTEMPT | tee -a {journal}; sleep 2; "
                                     f"echo end $QUEUECTL_ATTEMPT >> {journal}")
    doomed = cli.start_worker()
    cli.wait_for_state("victim", "processing")
    survivor = cli.start_worker()
    os.killpg(doomed.pid, signal.SIGKILL)  # the supervisor (its job runs in its own session)
    doomed.wait()
    job = cli.wait_for_state("victim", "completed", timeout=20)
    assert job["attempts"] == 2
    assert job["history"][0]["error"] == "worker lost"
    assert cli.ok("logs", "victim", "--attempt", "1") == "start 1\n"  # kept from the lost run
    # The orphaned first attempt was ended before the second began: it never wrote "end 1".
    assert journal.read_text().split("\n")[:-1] == ["start 1", "start 2", "end 2"]
    survivor.terminate()
    assert survivor.wait(10) == 0


def test_a_job_whose_worker_keeps_dying_still_ends_in_the_dlq(cli: Cli) -> None:
    cli.config(**{"max-backoff": 0})
    cli.enqueue(id="killer", command="kill -9 $PPID; sleep 1", max_retries=1)
    # The command kills its own worker... well, its shell's parent: the supervisor.
    for _ in range(2):
        proc = cli.start_worker()
        wait_until(lambda p=proc: p.poll() is not None, 10, message="the worker to be killed")
    result = cli.run_until_empty()
    assert result.returncode == 0
    job = cli.job("killer")
    assert (job["state"], job["attempts"], job["last_error"]) == ("dead", 2, "worker lost")


def test_detach_prints_the_pid_and_runs_in_the_background(cli: Cli) -> None:
    out = cli.ok("worker", "start", "--detach", "--count", "2")
    pid = int(out.strip())
    try:
        cli.wait_for_workers(2)
        assert {w["pid"] for w in cli.json("worker", "list")} == {pid}
        cli.enqueue(id="bg", command="echo from the background")
        cli.wait_for_state("bg", "completed")
        assert cli.ok("worker", "stop") == "stopped 1 supervisor (2 workers)\n"
        wait_until(lambda: start_time(pid) is None, 5, message="the detached worker to exit")
        log = cli.worker_log.read_text()
        assert "job bg completed" in log
    finally:
        if start_time(pid) is not None:
            os.kill(pid, signal.SIGKILL)


def test_detach_with_stop_when_empty_on_an_empty_queue_is_a_success(cli: Cli) -> None:
    pid = int(cli.ok("worker", "start", "--detach", "--stop-when-empty").strip())
    wait_until(lambda: start_time(pid) is None, 10, message="the detached worker to finish")
    assert "no jobs left" in cli.worker_log.read_text()
