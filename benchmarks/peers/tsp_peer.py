"""task-spooler (``tsp``, Debian's ``task-spooler``): a per-user job server on a Unix
socket. Each workload gets its own server on a private ``TS_SOCKET`` in the work
folder, killed with ``tsp -K`` (then by tag) at the end.

tsp has no separate workers: its server starts queued jobs as slots free up, and it
cannot be started with zero slots (``tsp -S 0`` is refused). So "enqueue first, then
start the workers" is done with a gate: a job holding every slot (``tsp -N SLOTS``)
blocks on a FIFO while the jobs are queued behind it; writing to the FIFO releases it
and the clock runs from that write to the last job finished. Every queued tsp job is a
client process waiting on the server's socket, and the server takes about 1,000
connections, so drain queues its jobs in gated batches of 500 and adds up the batches'
drain times, and bulk_enqueue enqueues at most 900 jobs and reports the rate of those.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from ._probe import pickup as probe_loop
from .base import Peer

BATCH = 500  # queued jobs per gated drain batch (the server holds ~1,000 connections)
BULK_CAP = 900  # most jobs one server can hold queued at once, with room to spare
BULK_BUDGET = 20.0  # seconds; bulk_enqueue stops early past this and reports the rate


class Tsp(Peer):
    name = "tsp"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self._n = 0
        self.socket: Path | None = None

    def unavailable(self) -> str | None:
        if shutil.which("tsp") is None:
            return "tsp not installed (apt-get install task-spooler)"
        return None

    # --- the CLI ------------------------------------------------------------------

    def _fresh(self, slots: int) -> None:
        self._n += 1
        self.socket = self.workdir / f"sock{self._n}"
        self.tsp("-S", str(slots))  # starts this socket's server

    def tsp(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        assert self.socket is not None
        result = subprocess.run(["tsp", *args], env=self.env(TS_SOCKET=str(self.socket)),
                                cwd=self.workdir, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=timeout,
                                start_new_session=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"tsp {' '.join(args)} exited {result.returncode}: "
                               f"{result.stderr.strip()}")
        return result.stdout

    def _states(self) -> list[tuple[str, str]]:
        """(state, exit level) for every job in ``tsp -l``."""
        rows = []
        for line in self.tsp("-l").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2:
                level = fields[3] if fields[1] == "finished" and len(fields) > 3 else ""
                rows.append((fields[1], level))
        return rows

    def _kill_server(self) -> None:
        if self.socket is not None and self.socket.exists():
            try:
                self.tsp("-K", check=False, timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.stop_all()

    def _gate(self, slots: int) -> Path:
        """Queue a job that holds every slot until its FIFO is written; wait until it runs."""
        fifo = self.workdir / f"gate{self._n}-{time.monotonic_ns()}"
        os.mkfifo(fifo)
        self.tsp("-N", str(slots), "-n", "sh", "-c", f"read x < {fifo}")
        deadline = time.monotonic() + 10
        while self.tsp("-s").strip() != "running":
            if time.monotonic() > deadline:
                raise RuntimeError("tsp: the gate job did not start")
            time.sleep(0.005)
        return fifo

    def _release(self, fifo: Path) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:  # ENXIO: the gate's shell has not opened it yet
                if time.monotonic() > deadline:
                    raise RuntimeError("tsp: the gate job never opened its FIFO")
                time.sleep(0.001)
        os.write(fd, b"go\n")
        os.close(fd)

    # --- workloads ----------------------------------------------------------------

    def drain(self, jobs: int, slots: int) -> float:
        self.notes["drain"] = (f"gated batches of {BATCH}: time from releasing a gate job "
                               "that held every slot to the last job finished, summed; "
                               "the always-on tsp server is not restarted (no worker start)")
        took = 0.0
        try:
            with self.running():
                self._fresh(slots)
                left = jobs
                while left:
                    batch = min(BATCH, left)
                    self.tsp("-C")  # forget finished jobs: the listing stays short
                    fifo = self._gate(slots)
                    for _ in range(batch):
                        self.tsp("-n", "sh", "-c", "true")
                    started = time.perf_counter()
                    self._release(fifo)
                    self.tsp("-w", check=False, timeout=120)  # the last job added
                    while True:
                        states = self._states()
                        if not any(s in ("running", "queued", "allocating") for s, _ in states):
                            break
                        time.sleep(0.001)
                    took += time.perf_counter() - started
                    ok = sum(1 for s, level in states if s == "finished" and level == "0")
                    if ok != batch + 1:  # the jobs and the gate
                        raise RuntimeError(f"tsp: {ok - 1} of {batch} jobs finished with 0")
                    left -= batch
        finally:
            self._kill_server()
        return jobs / took

    def pickup(self, probes: int) -> list[float]:
        self.notes["pickup"] = "enqueued with the `tsp` CLI; timed from the call returning"
        try:
            with self.running():
                self._fresh(2)
                return probe_loop(lambda cmd: self.tsp("-n", "sh", "-c", cmd), probes,
                                  self.workdir / f"probes{self._n}")
        finally:
            self._kill_server()

    def bulk_enqueue(self, jobs: int) -> float:
        try:
            with self.running():
                self._fresh(1)
                self._gate(1)  # nothing runs while we enqueue
                cap = min(jobs, BULK_CAP)
                done = 0
                started = time.perf_counter()
                while done < cap:
                    self.tsp("-n", "sh", "-c", "true")
                    done += 1
                    if time.perf_counter() - started > BULK_BUDGET:
                        break
                took = time.perf_counter() - started
                queued = sum(1 for s, _ in self._states() if s == "queued")
                if queued != done:
                    raise RuntimeError(f"tsp: {queued} of {done} jobs queued")
        finally:
            self._kill_server()  # drops the queued jobs
        if done < jobs:
            self.notes[f"bulk_enqueue_{jobs}"] = (
                f"{done} of {jobs} `tsp` calls timed, rate extrapolated: one server holds "
                "~1,000 jobs (each queued job is a waiting client process)")
        return done / took
