"""What every peer adapter shares: process handling (own sessions, tagged environments,
liveness from /proc), the peers' virtualenv, and driver scripts that run in it.

Every process a peer starts gets ``QUEUECTL_PEER_TAG=<unique tag>`` in its environment,
which its children (job shells, RQ work horses, tsp's daemonised clients and server)
inherit. Cleanup kills the process groups it started, then sweeps /proc for any live
process carrying the tag, so nothing survives a workload, even one that raised.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = HERE.parent / ".peers-venv"
PY = VENV / "bin" / "python"
TAG_VAR = "QUEUECTL_PEER_TAG"
PG_URL = os.environ.get("QUEUECTL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


# --- /proc ---------------------------------------------------------------------------

def proc_state(pid: int) -> str | None:
    """The state letter from /proc/PID/stat, or None when the process is gone. A zombie
    ("Z") is dead for our purposes: PID 1 reaps slowly on this machine."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:][:1].decode()


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def tagged(tag: str) -> list[int]:
    """Live processes whose environment carries ``tag``."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_tagged(tag: str, timeout: float = 10.0) -> list[int]:
    """SIGKILL every live process carrying ``tag`` until none is left; the pids killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = tagged(tag)
        if not pids:
            return sorted(killed)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes tagged {tag} survive SIGKILL: {pids}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """Signal the process group ``proc`` leads (it was started in its own session), wait
    up to ``grace`` seconds, then SIGKILL what is left of the group. Reaps ``proc``.
    A group whose leader is reaped and which has no live member is left alone: its
    number may belong to someone else by now."""
    for signum, wait in ((sig, grace), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None and not _group_members(proc.pid):
            return
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_members(proc.pid):
                return
            time.sleep(0.01)
    proc.wait(5)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                members.append(int(entry.name))
    return members


class LineReader:
    """Lines from a child's stdout with a timeout (select on the raw descriptor)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line from pid {self.proc.pid} in {timeout} s")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise RuntimeError(f"pid {self.proc.pid} exited without a line "
                                       f"(exit {self.proc.wait()})")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


# --- the base class ------------------------------------------------------------------

class Peer:
    """One peer system under the benchmark's workloads. Subclasses implement drain,
    pickup and bulk_enqueue; each runs inside ``with self.running():`` so that every
    process it started is gone when it returns or raises."""

    name = "peer"
    #: the app module (in this folder) that the peers venv runs as a driver, if any
    driver_module: str | None = None

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self.tag = f"{self.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen] = []
        #: per workload, how it was adapted for this peer (bench.py may print these)
        self.notes: dict[str, str] = {}
        self._closed = False

    # interface --------------------------------------------------------------------

    def unavailable(self) -> str | None:
        if self.driver_module and not PY.exists():
            return f"no peers venv at {VENV}: run benchmarks.peers.ensure_installed()"
        return None

    def drain(self, jobs: int, slots: int) -> float:
        raise NotImplementedError

    def pickup(self, probes: int) -> list[float]:
        raise NotImplementedError

    def bulk_enqueue(self, jobs: int) -> float:
        raise NotImplementedError

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.stop_all()
            self.cleanup()
        finally:
            kill_tagged(self.tag)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def cleanup(self) -> None:
        """Remove the peer's data (database, Redis keys); processes are already gone."""

    # processes --------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
        env.update({TAG_VAR: self.tag, "PYTHONPATH": str(HERE),
                    "PATH": f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
                    "TMPDIR": str(self.workdir), "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env

    def spawn(self, argv: list[str], log: str, stdout: Any = None,
              **extra_env: str) -> subprocess.Popen:
        """Start a long-running peer process in its own session, output to a log file."""
        logfile = open(self.workdir / log, "ab")
        try:
            proc = subprocess.Popen(argv, env=self.env(**extra_env), cwd=self.workdir,
                                    stdin=subprocess.DEVNULL,
                                    stdout=stdout if stdout is not None else logfile,
                                    stderr=logfile, start_new_session=True)
        finally:
            logfile.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        kill_group(proc, sig, grace)
        if proc.stdout:
            proc.stdout.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, grace=2.0)
        kill_tagged(self.tag)

    def running(self) -> "_Running":
        return _Running(self)

    def log_tail(self, log: str, lines: int = 15) -> str:
        path = self.workdir / log
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # drivers (the peer's Python API, run in the peers venv) ----------------------

    def driver(self, *args: Any, timeout: float = 300.0, **extra_env: str) -> Any:
        """Run ``<driver_module>.py args...`` in the peers venv; its last stdout line is
        JSON, returned decoded."""
        assert self.driver_module
        proc = subprocess.Popen([str(PY), str(HERE / f"{self.driver_module}.py"),
                                 *map(str, args)],
                                env=self.env(**extra_env), cwd=self.workdir,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            kill_group(proc, signal.SIGKILL)
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name} driver {args[0]} exited {proc.returncode}: "
                               f"{err.decode(errors='replace')[-2000:]}")
        lines = out.decode().strip().splitlines()
        if not lines:
            raise RuntimeError(f"{self.name} driver {args[0]} printed nothing: "
                               f"{err.decode(errors='replace')[-2000:]}")
        return json.loads(lines[-1])

    def driver_stream(self, *args: Any, **extra_env: str) -> tuple[subprocess.Popen, LineReader]:
        """A driver left running (tracked like a peer process), read line by line."""
        assert self.driver_module
        proc = self.spawn([str(PY), str(HERE / f"{self.driver_module}.py"), *map(str, args)],
                          "driver.log", stdout=subprocess.PIPE, **extra_env)
        return proc, LineReader(proc)


class _Running:
    """``with peer.running():`` stops every process the peer started, on any exit."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def __enter__(self) -> Peer:
        return self.peer

    def __exit__(self, *exc: object) -> None:
        self.peer.stop_all()
