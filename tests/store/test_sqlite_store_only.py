"""SQLite-only store behaviour: the database file itself (schema version, refusing
files that are not queuectl databases, permissions, WAL, busy timeout)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from queuectl.errors import StoreBusy, StoreError
from queuectl.store import migrations, open_store
from queuectl.store.sqlite import DEFAULT_BUSY_TIMEOUT, SqliteStore

from .support import T0, insert, new_job

LATEST = migrations.load("sqlite")[-1].version


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_database_stores_the_latest_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    open_store(str(db)).close()
    assert LATEST >= 1
    assert user_version(db) == LATEST


def test_a_database_from_a_newer_queuectl_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    open_store(str(db)).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    with pytest.raises(StoreError) as info:
        open_store(str(db))
    assert "newer" in info.value.message and str(LATEST + 1) in info.value.message
    assert user_version(db) == LATEST + 1


def test_a_sqlite_database_that_queuectl_did_not_create_is_refused_and_left_alone(
        tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('ada')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as info:
        open_store(str(db))
    assert "did not create" in info.value.message
    conn = sqlite3.connect(db)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    conn.close()
    assert tables == ["customers"]
    assert user_version(db) == 0


@pytest.mark.parametrize("content", [b"this is not a database\n" * 200, os.urandom(8192),
                                     b"SQLite format 3\0" + b"\xff" * 4080])
def test_a_file_that_is_not_a_database_is_refused_with_a_store_error(
        tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(content)
    with pytest.raises(StoreError) as info:
        open_store(str(db))
    assert not isinstance(info.value, sqlite3.Error)
    assert str(db) in info.value.message
    assert db.read_bytes() == content


def test_a_directory_is_refused_as_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        open_store(str(tmp_path))


def test_a_database_in_an_unwritable_place_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        open_store(str(blocker / "sub" / "q.db"))


def test_the_database_file_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    old_umask = os.umask(0o022)
    try:
        store = open_store(str(db))
        try:
            insert(store, "j")
            assert mode(db) == 0o600
            wal = Path(f"{db}-wal")
            if wal.exists():
                assert mode(wal) == 0o600
        finally:
            store.close()
    finally:
        os.umask(old_umask)


def test_a_missing_data_folder_is_created_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "data" / "q.db"
    open_store(str(db)).close()
    assert mode(db.parent) == 0o700
    assert mode(db) == 0o600


def test_the_database_uses_wal_with_full_synchronous_writes(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    store = SqliteStore(str(db))
    try:
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


def test_the_busy_timeout_defaults_to_ten_seconds_and_the_environment_overrides_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUEUECTL_BUSY_TIMEOUT", raising=False)
    store = SqliteStore(str(tmp_path / "q.db"))
    try:
        assert DEFAULT_BUSY_TIMEOUT == 10.0
        assert store.busy_timeout == 10.0
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    finally:
        store.close()
    monkeypatch.setenv("QUEUECTL_BUSY_TIMEOUT", "2.5")
    store = SqliteStore(str(tmp_path / "q.db"))
    try:
        assert store.busy_timeout == 2.5
    finally:
        store.close()


def test_a_write_lock_held_past_the_busy_timeout_is_a_store_busy_error_and_writes_nothing(
        tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    store = SqliteStore(str(db), busy_timeout=0.2)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy) as info:
            store.insert_jobs([new_job("j")], T0)
        assert "database busy" in info.value.message
        blocker.execute("ROLLBACK")
        assert store.get_job("j") is None
        # Once the lock is gone the same store works again.
        insert(store, "j")
        assert store.get_job("j") is not None
    finally:
        blocker.close()
        store.close()


def test_a_sqlite_url_opens_the_same_file_as_its_path(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    store = open_store(str(db))
    try:
        insert(store, "j")
    finally:
        store.close()
    by_url = open_store(f"sqlite://{db}")
    try:
        assert by_url.get_job("j") is not None
    finally:
        by_url.close()


def test_opening_a_database_twice_does_not_migrate_it_again(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    first = open_store(str(db))
    insert(first, "j")
    second = open_store(str(db))
    try:
        assert [j.id for j in second.list_jobs()] == ["j"]
        assert user_version(db) == LATEST
    finally:
        second.close()
        first.close()


def test_the_wake_up_pipe_beside_the_database_is_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    store = open_store(str(db))
    listener = store.listen()
    try:
        pipe = tmp_path / "q.db-wake"
        assert stat.S_ISFIFO(os.stat(pipe).st_mode)
        assert mode(pipe) == 0o600
    finally:
        listener.close()
        store.close()


def test_a_new_database_being_created_by_another_process_at_the_same_moment_is_opened_not_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two first uses at once (say `worker start` and `enqueue`): the other process
    commits the schema right after this one first reads the schema version (0).
    Reproduced deterministically by running the other opener exactly then; with 8 real
    processes opening a fresh file it used to fail in about 1 round in 30."""
    db = tmp_path / "q.db"
    real_connect = sqlite3.connect
    raced = []

    class RacingConnection(sqlite3.Connection):
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
            if "user_version" in sql and not raced:
                raced.append(True)
                SqliteStore(str(db)).close()  # the other process creates the schema now
            return super().execute(sql, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect",
                        lambda *a, **kw: real_connect(*a, **kw, factory=RacingConnection))
    store = SqliteStore(str(db))
    try:
        assert raced == [True]
        insert(store, "j")
        assert store.get_job("j") is not None
        assert user_version(db) == LATEST
    finally:
        store.close()
