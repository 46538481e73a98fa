"""Time conversions shared by every layer.

Times are stored as integer milliseconds since the Unix epoch (UTC), carried in
records as timezone-aware ``datetime`` objects, and shown as ISO-8601 UTC
strings with a ``Z`` and millisecond precision.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now() -> datetime:
    """The current time, UTC, truncated to milliseconds like everything stored."""
    return from_ms(time.time_ns() // 1_000_000)


def to_ms(value: datetime) -> int:
    # Exact integer arithmetic: float timestamps lose milliseconds far from 1970.
    return (value - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def iso(value: datetime | None) -> str | None:
    """``2026-11-28T12:00:00.123Z``, or None for an unset time."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    # Not strftime: its %Y does not pad years before 1000 to four digits.
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
            f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 time; one without an offset is local time.

    Raises ValueError with a readable message.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO-8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.astimezone()  # naive means local time
    try:
        utc = value.astimezone(UTC)
        utc.timestamp()
    except (OverflowError, ValueError):
        raise ValueError(f"time out of range: {text!r}") from None
    return utc
