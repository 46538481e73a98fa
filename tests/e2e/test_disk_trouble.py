"""Disk trouble: the database and logs on a small filesystem that fills up while jobs run.
Clear errors, the worker stays up, results that could not be stored are kept and written
later, and once space is freed the queue drains with the database intact."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import Cli, wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir(mode=0o700)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write until the filesystem is full; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_delays_results_but_loses_none_and_the_queue_drains_after(
        small_disk: Path, tmp_path: Path) -> None:
    cli = Cli(str(small_disk / "queue.db"), tmp_path)
    try:
        cli.config(**{"max-log-bytes": "4K", "max-backoff": 0, "max-retries": 10})
        cli.ok("enqueue", "--file", "-", input="".join(
            json.dumps({"id": f"j{n:03d}", "command": "head -c 3000 /dev/zero; sleep 0.02"}) + "\n"
            for n in range(100)))
        worker = cli.start_worker("--count", "2", env={"QUEUECTL_BUSY_TIMEOUT": "1"})
        wait_until(lambda: cli.json("status")["jobs"]["completed"] >= 10, 30, message="progress")
        filler = fill(small_disk)
        time.sleep(3)  # jobs keep finishing on a full disk: logs and results cannot be written
        assert worker.poll() is None, "the worker went down on a full disk"
        filler.unlink()
        wait_until(lambda: cli.json("status")["jobs"]["completed"] == 100, 60, interval=0.2,
                   message="the queue to drain once space is back")
        assert worker.poll() is None
        err = cli.output(worker)[1]
        assert "Traceback" not in err
        assert "full" in err  # the worker said what was wrong
        assert len(err.splitlines()) < 2000  # and waited between tries instead of spinning
        jobs = cli.json("list")
        assert [j["state"] for j in jobs] == ["completed"] * 100
        troubled = [j for j in jobs if j["last_error"]]
        assert all("cannot write log" in j["last_error"] for j in troubled)
        with sqlite3.connect(cli.db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        worker.terminate()
        assert worker.wait(10) == 0
    finally:
        cli.cleanup()
