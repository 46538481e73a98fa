"""One attempt of one job: ``/bin/sh -c COMMAND`` in its own session and process
group, output drained into capped log files, a timeout that kills the whole
group, and nothing left behind when it ends.

A job is its process group: when the shell exits, whatever it left running in
the group is terminated too, so a job never leaks processes or zombies.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

from ..crashpoints import crash_point
from ..lifecycle import AttemptResult
from ..logs import CappedLog, attempt_paths

#: Seconds between SIGTERM and SIGKILL when a job's process group is stopped.
KILL_GRACE = 2.0
#: After SIGKILL, how long to wait for the pipes to close (a process that escaped the
#: group with setsid may hold them open forever).
PIPE_CLOSE_WAIT = 1.0
READ_SIZE = 65536


@dataclass(frozen=True)
class RunSpec:
    job_id: str
    command: str
    attempt: int
    timeout: float | None  # effective timeout in seconds, None for none
    max_log_bytes: int
    log_dir: Path
    env: Mapping[str, str]  # the base environment; the job's variables are added


@dataclass(frozen=True)
class RunReport:
    result: AttemptResult
    stdout_path: str | None
    stderr_path: str | None
    stdout_tail: bytes | None
    stderr_tail: bytes | None
    started: float  # time.monotonic()
    finished: float


class Execution:
    """Runs one attempt in a thread; ``on_done(self)`` is called from that thread."""

    def __init__(self, spec: RunSpec, on_done: Callable[["Execution"], None]) -> None:
        self.spec = spec
        self.report: RunReport | None = None
        self._on_done = on_done
        self._stop_reason: str | None = None  # "interrupted" or "lost", set by stop()
        self._stop_lock = threading.Lock()
        self._stop_r, self._stop_w = os.pipe()  # select() sees stop() through this pipe
        self._group: _Group | None = None  # set while the process group may be signalled
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"job-{spec.job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, reason: str, *, at_once: bool = False) -> None:
        """Terminate the job's process group (SIGTERM, then SIGKILL after a grace period;
        ``at_once``: SIGKILL now, when there is no time for a grace period).

        ``reason`` is "interrupted" (a forced shutdown: the attempt is handed back)
        or "lost" (our lease is gone or about to be: someone else may own the job)."""
        with self._stop_lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            if self._closed:
                return
            if at_once and self._group is not None:
                self._group.kill()
            os.write(self._stop_w, b"x")

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # --- the attempt, in its own thread -----------------------------------------

    def _run(self) -> None:
        started = time.monotonic()
        out_path, err_path = attempt_paths(self.spec.log_dir, self.spec.job_id, self.spec.attempt)
        out = CappedLog(out_path, self.spec.max_log_bytes)
        err = CappedLog(err_path, self.spec.max_log_bytes)
        try:
            result = self._execute(out, err, started)
        except Exception as exc:  # never let one job take the worker down
            result = AttemptResult(start_error=f"{type(exc).__name__}: {exc}")
        finally:
            out.close()
            err.close()
            with self._stop_lock:
                self._closed = True
                os.close(self._stop_r)
                os.close(self._stop_w)
        if self._stop_reason == "interrupted":
            result = AttemptResult(interrupted=True)
        elif self._stop_reason == "lost":
            result = AttemptResult(lost=True)
        log_error = out.error or err.error
        if log_error:
            result = replace(result, log_error=log_error)
        self.report = RunReport(result=result,
                                stdout_path=str(out.path) if out.created else None,
                                stderr_path=str(err.path) if err.created else None,
                                stdout_tail=out.tail, stderr_tail=err.tail, started=started, finished=time.monotonic())
        self._on_done(self)

    def _execute(self, out: CappedLog, err: CappedLog, started: float) -> AttemptResult:
        env = dict(self.spec.env)
        env["QUEUECTL_JOB_ID"] = self.spec.job_id
        env["QUEUECTL_ATTEMPT"] = str(self.spec.attempt)
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", self.spec.command], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, env=env, close_fds=True)
        except OSError as exc:
            return AttemptResult(start_error=exc.strerror or str(exc))
        crash_point("after-spawn")
        assert proc.stdout is not None and proc.stderr is not None
        group = _Group(proc)
        with self._stop_lock:
            self._group = group
        streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
        deadline = None if self.spec.timeout is None else started + self.spec.timeout
        timed_out = False
        try:
            with selectors.DefaultSelector() as sel:
                for fd in streams:
                    sel.register(fd, selectors.EVENT_READ)
                if group.exit_fd is not None:
                    sel.register(group.exit_fd, selectors.EVENT_READ)
                sel.register(self._stop_r, selectors.EVENT_READ)
                while streams or not group.leader_exited:
                    now = time.monotonic()
                    if deadline is not None and now >= deadline and not group.terminating:
                        timed_out = True
                        group.terminate(now)
                    group.escalate(now)
                    if group.gave_up(now):
                        break  # an escaped process holds our pipes: stop reading them
                    for key, _ in sel.select(group.wait_time(deadline, now)):
                        fd = key.fd
                        if fd == group.exit_fd:
                            sel.unregister(fd)
                            group.on_leader_exit(time.monotonic())
                        elif fd == self._stop_r:
                            sel.unregister(fd)
                            if not group.terminating:
                                group.terminate(time.monotonic())
                        else:
                            data = os.read(fd, READ_SIZE)
                            if data:
                                streams[fd].write(data)
                            else:
                                sel.unregister(fd)
                                del streams[fd]
                    if group.exit_fd is None and not group.leader_exited and proc.poll() is not None:
                        group.on_leader_exit(time.monotonic())
        finally:
            with self._stop_lock:
                self._group = None
                group.finish()
            proc.stdout.close()
            proc.stderr.close()
        code = proc.returncode
        signum = -code if code < 0 else None
        exit_code = code if code >= 0 else None
        if timed_out:
            return AttemptResult(exit_code=exit_code, signal=signum,
                                 timed_out_after=self.spec.timeout)
        return AttemptResult(exit_code=exit_code, signal=signum)


class _Group:
    """The job's process group. The leader is reaped only in ``finish()``: until then
    its pid, which is the group id, cannot be reused, so signalling the group is safe."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pgid = proc.pid
        self.leader_exited = False
        self.terminating = False
        self._term_at = 0.0
        self._killed_at: float | None = None
        try:
            self.exit_fd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): poll the leader instead
            self.exit_fd = None

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def on_leader_exit(self, now: float) -> None:
        """The shell is gone; whatever it left in the group is asked to go too."""
        self.leader_exited = True
        if not self.terminating:
            self.terminate(now)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self, now: float) -> None:
        self.terminating = True
        self._term_at = now
        self._signal(signal.SIGTERM)

    def escalate(self, now: float) -> None:
        if self.terminating and self._killed_at is None and now >= self._term_at + KILL_GRACE:
            self._signal(signal.SIGKILL)
            self._killed_at = now

    def gave_up(self, now: float) -> bool:
        return self._killed_at is not None and now >= self._killed_at + PIPE_CLOSE_WAIT

    def wait_time(self, deadline: float | None, now: float) -> float | None:
        """How long select() may block before something is due."""
        due = []
        if deadline is not None and not self.terminating:
            due.append(deadline)
        if self.terminating:
            due.append(self._term_at + KILL_GRACE if self._killed_at is None
                       else self._killed_at + PIPE_CLOSE_WAIT)
        if self.exit_fd is None:
            due.append(now + 0.05)
        return max(0.0, min(due) - now) if due else None

    def finish(self) -> None:
        """Kill anything left in the group, then reap the leader."""
        self._signal(signal.SIGKILL)
        self.proc.wait()
        if self.exit_fd is not None:
            os.close(self.exit_fd)
