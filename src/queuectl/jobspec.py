"""Validation of jobs as users write them: JSON objects, flags or API arguments.

One set of rules for every way in, so the CLI and the Python API accept and
reject exactly the same jobs with the same messages.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from datetime import datetime
from typing import Any, Iterator, Mapping

from .config import MAX_SECONDS
from .errors import InvalidInput
from .model import NewJob
from .timeutil import parse_iso

ALLOWED_KEYS = ("id", "command", "max_retries", "priority", "run_at", "timeout")
ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
#: Linux refuses a single exec argument longer than this (MAX_ARG_STRLEN - 1).
MAX_COMMAND_BYTES = 131071
INT64 = 2**63


class InvalidEntry(InvalidInput):
    """One entry of a batch is invalid; ``index`` is its 0-based position."""

    def __init__(self, index: int, detail: str) -> None:
        super().__init__(f"job {index}: {detail}")
        self.index = index
        self.detail = detail


# --- ids -------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value as two digits
_id_lock = threading.Lock()
_last_id = [0, 0]  # (ms, random) of the last id, to keep ids monotonic within a process


def new_id() -> str:
    """A ULID: 48-bit millisecond time + 80 random bits in Crockford base32 (26 characters).

    Sortable by creation time; within one millisecond the random part is
    incremented, so ids from one process are strictly increasing.
    """
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_id[0]:
            ms, rand = _last_id[0], _last_id[1] + 1
            if rand >> 80:  # the random part is used up within this millisecond: borrow the next
                ms, rand = ms + 1, 0
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_id[0], _last_id[1] = ms, rand
    value = (ms << 80) | (rand & ((1 << 80) - 1))
    # 26 base32 digits are 130 bits: thirteen 10-bit pairs of digits, from a table
    # (bulk enqueue makes 100,000 ids; digit by digit was a third of its time).
    p = _PAIRS
    return (p[value >> 120] + p[(value >> 110) & 1023] + p[(value >> 100) & 1023]
            + p[(value >> 90) & 1023] + p[(value >> 80) & 1023] + p[(value >> 70) & 1023]
            + p[(value >> 60) & 1023] + p[(value >> 50) & 1023] + p[(value >> 40) & 1023]
            + p[(value >> 30) & 1023] + p[(value >> 20) & 1023] + p[(value >> 10) & 1023]
            + p[value & 1023])


def check_id(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"id: expected a string, got {_type(value)}")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"id: {value[:40]!r} is invalid: use 1-128 characters of A-Z a-z 0-9 . _ -, not starting with '.'"
        )
    return value


# --- fields ----------------------------------------------------------------

def _type(value: object) -> str:
    return "null" if value is None else {bool: "boolean", str: "string", int: "integer",
                                         float: "number", list: "array", dict: "object"}.get(
        type(value), type(value).__name__)


def check_command(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"command: expected a string, got {_type(value)}")
    if not value.strip():
        raise InvalidInput("command: must not be empty")
    if "\0" in value:
        raise InvalidInput("command: must not contain a NUL byte")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("command: is not valid Unicode text") from None
    if size > MAX_COMMAND_BYTES:
        raise InvalidInput(f"command: {size} bytes is longer than the {MAX_COMMAND_BYTES} a shell can be given")
    return value


def check_int(key: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{key}: expected an integer, got {_type(value)}")
    if value < minimum:
        raise InvalidInput(f"{key}: must be >= {minimum}, got {value}")
    if value >= INT64:
        raise InvalidInput(f"{key}: must be < 2**63, got {value}")
    return value


def check_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"timeout: expected a number of seconds, got {_type(value)}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"timeout: must be a number of seconds > 0, got {value}")
    if value > MAX_SECONDS:
        raise InvalidInput(f"timeout: at most {MAX_SECONDS} seconds (ten years), got {value}")
    return float(value)


def check_run_at(value: object, now: datetime) -> datetime:
    if value is None:
        return now
    if isinstance(value, datetime):
        return parse_iso(value.isoformat())
    if not isinstance(value, str):
        raise InvalidInput(f"run_at: expected an ISO-8601 time string, got {_type(value)}")
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise InvalidInput(f"run_at: {exc}") from None


def build(fields: Mapping[str, Any], *, default_max_retries: int, now: datetime) -> NewJob:
    """Validate one job's fields (keys as in ``ALLOWED_KEYS``; None means unset)."""
    unknown = [key for key in fields if key not in ALLOWED_KEYS]
    if unknown:
        raise InvalidInput(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(ALLOWED_KEYS)}")
    if "command" not in fields:
        raise InvalidInput("command: required")
    job_id = fields.get("id")
    max_retries = fields.get("max_retries")
    priority = fields.get("priority")
    return NewJob(
        id=new_id() if job_id is None else check_id(job_id),
        command=check_command(fields["command"]),
        max_retries=default_max_retries if max_retries is None else check_int(
            "max_retries", max_retries, minimum=0),
        priority=0 if priority is None else check_int("priority", priority, minimum=-INT64),
        run_at=check_run_at(fields.get("run_at"), now),
        timeout=check_timeout(fields.get("timeout")),
    )


# --- JSON ------------------------------------------------------------------

def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


#: One decoder for every document: ``json.loads`` with hooks builds a new one per call.
_STRICT = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)


def loads(text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys. Raises InvalidInput naming the position."""
    try:
        return _STRICT.decode(text)
    except json.JSONDecodeError as exc:
        message = exc.msg.removesuffix(" at")  # "Unterminated string starting at" already says it
        raise InvalidInput(f"invalid JSON: {message} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidInput("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # our hooks, or an integer with too many digits
        raise InvalidInput(f"invalid JSON: {exc}") from None


def loads_object(text: str) -> dict[str, Any]:
    value = loads(text)
    if not isinstance(value, dict):
        raise InvalidInput(f"expected a JSON object, got {_type(value)}")
    return value


def parse_batch(text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Entries of a job file: one JSON array, or JSON Lines (blank lines skipped).

    Yields ``(where, object)`` with ``where`` like ``line 3`` or ``index 2``; an
    invalid entry raises InvalidInput prefixed with its ``where``.
    """
    text = text.removeprefix("\ufeff")
    if text.lstrip().startswith("["):
        items = loads(text)
        if not isinstance(items, list):  # pragma: no cover - '[' always parses to a list
            raise InvalidInput("expected a JSON array of job objects")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidInput(f"index {index}: expected a JSON object, got {_type(item)}")
            yield f"index {index}", item
        return
    # Only "\n" ends a line: JSON strings may hold U+2028 and friends, which splitlines() splits on.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", loads_object(line)
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc.message}") from None
