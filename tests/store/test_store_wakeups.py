"""Store conformance: wake-ups reach a listening supervisor when work arrives.

Waiting is done with ``select`` on the listener's descriptor (bounded), never a sleep."""

from __future__ import annotations

import select
from typing import Any

import pytest

from queuectl.store import Store, open_store

from .support import T0, insert, make_dead

WAIT = 5.0


def readable(listener: Any, timeout: float) -> bool:
    fd = listener.fileno()
    assert fd is not None
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


@pytest.fixture
def other(store_url: str) -> Any:
    """A second store on the same database: the 'other process' that enqueues."""
    opened = open_store(store_url)
    yield opened
    opened.close()


def test_a_listener_wakes_when_another_store_enqueues(store: Store, other: Store) -> None:
    listener = store.listen()
    try:
        assert not readable(listener, 0)
        insert(other, "j")
        assert readable(listener, WAIT)
        assert "jobs" in listener.drain()
    finally:
        listener.close()


def test_a_drained_listener_stays_quiet_until_the_next_wake_up(store: Store, other: Store) -> None:
    listener = store.listen()
    try:
        insert(other, "a")
        insert(other, "b")
        assert readable(listener, WAIT)
        # Wake-ups may arrive one by one (NOTIFY is asynchronous): drain what has come,
        # a few times at most; a drain that consumed nothing would stay readable throughout.
        for _ in range(3):
            listener.drain()
            if not readable(listener, 0.05):
                break
        assert not readable(listener, 0.05)  # an idle supervisor must not spin
        other.wake()
        assert readable(listener, WAIT)
        assert "jobs" in listener.drain()
    finally:
        listener.close()


def test_a_listener_wakes_when_dead_jobs_are_retried(store: Store, other: Store) -> None:
    make_dead(other, "d")
    listener = store.listen()
    try:
        listener.drain()
        other.retry_dead(["d"], T0)
        assert readable(listener, WAIT)
        assert "jobs" in listener.drain()
    finally:
        listener.close()


def test_waking_with_nobody_listening_neither_blocks_nor_fails(store: Store) -> None:
    store.wake()
    insert(store, "j")
    store.wake()
    assert store.get_job("j") is not None
