"""The config keys: defaults, spellings, validation messages and the stored text form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuectl.config import (
    KEYS,
    MAX_SECONDS,
    Config,
    format_value,
    normalize_key,
    parse_duration,
    parse_size,
    parse_value,
)
from queuectl.errors import InvalidInput

DEFAULTS = {
    "max-retries": 3,
    "backoff-base": 2,
    "max-backoff": 3600,
    "poll-interval": 1,
    "job-timeout": 0,
    "lease-timeout": 30,
    "max-log-bytes": 10 * 1024 * 1024,
    "env-allow": "*",
}


def rejected(key: str, value: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_value(key, value)
    assert info.value.exit_code == 2
    return info.value


def test_the_config_has_exactly_the_documented_keys() -> None:
    assert list(KEYS) == list(DEFAULTS)


@pytest.mark.parametrize(("key", "default"), DEFAULTS.items())
def test_each_key_has_its_documented_default(key: str, default: int) -> None:
    assert KEYS[key].default == default
    assert Config.from_stored({}).as_dict()[key] == default


@pytest.mark.parametrize("key", DEFAULTS)
def test_each_key_accepts_the_dash_and_the_underscore_spelling(key: str) -> None:
    assert normalize_key(key) == key
    assert normalize_key(key.replace("-", "_")) == key


def test_an_unknown_key_is_invalid_input_listing_every_valid_key() -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_key("max-retry")
    assert info.value.exit_code == 2
    assert "'max-retry'" in info.value.message
    for key in DEFAULTS:
        assert key in info.value.message


VALID = [
    ("max-retries", "0", 0), ("max-retries", "5", 5), ("max-retries", 7, 7), ("max-retries", " 4 ", 4),
    ("max-retries", "3.0", 3),
    ("backoff-base", "1", 1), ("backoff-base", "2", 2), ("backoff-base", "1.5", 1.5),
    ("backoff-base", 10, 10),
    ("max-backoff", "0", 0), ("max-backoff", "60", 60), ("max-backoff", "5m", 300),
    ("max-backoff", "2h", 7200), ("max-backoff", "0.25", 0.25),
    ("poll-interval", "0.05", 0.05), ("poll-interval", "30s", 30), ("poll-interval", 2, 2),
    ("job-timeout", "0", 0), ("job-timeout", "90", 90), ("job-timeout", "1h30m", 5400),
    ("lease-timeout", "30s", 30), ("lease-timeout", "0.5", 0.5), ("lease-timeout", "5m", 300),
    ("max-log-bytes", "0", 0), ("max-log-bytes", "1024", 1024), ("max-log-bytes", "1MiB", 1024**2),
    ("max-log-bytes", "10MiB", 10 * 1024**2), ("max-log-bytes", "512K", 512 * 1024),
    ("max-log-bytes", "1G", 1024**3), ("max-log-bytes", "2 kb", 2048), ("max-log-bytes", 4096, 4096),
]


@pytest.mark.parametrize(("key", "text", "expected"), VALID)
def test_valid_values_are_parsed_to_numbers(key: str, text: object, expected: float) -> None:
    assert parse_value(key, text) == expected


INVALID = [
    # (key, value, text the message must contain)
    ("max-retries", "-1", "must be >= 0"),
    ("max-retries", "1.5", "whole number"),
    ("max-retries", "many", "expected a number"),
    ("max-retries", True, "expected a number"),
    ("max-retries", "", "expected a number"),
    ("max-retries", str(2**31 + 1), "must be <="),
    ("backoff-base", "0.5", "must be >= 1"),
    ("backoff-base", "0", "must be >= 1"),
    ("backoff-base", "nan", "finite"),
    ("backoff-base", "inf", "finite"),
    ("backoff-base", "fast", "expected a number"),
    ("max-backoff", "-1", ">= 0"),
    ("max-backoff", "soon", "duration like 30s, 5m, 2h"),
    ("max-backoff", str(MAX_SECONDS + 1), "at most"),
    ("poll-interval", "0", "> 0"),
    ("poll-interval", "-0.5", "> 0"),
    ("poll-interval", "-5s", "> 0"),
    ("poll-interval", "nan", "duration like"),
    ("poll-interval", "1e400", "duration like"),
    ("job-timeout", "-3", ">= 0"),
    ("job-timeout", "forever", "duration like"),
    ("lease-timeout", "0", "> 0"),
    ("lease-timeout", "0s", "> 0"),
    ("max-log-bytes", "-1", "size like 512K"),
    ("max-log-bytes", "1.5M", "size like 512K"),
    ("max-log-bytes", "lots", "size like 512K"),
    ("max-log-bytes", -5, ">= 0"),
]


@pytest.mark.parametrize(("key", "value", "fragment"), INVALID)
def test_invalid_values_are_rejected_naming_the_key_and_what_is_valid(
        key: str, value: object, fragment: str) -> None:
    error = rejected(key, value)
    assert error.message.startswith(f"{key}: ")
    assert fragment in error.message
    # The key's help text says what would be valid.
    assert KEYS[key].help in error.message


@pytest.mark.parametrize(("key", "rule"), [
    ("max-retries", "int >= 0"), ("backoff-base", "number >= 1"), ("max-backoff", ">= 0"),
    ("poll-interval", "seconds > 0"), ("job-timeout", "seconds >= 0"),
    ("lease-timeout", "seconds > 0"), ("max-log-bytes", "size >= 0"),
])
def test_each_keys_help_states_its_valid_range(key: str, rule: str) -> None:
    assert rule in KEYS[key].help


@pytest.mark.parametrize(("text", "seconds"), [("30", 30), ("30s", 30), ("5m", 300), ("2h", 7200),
                                               ("1h30m", 5400), ("0.5", 0.5), (" 2h ", 7200),
                                               (12, 12), (1.5, 1.5)])
def test_durations_are_seconds_or_unit_suffixed(text: object, seconds: float) -> None:
    assert parse_duration(text, "delay") == seconds


@pytest.mark.parametrize("text", ["30x", "five", "", "s", None, [], False])
def test_a_malformed_duration_is_invalid_input(text: object) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(text, "delay")
    assert info.value.message.startswith("delay: ")


def test_a_duration_longer_than_ten_years_is_refused() -> None:
    assert parse_duration(str(MAX_SECONDS), "delay") == MAX_SECONDS
    with pytest.raises(InvalidInput, match="at most"):
        parse_duration(MAX_SECONDS + 1, "delay")


@pytest.mark.parametrize(("text", "size"), [("0", 0), ("1", 1), ("1K", 1024), ("1k", 1024),
                                            ("1KiB", 1024), ("1MiB", 1024**2), ("3M", 3 * 1024**2),
                                            ("1GiB", 1024**3), ("7b", 7), (123, 123)])
def test_sizes_use_binary_units(text: object, size: int) -> None:
    assert parse_size(text, "max-log-bytes") == size


@pytest.mark.parametrize(("value", "text"), [(3, "3"), (2.0, "2"), (0.5, "0.5"), (0, "0"),
                                             (0.0, "0"), (3600.0, "3600"), (1.25, "1.25"),
                                             (10485760, "10485760")])
def test_format_value_writes_canonical_text(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(("key", "value"), [("max-retries", "5"), ("backoff-base", "1.5"),
                                            ("max-backoff", "5m"), ("poll-interval", "0.1"),
                                            ("job-timeout", "2h"), ("lease-timeout", "0.5"),
                                            ("max-log-bytes", "1MiB")])
def test_a_formatted_value_parses_back_to_the_same_number(key: str, value: str) -> None:
    parsed = parse_value(key, value)
    assert parse_value(key, format_value(parsed)) == parsed


@given(st.floats(min_value=1e-6, max_value=MAX_SECONDS, allow_nan=False, allow_infinity=False))
def test_any_poll_interval_survives_the_round_trip_through_its_stored_text(seconds: float) -> None:
    parsed = parse_value("poll-interval", seconds)
    assert parse_value("poll-interval", format_value(parsed)) == seconds


def test_config_from_stored_parses_stored_text_and_defaults_the_rest() -> None:
    config = Config.from_stored({"max-retries": "5", "poll-interval": "0.5",
                                 "max-log-bytes": "1024"})
    assert config.max_retries == 5
    assert config.poll_interval == 0.5
    assert config.max_log_bytes == 1024
    assert config.backoff_base == 2
    assert config.lease_timeout == 30
    assert config.as_dict() == {**DEFAULTS, "max-retries": 5, "poll-interval": 0.5,
                                "max-log-bytes": 1024}


def test_config_from_stored_refuses_an_invalid_stored_value() -> None:
    with pytest.raises(InvalidInput, match="max-retries"):
        Config.from_stored({"max-retries": "-4"})


def test_config_from_stored_ignores_keys_it_does_not_know() -> None:
    assert Config.from_stored({"some-future-key": "x"}).as_dict() == DEFAULTS


@pytest.mark.parametrize("text, stored", [("*", "*"), ("PATH, HOME,LANG", "PATH,HOME,LANG"),
                                          ("AWS_*,LC_?", "AWS_*,LC_?")])
def test_env_allow_takes_names_and_patterns(text: str, stored: str) -> None:
    assert parse_value("env-allow", text) == stored


@pytest.mark.parametrize("text", ["", " , ", "PATH;rm -rf /", "A=B", 5])
def test_env_allow_refuses_what_is_not_a_name_or_pattern(text: object) -> None:
    assert "env-allow" in rejected("env-allow", text).message
