"""One attempt of one job: ``/bin/sh -c COMMAND`` in its own session and process
group, output drained into capped log files, a timeout that kills the whole
group, and nothing left behind when it ends.

A job is its process group: when the shell exits, whatever it left running in
the group is terminated too, so a job never leaks processes or zombies.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

from ..crashpoints import crash_point
from ..lifecycle import AttemptResult
from ..logs import CappedLog, attempt_paths
from .spawn import Environment, posix_spawn

#: Seconds between SIGTERM and SIGKILL when a job's process group is stopped.
KILL_GRACE = 2.0
#: After SIGKILL, how long to wait for the pipes to close (a process that escaped the
#: group with setsid may hold them open forever).
PIPE_CLOSE_WAIT = 1.0
READ_SIZE = 65536
_SHELL = "/bin/sh"
#: Dispositions a job must not inherit from the supervisor (Python ignores SIGPIPE).
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
#: Variables set for each attempt, over whatever the base environment holds.
_JOB_VARIABLES = ("QUEUECTL_JOB_ID", "QUEUECTL_ATTEMPT")


def base_environment(env: Mapping[str, str]) -> Environment:
    """The environment jobs start from (each attempt adds its id and number), encoded
    once for every attempt that uses it."""
    return Environment(env, per_job=_JOB_VARIABLES)


@dataclass(frozen=True)
class RunSpec:
    job_id: str
    command: str
    attempt: int
    timeout: float | None  # effective timeout in seconds, None for none
    max_log_bytes: int
    log_dir: Path
    env: Environment  # from base_environment(); the attempt's own variables are added


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
    """One attempt, driven without a thread of its own.

    The owner of a poll loop (the supervisor, for all its slots at once) calls
    ``launch()``, waits on ``fds()`` until ``next_due()``, and passes what happened to
    ``on_ready(fd)`` and ``tick()``; when the attempt is over, ``report`` is set and
    ``on_done(self)`` is called. ``start()`` instead runs the same machine in a thread
    of its own (for callers without a loop, such as tests).

    One loop for every slot means no thread per job: no thread hand-offs and no
    contention for the interpreter lock between slots, which cost more than the spawn
    itself for short jobs."""

    def __init__(self, spec: RunSpec, on_done: Callable[["Execution"], None] | None = None) -> None:
        self.spec = spec
        self.report: RunReport | None = None
        self._on_done = on_done
        self._stop_reason: str | None = None  # "interrupted" or "lost", set by stop()
        self._lock = threading.Lock()  # stop() may come from another thread (the fence watchdog)
        self._group: _Group | None = None  # set while the process group may be signalled
        self._streams: dict[int, CappedLog] = {}
        self._out: CappedLog | None = None
        self._err: CappedLog | None = None
        self._started = 0.0
        self._deadline: float | None = None
        self._timed_out = False
        self._wake_w: int | None = None  # start(): its own loop's wake-up pipe
        self._done = threading.Event()

    # --- driven by a loop -------------------------------------------------------------

    def launch(self) -> None:
        """Spawn the command. A failure to start finishes the attempt at once."""
        self._started = time.monotonic()
        out_path, err_path = attempt_paths(self.spec.log_dir, self.spec.job_id, self.spec.attempt)
        self._out = CappedLog(out_path, self.spec.max_log_bytes)
        self._err = CappedLog(err_path, self.spec.max_log_bytes)
        if self.spec.timeout is not None:
            self._deadline = self._started + self.spec.timeout
        _seal_once()
        try:
            group = _Group.spawn(self.spec)
        except Exception as exc:  # never let one job take the worker down
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._finish(AttemptResult(start_error=message or type(exc).__name__))
            return
        crash_point("after-spawn")
        self._streams = {group.stdout: self._out, group.stderr: self._err}
        with self._lock:
            self._group = group
            if self._stop_reason is not None:  # stopped before it started
                group.terminate(time.monotonic())

    def fds(self) -> list[int]:
        """Descriptors to poll for reading: the output pipes and the exit of the shell."""
        group = self._group
        if group is None:
            return []
        fds = list(self._streams)
        if group.exit_fd is not None and not group.leader_exited:
            fds.append(group.exit_fd)
        return fds

    def on_ready(self, fd: int) -> None:
        group = self._group
        if group is None:
            return
        if fd == group.exit_fd:
            group.on_leader_exit(time.monotonic())
        elif fd in self._streams:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            if data:
                self._streams[fd].write(data)
            else:
                del self._streams[fd]
        self.tick()

    def tick(self) -> None:
        """Apply timeouts and kill escalation; finish when the attempt is over."""
        group = self._group
        if group is None:
            return
        now = time.monotonic()
        with self._lock:
            if self._deadline is not None and now >= self._deadline and not group.terminating:
                self._timed_out = True
                group.terminate(now)
            group.escalate(now)
        if group.exit_fd is None and not group.leader_exited and group.proc_exited():
            group.on_leader_exit(now)
        if (not self._streams and group.leader_exited) or group.gave_up(now):
            # gave_up: an escaped process holds our pipes: stop reading them.
            self._finish(self._result(group))

    def next_due(self) -> float | None:
        """When ``tick()`` must run even if no descriptor turns ready (monotonic time)."""
        group = self._group
        if group is None:
            return None
        return group.next_due(self._deadline)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def stop(self, reason: str, *, at_once: bool = False) -> None:
        """Terminate the job's process group (SIGTERM, then SIGKILL after a grace period;
        ``at_once``: SIGKILL now, when there is no time for a grace period).

        ``reason`` is "interrupted" (a forced shutdown: the attempt is handed back)
        or "lost" (our lease is gone or about to be: someone else may own the job).
        From another thread than the loop's, only ``at_once`` takes effect without
        waiting for the loop's next turn."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            group = self._group
            if group is not None:
                if at_once:
                    group.kill()
                elif not group.terminating:
                    group.terminate(time.monotonic())
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    # --- without a loop -----------------------------------------------------------------

    def start(self) -> None:
        """Run the attempt in a thread of its own."""
        threading.Thread(target=self._run_alone, name=f"job-{self.spec.job_id}",
                         daemon=True).start()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the attempt is over and reported."""
        self._done.wait(timeout)

    def _run_alone(self) -> None:
        wake_r, self._wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        try:
            self.launch()
            while not self.finished:
                poller = select.poll()
                poller.register(wake_r, select.POLLIN)
                for fd in self.fds():
                    poller.register(fd, select.POLLIN)
                due = self.next_due()
                wait = None if due is None else max(0.0, due - time.monotonic()) * 1000
                for fd, _event in poller.poll(wait):
                    if fd == wake_r:
                        drain_wakeups(wake_r)
                    else:
                        self.on_ready(fd)
                self.tick()
        finally:
            wake_w, self._wake_w = self._wake_w, None
            os.close(wake_r)
            os.close(wake_w)

    # --- the end --------------------------------------------------------------------------

    def _result(self, group: "_Group") -> AttemptResult:
        code = group.finish()
        with self._lock:
            self._group = None
        signum = -code if code < 0 else None
        exit_code = code if code >= 0 else None
        if self._timed_out:
            return AttemptResult(exit_code=exit_code, signal=signum,
                                 timed_out_after=self.spec.timeout)
        return AttemptResult(exit_code=exit_code, signal=signum)

    def _finish(self, result: AttemptResult) -> None:
        out, err = self._out, self._err
        assert out is not None and err is not None
        out.close()
        err.close()
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
                                stdout_tail=out.tail, stderr_tail=err.tail,
                                started=self._started, finished=time.monotonic())
        try:
            if self._on_done is not None:
                self._on_done(self)
        finally:
            self._done.set()


def drain_wakeups(fd: int) -> None:
    """Empty a non-blocking wake-up pipe: what it held only meant "look again"."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


