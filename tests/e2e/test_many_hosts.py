"""PostgreSQL with workers on several hosts (host identities faked with QUEUECTL_HOSTNAME)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

from tests.conftest import (
    QUEUECTL,
    Cli,
    kill_by_env,
    requires_pg,
    wait_until,
)

pytestmark = requires_pg


def start_host(pg: Cli, host: str, *args: str) -> subprocess.Popen[str]:
    return pg.start_worker(*args, env={"QUEUECTL_HOSTNAME": host})


def kill_host(host: str) -> int:
    """SIGKILL every process of a fake host: its supervisor and every job it runs."""
    return kill_by_env(f"QUEUECTL_HOSTNAME={host}")


def journal_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_three_hosts_run_five_hundred_jobs_each_exactly_once(pg: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    pg.ok("enqueue", "--file", "-", input="".join(
        json.dumps({"id": f"j{i:03d}", "command": f"echo $QUEUECTL_JOB_ID >> {journal}"}) + "\n"
        for i in range(500)))
    hosts = [start_host(pg, f"host-{name}", "--count", "2", "--stop-when-empty") for name in "abc"]
    for proc in hosts:
        assert proc.wait(120) == 0, pg.output(proc)
    assert Counter(journal.read_text().split()) == {f"j{i:03d}": 1 for i in range(500)}
    ran_on = Counter(job["worker_id"].split("-")[1] for job in pg.json("list"))
    assert set(ran_on) == {"a", "b", "c"}, ran_on  # every host took part


def test_a_host_killed_as_a_whole_has_its_jobs_recovered_by_lease_expiry_elsewhere(
        pg: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    pg.config(**{"lease-timeout": 2, "max-backoff": 0})
    pg.ok("enqueue", "--file", "-", input="".join(json.dumps({
        "id": f"j{i:02d}",
        "command": f"echo start $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT >> {journal}; sleep 0.5; "
                   f"echo end $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT >> {journal}"}) + "\n" for i in range(40)))
    doomed = start_host(pg, "host-a", "--count", "3")
    wait_until(lambda: sum(1 for w in pg.json("worker", "list") if w["current_job"]) >= 3,
               message="host-a busy")
    others = [start_host(pg, "host-b", "--count", "2"), start_host(pg, "host-c", "--count", "2")]
    in_flight = {w["current_job"] for w in pg.json("worker", "list")
                 if w["current_job"] and w["host"] == "host-a"}
    assert kill_host("host-a") >= 1
    doomed.wait(10)
    wait_until(lambda: pg.json("status")["jobs"]["completed"] == 40, 60, interval=0.2,
               message="all 40 jobs completed")
    lost = {job["id"] for job in pg.json("list") if any(
        a["error"] == "worker lost" for a in pg.job(job["id"])["history"])}
    assert lost and lost <= in_flight | {j for j in lost}
    for job_id in lost:
        job = pg.job(job_id)
        assert job["state"] == "completed" and job["attempts"] == 2
        assert job["worker_id"].split("-")[1] in ("b", "c")
    # No attempt started while another attempt of the same job was still running on a live host.
    events = journal_lines(journal)
    ends = {(e[1], e[2]) for e in events if e[0] == "end"}
    assert all((job_id, "1") not in ends for job_id in lost)  # the killed attempts never finished
    assert Counter(e[1] for e in events if e[0] == "end") == {f"j{i:02d}": 1 for i in range(40)}
    assert pg.json("status")["jobs"]["processing"] == 0
    for proc in others:
        proc.terminate()
        assert proc.wait(10) == 0


def test_terminated_database_connections_lose_nothing(pg: Cli, tmp_path: Path) -> None:
    import psycopg

    from tests.conftest import PG_URL

    journal = tmp_path / "journal"
    pg.ok("enqueue", "--file", "-", input="".join(json.dumps({
        "id": f"j{i:03d}", "command": f"sleep 0.02; echo $QUEUECTL_JOB_ID >> {journal}"}) + "\n"
        for i in range(200)))
    workers = [start_host(pg, f"host-{n}", "--count", "2", "--stop-when-empty") for n in "ab"]
    terminated = 0
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        for round_ in range(1, 4):
            wait_until(lambda r=round_: journal.exists() and len(journal.read_text().split()) > 40 * r,
                       30, message="progress")
            terminated += admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND query NOT ILIKE '%pg_stat_activity%'").fetchone()[0]  # type: ignore[index]
    assert terminated >= 3
    for proc in workers:
        assert proc.wait(120) == 0, pg.output(proc)
    assert Counter(journal.read_text().split()) == {f"j{i:03d}": 1 for i in range(200)}
    assert pg.json("status")["jobs"] == {"pending": 0, "processing": 0, "completed": 200,
                                         "failed": 0, "dead": 0}


def test_twenty_workers_starting_together_on_an_empty_database_migrate_it_once(pg: Cli) -> None:
    procs = [subprocess.Popen([QUEUECTL, "worker", "start", "--stop-when-empty"], env=pg.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    import psycopg

    from tests.conftest import PG_URL

    schema = pg.url.rsplit("schema=", 1)[1]
    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute(f'SELECT version FROM "{schema}".schema_version').fetchall()
    from queuectl.store import migrations

    assert rows == [(migrations.load("postgres")[-1].version,)]


def test_worker_stop_host_stops_only_that_hosts_workers_at_once(pg: Cli) -> None:
    a = start_host(pg, "host-a", "--count", "2")
    b = start_host(pg, "host-b")
    pg.wait_for_workers(3)
    # The request travels by NOTIFY, well before the next heartbeat (10 s at the default lease).
    assert pg.ok("worker", "stop", "--host", "host-a", "--timeout", "5") == \
        "stopped 1 supervisor (2 workers)\n"
    assert a.wait(5) == 0
    assert b.poll() is None
    assert [w["host"] for w in pg.json("worker", "list")] == ["host-b"]
    assert pg.ok("worker", "stop", "--timeout", "5") == "stopped 1 supervisor (1 worker)\n"
    assert b.wait(5) == 0


def test_logs_are_readable_from_a_host_without_the_log_file(pg: Cli) -> None:
    pg.enqueue(id="chatty", command="seq 1 30000; echo problem >&2")  # ~150 KB of stdout
    assert pg.run_until_empty().returncode == 0
    full = pg.ok("logs", "chatty")
    assert full.splitlines()[-1] == "30000" and full.startswith("1\n")
    path = Path(pg.job("chatty")["logs"]["stdout"])
    path.unlink()  # as seen from another machine
    result = pg("logs", "chatty")
    assert result.returncode == 0
    assert "another host" in result.stderr
    assert len(result.stdout) == 64 * 1024 and full.endswith(result.stdout)
    Path(pg.job("chatty")["logs"]["stderr"]).unlink()
    assert pg.ok("logs", "chatty", "--stderr") == "problem\n"


def test_a_new_job_reaches_an_idle_worker_through_notify(pg: Cli) -> None:
    pg.config(**{"poll-interval": 60})
    proc = start_host(pg, "host-a")
    pg.wait_for_workers(1)
    started = time.monotonic()
    pg.enqueue(id="prompt", command="true")
    pg.wait_for_state("prompt", "completed", timeout=10)
    assert time.monotonic() - started < 30  # far below the 60 s poll: the NOTIFY did it
    proc.terminate()
    assert proc.wait(10) == 0


def test_a_stalled_supervisor_on_another_host_stops_its_job_when_it_resumes(
        pg: Cli, tmp_path: Path) -> None:
    """The documented limit across hosts (README, "The limit: other hosts"): a supervisor
    that is paused, not cut off, cannot fence its job, and a worker on another host
    cannot kill it. Once the lease has expired the job is rerun elsewhere; when the
    stalled supervisor resumes it learns its lease is gone, stops its attempt at once,
    and its late result changes nothing."""
    import signal

    from queuectl.liveness import start_time

    journal, pid_file = tmp_path / "journal", tmp_path / "pid"
    pg.config(**{"lease-timeout": 2, "max-backoff": 0})
    pg.enqueue(id="stalled", command=(
        f'echo start $QUEUECTL_ATTEMPT >> {journal}; '
        f'if [ "$QUEUECTL_ATTEMPT" = 1 ]; then echo $$ > {pid_file}; exec sleep 60; fi; '
        f'echo end $QUEUECTL_ATTEMPT >> {journal}'))
    stalled = start_host(pg, "host-a")
    wait_until(pid_file.exists, 10, message="attempt 1 to start on host-a")
    first = int(pid_file.read_text())
    stalled.send_signal(signal.SIGSTOP)
    try:
        elsewhere = start_host(pg, "host-b", "--stop-when-empty")
        job = pg.wait_for_state("stalled", "completed", timeout=30)
        assert elsewhere.wait(30) == 0, pg.output(elsewhere)
        # host-b could not touch host-a's processes: attempt 1 still runs.
        assert start_time(first) is not None
    finally:
        stalled.send_signal(signal.SIGCONT)
    wait_until(lambda: start_time(first) is None, 5, message="host-a to stop its stale attempt")
    wait_until(lambda: "lease" in pg.output(stalled)[1], 10, message="host-a to log the lost lease")
    time.sleep(0.5)  # give a (wrong) late write the chance to land
    after = pg.job("stalled")
    assert (after["state"], after["attempts"], after["worker_id"]) == (
        "completed", 2, job["worker_id"])
    assert job["worker_id"].startswith("host-b")
    assert journal.read_text().split("\n")[:-1] == ["start 1", "start 2", "end 2"]
    stalled.terminate()
    assert stalled.wait(10) == 0
