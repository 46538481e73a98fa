"""The one table of configuration keys: type, default, validation and help.

The API, the CLI's ``config`` command and the worker all read this table, so a
key is validated the same way wherever it is set. Values are stored in the
database as canonical strings (``format_value``) and parsed back on read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Union

from .errors import InvalidInput

Number = Union[int, float]
#: A config value: a number, or text for the keys that take a list.
Value = Union[int, float, str]

#: Longest duration accepted anywhere (ten years), so time arithmetic never overflows.
MAX_SECONDS = 10 * 365 * 86400


def _number(value: object, what: str) -> Number:
    """A finite int or float from a number or its text; bools and NaN are rejected."""
    if isinstance(value, bool):
        raise InvalidInput(f"{what}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        number: Number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise InvalidInput(f"{what}: expected a number, got {value!r}") from None
    else:
        raise InvalidInput(f"{what}: expected a number, got {type(value).__name__}")
    if isinstance(number, float) and not math.isfinite(number):
        raise InvalidInput(f"{what}: expected a finite number, got {value!r}")
    return number


def parse_duration(value: object, what: str) -> float:
    """Seconds from a number (``30``, ``0.5``) or a duration string (``30s``, ``5m``, ``2h``, ``1h30m``)."""
    try:
        seconds: float = _number(value, what)
    except InvalidInput:
        if not isinstance(value, str):
            raise
        from pytimeparse.timeparse import (
            timeparse,  # lazy: compiling its patterns costs ~20 ms
        )

        parsed = timeparse(value.strip())
        if parsed is None:
            raise InvalidInput(
                f"{what}: expected seconds or a duration like 30s, 5m, 2h, got {value!r}"
            ) from None
        seconds = parsed
    if seconds > MAX_SECONDS:
        raise InvalidInput(f"{what}: at most {MAX_SECONDS} seconds (ten years), got {value!r}")
    return seconds


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: object, what: str) -> int:
    """Bytes from an integer or a size like ``512K``, ``10MiB``, ``1G`` (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        match = _SIZE.match(value) if isinstance(value, str) else None
        if match is None:
            raise InvalidInput(f"{what}: expected bytes or a size like 512K, 10MiB, got {value!r}")
        number = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if number < 0:
        raise InvalidInput(f"{what}: must be >= 0, got {value!r}")
    return number


def _int_at_least(minimum: int) -> Callable[[object, str], Number]:
    def parse(value: object, what: str) -> Number:
        number = _number(value, what)
        if isinstance(number, float):
            if not number.is_integer():
                raise InvalidInput(f"{what}: expected a whole number, got {value!r}")
            number = int(number)
        if number < minimum:
            raise InvalidInput(f"{what}: must be >= {minimum}, got {value!r}")
        if number > 2**31:
            raise InvalidInput(f"{what}: must be <= {2**31}, got {value!r}")
        return number

    return parse


def _seconds(*, positive: bool) -> Callable[[object, str], Number]:
    def parse(value: object, what: str) -> Number:
        seconds = parse_duration(value, what)
        if seconds < 0 or (positive and seconds == 0):
            raise InvalidInput(f"{what}: must be {'> 0' if positive else '>= 0'} seconds, got {value!r}")
        return seconds

    return parse


_ENV_PATTERN = re.compile(r"[A-Za-z0-9_*?\[\]!]+")


def _env_patterns(value: object, what: str) -> str:
    """Comma-separated names or shell patterns (``*``, ``?``, ``[…]``) of environment
    variables; canonical text: no spaces."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what}: expected names or patterns separated by commas, got {value!r}")
    patterns = [p.strip() for p in value.split(",") if p.strip()]
    if not patterns:
        raise InvalidInput(f"{what}: give at least one name or pattern, e.g. * or PATH,HOME,LANG")
    for pattern in patterns:
        if not _ENV_PATTERN.fullmatch(pattern):
            raise InvalidInput(f"{what}: {pattern!r} is not a variable name or pattern")
    return ",".join(patterns)


def _backoff_base(value: object, what: str) -> Number:
    number = _number(value, what)
    if number < 1:
        raise InvalidInput(f"{what}: must be >= 1, got {value!r}")
    return number


@dataclass(frozen=True)
class ConfigKey:
    name: str
    default: Value
    parse: Callable[[object, str], Value]
    help: str


KEYS: dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey("max-retries", 3, _int_at_least(0),
                  "retries after the first attempt for jobs enqueued without max_retries (int >= 0)"),
        ConfigKey("backoff-base", 2, _backoff_base,
                  "a failed attempt k is retried after backoff-base ** k seconds (number >= 1)"),
        ConfigKey("max-backoff", 3600, _seconds(positive=False),
                  "cap on the retry delay in seconds (>= 0; 0 retries at once)"),
        ConfigKey("poll-interval", 1, _seconds(positive=True),
                  "how often idle workers look for due jobs when no wake-up arrives (seconds > 0)"),
        ConfigKey("job-timeout", 0, _seconds(positive=False),
                  "timeout for jobs enqueued without one (seconds >= 0; 0 = none)"),
        ConfigKey("lease-timeout", 30, _seconds(positive=True),
                  "a processing job whose worker has not heartbeated this long is recovered (seconds > 0)"),
        ConfigKey("max-log-bytes", 10 * 1024**2, parse_size,
                  "bytes of each output stream kept per attempt; the rest is dropped (size >= 0)"),
        ConfigKey("env-allow", "*", _env_patterns,
                  "environment variables jobs inherit from the worker: names or patterns, "
                  "comma-separated (default * = all; the database password never passes)"),
    )
}


def normalize_key(key: str) -> str:
    """Accept ``max_retries`` as well as ``max-retries``; reject unknown keys."""
    name = key.strip().lower().replace("_", "-")
    if name not in KEYS:
        raise InvalidInput(f"unknown config key {key!r}; valid keys: {', '.join(KEYS)}")
    return name


def parse_value(key: str, value: object) -> Value:
    """Validate ``value`` for ``key`` (already normalized); raises InvalidInput naming what is valid."""
    spec = KEYS[key]
    try:
        return spec.parse(value, key)
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message} ({spec.help})") from None


def format_value(value: Value) -> str:
    """Canonical text: whole numbers without a decimal point."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Config:
    """A snapshot of every key's current value."""

    max_retries: int
    backoff_base: float
    max_backoff: float
    poll_interval: float
    job_timeout: float
    lease_timeout: float
    max_log_bytes: int
    env_allow: str

    @classmethod
    def from_stored(cls, stored: Mapping[str, str]) -> "Config":
        """Build from the stored strings; a missing key takes its default."""
        values: dict[str, Value] = {}
        for name, spec in KEYS.items():
            text = stored.get(name)
            values[name.replace("-", "_")] = spec.default if text is None else spec.parse(text, name)
        return cls(**values)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Value]:
        return {name: getattr(self, name.replace("-", "_")) for name in KEYS}