_DEVNULL: int | None = None


def _devnull() -> int:
    """One read-only /dev/null for every job's stdin (subprocess would open one per job)."""
    global _DEVNULL
    if _DEVNULL is None:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if _DEVNULL is None:  # another thread may have won the race; keep theirs
            _DEVNULL = fd
        else:
            os.close(fd)
    return _DEVNULL


class _Group:
    """The job's process group. The leader is reaped only in ``finish()``: until then
    its pid, which is the group id, cannot be reused, so signalling the group is safe."""

    def __init__(self, pid: int, stdout: int, stderr: int) -> None:
        self.pid = self.pgid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.leader_exited = False
        self.terminating = False
        self._term_at = 0.0
        self._killed_at: float | None = None
        self._status: int | None = None
        try:
            self.exit_fd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): poll the leader instead
            self.exit_fd = None

    @classmethod
    def spawn(cls, spec: RunSpec) -> "_Group":
        """``/bin/sh -c COMMAND`` as the leader of a new session and process group, stdin
        from /dev/null, stdout and stderr into non-blocking pipes.

        posix_spawn, not subprocess: a third of the parent's CPU per job, which is most
        of what a queue of short jobs spends (and see spawn.py: the interpreter lock is
        released while the child starts). Signals the supervisor ignores (SIGPIPE) are
        reset for the job; every other descriptor of ours is close-on-exec
        (``seal_descriptors``), as subprocess's close_fds would make it."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = posix_spawn(_SHELL, [_SHELL, "-c", spec.command], spec.env, {
                "QUEUECTL_JOB_ID": spec.job_id, "QUEUECTL_ATTEMPT": str(spec.attempt),
            }, stdin=_devnull(), stdout=out_w, stderr=err_w, reset_signals=_RESET_SIGNALS)
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        return cls(pid, out_r, err_r)

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def proc_exited(self) -> bool:
        """Without a pidfd: has the leader exited? (It stays unreaped until finish().)"""
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

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

    def next_due(self, deadline: float | None) -> float | None:
        """When something is due without any descriptor turning ready."""
        due = []
        if deadline is not None and not self.terminating:
            due.append(deadline)
        if self.terminating:
            due.append(self._term_at + KILL_GRACE if self._killed_at is None
                       else self._killed_at + PIPE_CLOSE_WAIT)
        if self.exit_fd is None:
            due.append(time.monotonic() + 0.05)
        return min(due) if due else None

    def finish(self) -> int:
        """Kill anything left in the group, reap the leader, close our descriptors.
        Returns the leader's status as subprocess reports it (-N: killed by signal N)."""
        self._signal(signal.SIGKILL)
        _pid, status = os.waitpid(self.pid, 0)
        for fd in (self.stdout, self.stderr, self.exit_fd):
            if fd is not None:
                os.close(fd)
        return os.waitstatus_to_exitcode(status)


_sealed = False


def _seal_once() -> None:
    global _sealed
    if not _sealed:
        seal_descriptors()
        _sealed = True


def seal_descriptors() -> None:
    """Make every descriptor above stderr close-on-exec (ones inherited from whoever
    started us included), so no job inherits a database file or socket of ours."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, already closed
