"""``worker start``: one process, N worker slots.

The supervisor's main thread does everything but fencing: it claims due jobs
for free slots, runs every attempt (an ``Execution``, driven by this loop, not a
thread of its own), writes their outcomes, heartbeats, recovers lost jobs and
watches for stop requests. A watchdog thread only kills jobs whose lease could not
be renewed in time.

The main thread sleeps in one ``poll`` on: the store's wake-up channel (a job was
enqueued), every running attempt's output pipes and exit descriptor, and the signal
wake-up fd. Its timeout is the next of: the poll interval (fallback for a lost
wake-up), the next heartbeat, the next retry falling due, the next attempt's timeout
or kill escalation. Nothing sleeps per job.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import select
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from ..config import Config
from ..crashpoints import crash_point
from ..errors import StoreCorrupt, StoreError
from ..lifecycle import Outcome, decide, format_seconds
from ..liveness import hostname, start_time
from ..model import UNFINISHED_STATES, JobState, SupervisorInfo
from ..paths import private_dir
from ..store import Claim, Store
from ..store.base import Listener, Result
from ..timeutil import iso
from ..timeutil import now as utcnow
from .jobenv import job_environment
from .maintenance import recover_lost_jobs
from .runner import Execution, RunSpec, base_environment, drain_wakeups
from .spawn import Environment

log = logging.getLogger("queuectl.worker")

#: After a store error, wait this long before trying again (the worker stays up).
STORE_RETRY_DELAY = 0.5
#: Self-fencing: a job whose lease we could not renew for this fraction of lease-timeout
#: is killed, so it is dead before its lease can expire and another worker rerun it.
FENCE_FRACTION = 0.8
#: Seconds between reads of the stored config: running workers see a change this soon
#: (at once after a control wake-up) without a query on every turn of a busy loop.
CONFIG_REFRESH = 0.1
#: Threads that spawn jobs (see Supervisor.__init__); two keep both cores of a small
#: machine spawning, more only contend for the interpreter lock.
SPAWNER_THREADS = 2


@dataclass(frozen=True)
class Summary:
    supervisor_id: str
    workers: int
    jobs_run: int
    forced: bool


class Supervisor:
    def __init__(self, store: Store, log_dir: Path, count: int = 1, *,
                 stop_when_empty: bool = False, poll_interval: float | None = None) -> None:
        self.store = store
        self.log_dir = log_dir
        private_dir(log_dir)
        self.count = count
        self.stop_when_empty = stop_when_empty
        self.poll_override = poll_interval
        self.host = hostname()
        self.pid = os.getpid()
        self.id = f"{self.host}-{self.pid}-{secrets.token_hex(2)}"
        self.worker_ids = [f"{self.id}-w{n}" for n in range(1, count + 1)]
        self.free: list[str] = list(self.worker_ids)
        self.running: dict[str, tuple[Claim, Execution]] = {}  # by lease token
        self.finished: deque[Execution] = deque()
        self.pending_results: list[tuple[Claim, Execution]] = []
        self.stopping = False
        self.forced = False
        self.jobs_run = 0
        self._signals = 0
        self._check_control = False
        self._woken = False  # this turn consumed a FIFO wake-up
        self._clock_offset = timedelta(0)
        self._renewed: dict[str, float] = {}  # lease token -> monotonic time it was last extended
        self._watchdog_stop = threading.Event()
        self._env_for: tuple[str, Environment] | None = None  # (env-allow, environment)
        # Spawning blocks its caller until the child has exec'd (about half a millisecond):
        # spawner threads take that off the main loop, which meanwhile commits and reaps.
        # They only spawn, then poke `_launched_w` so the loop watches the new job.
        self._to_launch: queue.SimpleQueue[Execution | None] = queue.SimpleQueue()
        self._launched_r, self._launched_w = os.pipe()
        os.set_blocking(self._launched_r, False)
        self._spawners = [threading.Thread(target=self._spawner, name=f"spawner-{n}", daemon=True)
                          for n in range(min(count, SPAWNER_THREADS))]

    # --- public -----------------------------------------------------------------

    def run(self) -> Summary:
        """Run until stopped (signal, ``worker stop``) or, with stop_when_empty, until no
        job is pending, failed or processing."""
        self._last_config = self._config()
        self._config_due = time.monotonic() + CONFIG_REFRESH
        self._next_heartbeat = 0.0
        self._sync_clock()
        started = self._now()
        info = SupervisorInfo(id=self.id, host=self.host, pid=self.pid,
                              pid_start=start_time(self.pid), started_at=started,
                              heartbeat_at=started, slots=self.count, stop_requested=False)
        self.store.register_supervisor(info, self.worker_ids)
        self._info = info
        log.info("supervisor %s started with %d worker(s) on %s", self.id, self.count,
                 self.store.url)
        listener = self.store.listen()
        signal_r, signal_w = os.pipe()
        os.set_blocking(signal_r, False)
        os.set_blocking(signal_w, False)
        # Signals can only be handled in the main thread; elsewhere (the Python API
        # called from a thread) the supervisor stops through `worker stop` only.
        handles_signals = threading.current_thread() is threading.main_thread()
        old_handlers = {}
        if handles_signals:
            old_wakeup = signal.set_wakeup_fd(signal_w, warn_on_full_buffer=False)
            old_handlers = {sig: signal.signal(sig, self._on_signal)
                            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
        watchdog = threading.Thread(target=self._fence_watchdog, name="fence", daemon=True)
        watchdog.start()
        for spawner in self._spawners:
            spawner.start()
        try:
            while True:
                try:
                    if not self._step(listener, signal_r):
                        break
                except StoreCorrupt:
                    raise  # retrying a damaged database cannot help: stop, say why
                except StoreError as exc:
                    # The database is busy or unreachable: jobs keep running, results wait
                    # in memory, and the loop tries again shortly.
                    log.error("%s (retrying)", exc)
                    self._wait(listener, signal_r, STORE_RETRY_DELAY)
        finally:
            self._watchdog_stop.set()
            self._interrupt_all()
            for _spawner in self._spawners:
                self._to_launch.put(None)
            for spawner in self._spawners:
                spawner.join()
            os.close(self._launched_r)
            os.close(self._launched_w)
            try:
                self._settle(self._last_config, final=True)
            except StoreError as exc:
                log.error("could not record results: %s", exc)
            listener.close()
            if handles_signals:
                signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            os.close(signal_r)
            os.close(signal_w)
            try:
                self.store.forget_supervisors([self.id])
            except StoreError as exc:
                log.error("could not deregister: %s", exc)
        return Summary(self.id, self.count, self.jobs_run, self.forced)

    def _step(self, listener: Listener, signal_r: int) -> bool:
        """One turn of the loop: results, heartbeat, claims, then sleep. False: exit."""
        if time.monotonic() >= self._config_due or self._check_control:
            self._last_config = self._config(self._last_config)
            self._config_due = time.monotonic() + CONFIG_REFRESH
        config = self._last_config
        self._collect_finished()
        if self.forced:
            for _claim, execution in self.running.values():
                execution.stop("interrupted")
        if time.monotonic() >= self._next_heartbeat or self._check_control:
            self._check_control = False
            self._maintain(config)
            self._next_heartbeat = time.monotonic() + config.lease_timeout / 3
        claimed = self._settle(config)
        if self._woken and claimed and not self.free:
            # We took a wake-up (one reader gets each) and filled every slot: more may be
            # due, so pass it on to an idle supervisor.
            self.store.wake()
        self._woken = False
        if self.stopping and not self.running and (not self.pending_results or self.forced):
            # A forced stop gives up results it could not write: their leases expire and
            # recovery reruns those jobs, so nothing is lost.
            return False
        if (self.stop_when_empty and not claimed and not self.running
                and not self.pending_results and self._queue_empty()):
            log.info("no jobs left: stopping")
            return False
        self._wait(listener, signal_r, self._sleep_time(config, self._next_heartbeat))
        return True

    def _wait(self, listener: Listener, signal_r: int, timeout: float) -> None:
        """Sleep until a wake-up, output or exit of a running job, a signal, or
        ``timeout`` seconds.

        A fresh poll set each time: the listener's descriptor changes when its
        connection is re-established."""
        poller = select.poll()
        poller.register(signal_r, select.POLLIN)
        # A FIFO wake-up goes to one reader only: a busy supervisor leaves it to idle ones.
        wanted = listener.broadcast or (self.free and not self.stopping)
        listen_fd = listener.fileno() if wanted else None
        if listen_fd is not None:
            poller.register(listen_fd, select.POLLIN)
        for fd in self._poll_jobs(poller, timeout):
            if fd == listen_fd:
                kinds = listener.drain()
                if "control" in kinds:
                    self._check_control = True
                self._woken = not listener.broadcast
            else:
                drain_wakeups(fd)

    def _poll_jobs(self, poller: "select.poll", timeout: float) -> list[int]:
        """Poll the running attempts' descriptors along with ``poller``'s own, for at
        most ``timeout`` seconds (less when an attempt's timeout or kill escalation is
        due sooner), and drive the attempts. Returns the other descriptors that fired."""
        by_fd: dict[int, Execution] = {}
        poller.register(self._launched_r, select.POLLIN)  # new jobs' descriptors to watch
        for _claim, execution in self.running.values():
            for fd in execution.fds():
                by_fd[fd] = execution
                poller.register(fd, select.POLLIN)
            due = execution.next_due()
            if due is not None:
                timeout = min(timeout, max(0.0, due - time.monotonic()))
        others = []
        for fd, _event in poller.poll(timeout * 1000):
            if fd in by_fd:
                by_fd[fd].on_ready(fd)
            elif fd == self._launched_r:
                drain_wakeups(fd)
            else:
                others.append(fd)
        for _claim, execution in list(self.running.values()):
            execution.tick()  # timeouts and kill escalation that no descriptor announces
        self._collect_finished()
        return others

    # --- signals ----------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:  # `worker stop` asks us to look at our stop flag now
            self._check_control = True
            return
        self._signals += 1
        if self._signals == 1:
            self._begin_stop(f"{signal.Signals(signum).name}")
        else:
            self.forced = True
            log.warning("second signal: stopping %d running job(s) now; they go back to pending",
                        len(self.running))

    def _begin_stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.running:
            log.info("%s: finishing %d running job(s), then exiting (signal again to stop them now)",
                     why, len(self.running))
        else:
            log.info("%s: exiting", why)

    # --- the loop's steps -----------------------------------------------------------

    def _config(self, previous: Config | None = None) -> Config:
        try:
            config = Config.from_stored(self.store.get_config())
        except StoreCorrupt:
            raise
        except StoreError as exc:
            if previous is None:
                raise
            log.error("%s", exc)
            return previous
        except ValueError:
            return previous or Config.from_stored({})
        return config

    def _job_env(self, allow: str) -> Environment:
        """The jobs' environment, rebuilt only when ``env-allow`` changes."""
        if self._env_for is None or self._env_for[0] != allow:
            self._env_for = (allow, base_environment(
                job_environment(os.environ, self.store.url, allow)))
        return self._env_for[1]

    def _now(self) -> datetime:
        """The database's clock, as measured at the last heartbeat: leases and retries are
        timed on it, so workers on hosts whose clocks disagree still agree on expiry."""
        return utcnow() + self._clock_offset

    def _sync_clock(self) -> None:
        before = utcnow()
        database = self.store.clock()
        after = utcnow()
        self._clock_offset = database - (before + (after - before) / 2)

    def _fence_watchdog(self) -> None:
        """Kill jobs whose lease we failed to renew in time, whatever the main thread is
        blocked on (a database call that hangs, say). Runs in its own thread."""
        while not self._watchdog_stop.wait(min(0.2, self._last_config.lease_timeout / 10)):
            limit = self._last_config.lease_timeout * FENCE_FRACTION
            now = time.monotonic()
            for token, renewed in list(self._renewed.items()):
                entry = self.running.get(token)
                if entry is not None and now - renewed > limit:
                    claim, execution = entry
                    log.error("%s: could not renew the lease on job %s for %.1fs: killing it "
                              "before another worker may take it over", claim.worker_id,
                              claim.job.id, now - renewed)
                    execution.stop("lost", at_once=True)
                    self._renewed.pop(token, None)

    def _on_done(self, execution: Execution) -> None:
        """Called from the loop, or from a spawner thread when a job could not start."""
        self.finished.append(execution)

    def _interrupt_all(self) -> None:
        """On the way out: stop every running attempt and drive them to their end (a
        SIGTERM, then SIGKILL after the grace period)."""
        for _claim, execution in self.running.values():
            execution.stop("interrupted")
        while self.running:
            self._poll_jobs(select.poll(), 1.0)

    def _collect_finished(self) -> None:
        while self.finished:
            execution = self.finished.popleft()
            for token, (claim, running) in list(self.running.items()):
                if running is execution:
                    del self.running[token]
                    self._renewed.pop(token, None)
                    self.pending_results.append((claim, execution))
                    self.free.append(claim.worker_id)

    def _settle(self, config: Config, final: bool = False) -> int:
        """Write the results of finished attempts and claim jobs for free slots in one
        transaction (group commit), then start the claimed jobs. Returns how many.

        Results are never held back to gather more: whatever finished while the last
        commit was in flight goes into this one. On a store error the results stay
        pending and the loop tries again shortly; nothing was claimed."""
        want = [] if final or self.stopping else list(self.free)
        if not self.pending_results and not want:
            return 0
        # `config` was read at the start of this turn of the loop: backoff is as of now.
        asked = time.monotonic()
        now = self._now()
        results = []
        for claim, execution in self.pending_results:
            report = execution.report
            assert report is not None
            job = claim.job
            outcome = decide(job.attempts, job.max_retries, report.result, config, now)
            results.append(Result(job.id, claim.token, claim.attempt, outcome,
                                  report.stdout_path, report.stderr_path, report.stdout_tail,
                                  report.stderr_tail))
        if results:
            crash_point("before-result")
        # A failure propagates to the loop, which waits before trying again: returning
        # "nothing claimed" here would spin, since the due jobs are still due.
        settled = self.store.settle(results, want, now, config.lease_timeout)
        for (claim, execution), result, applied in zip(self.pending_results, results,
                                                       settled.applied):
            self._log_result(claim, execution, result.outcome, applied)
        self.pending_results = []
        if settled.claims:
            crash_point("after-claim")
        for claim in settled.claims:
            self._start(claim, config, asked)
        return len(settled.claims)

    def _start(self, claim: Claim, config: Config, asked: float) -> None:
        self.free.remove(claim.worker_id)
        job = claim.job
        timeout = job.timeout if job.timeout is not None else (config.job_timeout or None)
        spec = RunSpec(job_id=job.id, command=job.command, attempt=claim.attempt,
                       timeout=timeout, max_log_bytes=config.max_log_bytes,
                       log_dir=self.log_dir, env=self._job_env(config.env_allow))
        execution = Execution(spec, self._on_done)
        self.running[claim.token] = (claim, execution)
        self._renewed[claim.token] = asked
        log.info("%s: started job %s (attempt %d): %s", claim.worker_id, job.id, claim.attempt,
                 _short(job.command))
        self._to_launch.put(execution)

    def _spawner(self) -> None:
        """A spawner thread: launch executions until told to stop (None)."""
        while (execution := self._to_launch.get()) is not None:
            execution.launch()
            try:
                os.write(self._launched_w, b"x")
            except BlockingIOError:
                pass  # the pipe is full: the loop is already due to wake

    def _log_result(self, claim: Claim, execution: Execution, outcome: Outcome,
                    applied: bool) -> None:
        report = execution.report
        assert report is not None
        job = claim.job
        if outcome.counts:
            self.jobs_run += 1
        took = format_seconds(round(report.finished - report.started, 3))
        if not applied:
            log.warning("%s: job %s attempt %d finished but its lease was lost: result "
                        "discarded", claim.worker_id, job.id, claim.attempt)
        elif outcome.state is JobState.COMPLETED:
            log.info("%s: job %s completed in %s", claim.worker_id, job.id, took)
        elif outcome.state is JobState.FAILED:
            log.info("%s: job %s failed (%s) after %s; retry %d of %d at %s", claim.worker_id,
                     job.id, outcome.error, took, job.attempts, job.max_retries,
                     iso(outcome.run_at))
        elif outcome.state is JobState.DEAD:
            log.info("%s: job %s failed (%s); no retries left: moved to the DLQ",
                     claim.worker_id, job.id, outcome.error)
        else:
            log.info("%s: job %s stopped and returned to pending", claim.worker_id, job.id)

    def _maintain(self, config: Config) -> None:
        asked = time.monotonic()
        try:
            self._sync_clock()
            now = self._now()
            beat = self.store.heartbeat(self.id, list(self.running), now, config.lease_timeout)
            for token in self.running:
                if token not in beat.lost_tokens and token in self._renewed:
                    self._renewed[token] = asked
            if not beat.registered:
                log.warning("our registration was removed (presumed dead): registering again")
                self.store.register_supervisor(self._info, self.worker_ids)
            for token in beat.lost_tokens:
                claim, execution = self.running[token]
                log.error("%s: lease on job %s lost: stopping it", claim.worker_id, claim.job.id)
                execution.stop("lost")
            if beat.stop_requested:
                self._begin_stop("worker stop")
            recover_lost_jobs(self.store, config, now, self.host, self.id, self.log_dir)
        except StoreCorrupt:
            raise
        except StoreError as exc:
            log.error("heartbeat failed: %s", exc)

    def _queue_empty(self) -> bool:
        try:
            counts = self.store.count_by_state()
        except StoreCorrupt:
            raise
        except StoreError as exc:
            log.error("%s", exc)
            return False
        return sum(counts[state] for state in UNFINISHED_STATES) == 0

    def _sleep_time(self, config: Config, next_heartbeat: float) -> float:
        wait = max(0.0, next_heartbeat - time.monotonic())
        if self.free and not self.stopping:
            wait = min(wait, self.poll_override or config.poll_interval)
            try:
                due = self.store.next_due_at()
            except StoreError:
                due = None
            if due is not None:
                wait = min(wait, (due - self._now()).total_seconds())
        return max(0.001, wait)


def _short(command: str, width: int = 60) -> str:
    line = " ".join(command.split())
    return line if len(line) <= width else line[: width - 1] + "…"
