"""PostgreSQL going away under a running job: a network partition (every packet stops,
connections hang) and an outage like a server restart (connections reset, new ones
refused). Either way the worker kills its job before the lease can expire elsewhere
(self-fencing), stays up, and once the database is back the job is run again and
completes. The database sits behind a TCP proxy that the test controls; the real
server is shared with the tests running beside this one, so it is never stopped."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from queuectl.liveness import start_time
from tests.conftest import (
    PG_URL,
    Cli,
    _drop_schema,
    _pg_schema_url,
    requires_pg,
    wait_until,
)

pytestmark = requires_pg

LEASE = 4.0  # the worker kills an unrenewed job at 0.8 x this, checked every 0.2 s


class Proxy:
    """A TCP relay to the PostgreSQL server. ``partition()`` stops every byte in both
    directions while keeping the connections open; ``outage()`` resets every
    connection and refuses new ones; ``heal()`` ends either."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.refusing = False
        self.closed = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def partition(self) -> None:
        self.flowing.clear()

    def outage(self) -> None:
        self.refusing = True
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _reset(sock)

    def heal(self) -> None:
        self.refusing = False
        self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.heal()
        self.listener.close()
        self.outage()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a dying server's connections end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Cli, Cli, Proxy, str]]:
    """(direct, through_proxy, proxy, schema): two views of one queue, the test's own
    commands going straight to the server, the worker's through the proxy."""
    url, schema = _pg_schema_url()
    parts = urlsplit(url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    user, at, _ = parts.netloc.rpartition("@")
    proxied_url = urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{proxy.port}"))
    for name in ("direct", "proxied"):
        (tmp_path / name).mkdir(mode=0o700)
    direct, through = Cli(url, tmp_path / "direct"), Cli(proxied_url, tmp_path / "proxied")
    yield direct, through, proxy, schema
    proxy.close()
    through.cleanup()
    direct.cleanup()
    _drop_schema(schema)


def job_that_hangs_on_its_first_attempt(cli: Cli, pid_file: Path) -> None:
    cli.config(**{"lease-timeout": LEASE, "max-backoff": 0})
    cli.enqueue(id="cut-off", max_retries=3, command=(
        f'if [ "$QUEUECTL_ATTEMPT" = 1 ]; then echo $$ > {pid_file}; exec sleep 60; fi'))


def lease_expiry(schema: str, job_id: str) -> float:
    """When the job's lease expires, by the database (epoch seconds)."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(f'SELECT lease_expires_at FROM "{schema}".jobs WHERE id = %s',
                           (job_id,)).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0]) / 1000


def killed_at(pid: int, limit: float) -> float:
    """When the process was seen gone (epoch seconds)."""
    wait_until(lambda: start_time(pid) is None, limit, interval=0.01,
               message="the job to be killed")
    return time.time()


@pytest.mark.parametrize("trouble", ["partition", "outage"])
def test_a_worker_cut_off_from_postgresql_kills_its_job_before_the_lease_expires_and_recovers(
        proxied: tuple[Cli, Cli, Proxy, str], tmp_path: Path, trouble: str) -> None:
    direct, through, proxy, schema = proxied
    pid_file = tmp_path / "pid"
    job_that_hangs_on_its_first_attempt(direct, pid_file)
    worker = through.start_worker()
    direct.wait_for_state("cut-off", "processing")
    wait_until(pid_file.exists, 10, message="the first attempt to start")
    pid = int(pid_file.read_text())
    getattr(proxy, trouble)()
    try:
        time.sleep(0.2)  # a renewal already on its way has landed; no other can
        expires = lease_expiry(schema, "cut-off")
        # Once the lease has expired another worker may take the job over: by then the
        # cut-off worker must have killed it. (Database and test share one clock here.)
        margin = expires - killed_at(pid, 10)
        assert margin > 0, f"the job was still running {-margin:.2f} s after its lease expired"
        time.sleep(LEASE)  # the outage outlasts the lease
    finally:
        proxy.heal()
    job = direct.wait_for_state("cut-off", "completed", timeout=60)
    assert worker.poll() is None, through.output(worker)
    first, *_, last = job["history"]
    assert (first["attempt"], first["exit_code"], first["error"]) == (1, None, "worker lost")
    assert last["attempt"] >= 2 and last["exit_code"] == 0
    assert "could not renew the lease" in through.output(worker)[1]
