"""The database's clock, which leases are measured on."""

from __future__ import annotations

from datetime import timedelta

from queuectl.store import Store
from queuectl.timeutil import now


def test_the_database_clock_is_utc_and_close_to_this_hosts(store: Store) -> None:
    before = now()
    clock = store.clock()
    after = now()
    assert clock.utcoffset() == timedelta(0)
    # Same machine here: the two clocks agree to within the call (and a little rounding).
    assert before - timedelta(milliseconds=5) <= clock <= after + timedelta(milliseconds=5)
