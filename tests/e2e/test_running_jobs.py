"""Jobs running through real worker processes: retries, DLQ, order, timeouts, logs."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from queuectl.liveness import start_time
from tests.conftest import QUEUECTL, Cli, wait_until


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_job_completes_and_its_output_is_kept(cli: Cli) -> None:
    cli.enqueue(id="hello", command="echo hello; echo oops >&2")
    result = cli.run_until_empty()
    assert result.returncode == 0, result.stderr
    job = cli.job("hello")
    assert (job["state"], job["attempts"], job["exit_code"], job["last_error"]) == ("completed", 1, 0, None)
    assert job["worker_id"] and job["started_at"] and job["finished_at"]
    assert cli.ok("logs", "hello") == "hello\n"
    assert cli.ok("logs", "hello", "--stderr") == "oops\n"
    assert job["logs"]["stdout"].endswith("logs/hello/1.stdout")


def test_a_failing_job_retries_with_exponential_backoff_then_lands_in_the_dlq(cli: Cli) -> None:
    cli.config(**{"backoff-base": 2, "max-backoff": 3600})
    cli.enqueue(id="flaky", command="echo try $QUEUECTL_ATTEMPT; exit 3", max_retries=2)
    assert cli.run_until_empty(timeout=60).returncode == 0
    job = cli.job("flaky")
    assert (job["state"], job["attempts"], job["exit_code"]) == ("dead", 3, 3)
    assert job["last_error"] == "exit code 3"
    history = job["history"]
    assert [a["attempt"] for a in history] == [1, 2, 3]
    # Attempt k failing schedules the next one backoff_base ** k seconds later: 2 s, then 4 s.
    gaps = [(ts(history[i + 1]["started_at"]) - ts(history[i]["finished_at"])).total_seconds()
            for i in range(2)]
    assert 2.0 <= gaps[0] < 3.0 and 4.0 <= gaps[1] < 5.0, gaps
    assert [j["id"] for j in cli.json("dlq", "list")] == ["flaky"]
    assert cli.ok("logs", "flaky", "--attempt", "2") == "try 2\n"


def test_a_failed_job_waits_in_state_failed_with_run_at_in_the_future(cli: Cli) -> None:
    cli.config(**{"backoff-base": 60})
    cli.enqueue(id="later", command="exit 1", max_retries=1)
    proc = cli.start_worker()
    job = cli.wait_for_state("later", "failed")
    assert job["attempts"] == 1
    delay = (ts(job["run_at"]) - ts(job["finished_at"])).total_seconds()
    assert 59.9 <= delay <= 60.1
    proc.terminate()
    assert proc.wait(10) == 0


def test_dlq_retry_resets_the_job_and_it_runs_again(cli: Cli, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    cli.config(**{"max-backoff": 0})
    cli.enqueue(id="d1", command=f"test -e {flag}", max_retries=0)
    cli.enqueue(id="d2", command=f"test -e {flag}", max_retries=0)
    cli.run_until_empty()
    assert [j["state"] for j in (cli.job("d1"), cli.job("d2"))] == ["dead", "dead"]
    assert cli.ok("dlq", "retry", "d1") == "d1\n"
    job = cli.job("d1")
    assert (job["state"], job["attempts"], job["exit_code"], job["last_error"]) == ("pending", 0, None, None)
    flag.write_text("")
    assert cli.ok("dlq", "retry", "--all") == "d2\n"
    cli.run_until_empty()
    for job_id in ("d1", "d2"):
        job = cli.job(job_id)
        assert (job["state"], job["attempts"]) == ("completed", 1)
        assert [a["attempt"] for a in job["history"]] == [1, 2]  # the dead run's record is kept
    assert cli.json("dlq", "list") == []


def test_jobs_run_in_priority_then_run_at_then_enqueue_order(cli: Cli, tmp_path: Path) -> None:
    order = tmp_path / "order"
    past = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    for job_id, priority, run_at in [("p5", 5, None), ("p0-a", 0, None), ("p0-b", 0, None),
                                      ("neg", -10, None), ("p0-early", 0, past)]:
        fields = {"id": job_id, "command": f"echo {job_id} >> {order}", "priority": priority}
        if run_at:
            fields["run_at"] = run_at
        cli.ok("enqueue", json.dumps(fields))
    cli.run_until_empty("--count", "1")
    assert order.read_text().split() == ["neg", "p0-early", "p0-a", "p0-b", "p5"]


def test_a_scheduled_job_does_not_start_before_run_at(cli: Cli) -> None:
    cli.ok("enqueue", "--command", "true", "--id", "sched", "--delay", "1.5s")
    cli.enqueue(id="now", command="true")
    cli.run_until_empty()
    sched, now = cli.job("sched"), cli.job("now")
    assert ts(sched["started_at"]) >= ts(sched["run_at"])
    assert ts(sched["started_at"]) - ts(sched["created_at"]) >= timedelta(seconds=1.5)
    assert ts(now["started_at"]) < ts(sched["started_at"])


def test_a_timeout_kills_the_command_and_its_grandchildren(cli: Cli, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    cli.enqueue(id="slow", command=f"(sleep 300 & echo $! >> {pids}; wait) & sleep 300",
                timeout=1, max_retries=0)
    started = time.monotonic()
    cli.run_until_empty()
    assert time.monotonic() - started < 10
    job = cli.job("slow")
    assert (job["state"], job["last_error"]) == ("dead", "timed out after 1s")
    for pid in map(int, pids.read_text().split()):
        wait_until(lambda p=pid: start_time(p) is None, 2, message=f"grandchild {pid} to die")


def test_config_job_timeout_applies_to_jobs_without_their_own(cli: Cli) -> None:
    cli.config(**{"job-timeout": "0.5"})
    cli.enqueue(id="t", command="sleep 30", max_retries=0)
    cli.run_until_empty()
    assert cli.job("t")["last_error"] == "timed out after 0.5s"


def test_a_command_that_cannot_run_fails_gracefully(cli: Cli) -> None:
    cli.enqueue(id="missing", command="no-such-program-anywhere --flag", max_retries=0)
    cli.enqueue(id="after", command="true")
    assert cli.run_until_empty().returncode == 0
    missing = cli.job("missing")
    assert (missing["state"], missing["exit_code"]) == ("dead", 127)
    assert missing["last_error"] == "exit code 127 (command not found)"
    assert "not found" in cli.ok("logs", "missing", "--stderr")
    assert cli.job("after")["state"] == "completed"


def test_output_is_capped_at_max_log_bytes(cli: Cli) -> None:
    cli.config(**{"max-log-bytes": "1K"})
    cli.enqueue(id="loud", command="head -c 200000 /dev/zero | tr '\\0' a")
    cli.run_until_empty()
    assert cli.job("loud")["state"] == "completed"
    out = cli.ok("logs", "loud")
    assert out.startswith("a" * 1024) and "truncated at 1024 bytes" in out and len(out) < 1200


def test_jobs_and_config_survive_a_restart(cli: Cli) -> None:
    cli.config(**{"max-retries": 9})
    cli.enqueue(id="kept", command="true")
    cli.enqueue(id="ran", command="true")
    proc = cli.start_worker()
    cli.wait_for_state("ran", "completed")
    proc.terminate()
    proc.wait(10)
    # A new process sees everything exactly as it was.
    assert cli.ok("config", "get", "max-retries") == "9\n"
    assert {j["id"]: j["state"] for j in cli.json("list")} == {"kept": "completed", "ran": "completed"}


def test_running_workers_pick_up_config_changes(cli: Cli) -> None:
    cli.config(**{"max-backoff": 3600})
    proc = cli.start_worker()
    cli.wait_for_workers(1)
    cli.config(**{"max-backoff": 0})
    cli.enqueue(id="quick", command="exit 1", max_retries=2)
    cli.wait_for_state("quick", "dead", timeout=10)
    proc.terminate()
    assert proc.wait(10) == 0


def test_a_job_can_enqueue_follow_ups_but_never_sees_the_database_password(cli: Cli) -> None:
    if not cli.is_sqlite:  # trust auth ignores the password, so the URL still works with one
        cli.url = cli.url.replace("postgres@", "postgres:hunter2@", 1)
        cli.env["QUEUECTL_DB"] = cli.url
    cli.env["PGPASSWORD"] = "hunter2"
    queuectl = QUEUECTL
    cli.enqueue(id="parent", command=f'echo "$QUEUECTL_DB $PGPASSWORD"; '
                                     f'{queuectl} enqueue --command "echo child" --id child')
    assert cli.run_until_empty().returncode == 0
    assert cli.job("child")["state"] == "completed"
    seen = cli.ok("logs", "parent")
    assert "hunter2" not in seen
    assert seen.split()[0] == cli.url.replace(":hunter2", "")


def test_env_allow_limits_what_jobs_inherit(cli: Cli) -> None:
    cli.env["SECRET_TOKEN"] = "s3cret"
    cli.config(**{"env-allow": "PATH,LANG"})
    cli.enqueue(id="env", command="env | cut -d= -f1 | sort")
    assert cli.run_until_empty().returncode == 0
    names = set(cli.ok("logs", "env").split())
    assert "SECRET_TOKEN" not in names and "HOME" not in names
    assert {"PATH", "QUEUECTL_DB", "QUEUECTL_JOB_ID", "QUEUECTL_ATTEMPT"} <= names
