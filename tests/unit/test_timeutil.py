"""Time conversions: ISO-8601 text with a Z and milliseconds, and exact integer milliseconds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuectl.timeutil import EPOCH, from_ms, iso, now, parse_iso, to_ms

UTC = timezone.utc


def ms_precision(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def test_iso_writes_utc_with_a_z_and_milliseconds() -> None:
    assert iso(datetime(2026, 11, 28, 12, 0, 0, 123_456, tzinfo=UTC)) == "2026-11-28T12:00:00.123Z"


def test_iso_always_writes_three_millisecond_digits() -> None:
    assert iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 7_000, tzinfo=UTC)) == "2026-01-02T03:04:05.007Z"


def test_iso_converts_other_offsets_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert iso(datetime(2026, 1, 1, 1, 30, tzinfo=plus_two)) == "2025-12-31T23:30:00.000Z"


def test_iso_of_an_unset_time_is_none() -> None:
    assert iso(None) is None


def test_parse_iso_reads_z_and_milliseconds_as_utc() -> None:
    parsed = parse_iso("2026-11-28T12:00:00.123Z")
    assert parsed == datetime(2026, 11, 28, 12, 0, 0, 123_000, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


def test_parse_iso_converts_an_offset_to_utc() -> None:
    assert parse_iso("2026-06-01T08:00:00-04:30") == datetime(2026, 6, 1, 12, 30, tzinfo=UTC)


def test_parse_iso_ignores_surrounding_whitespace() -> None:
    assert parse_iso("  2026-06-01T08:00:00Z\n") == datetime(2026, 6, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "", "2026-02-30T00:00:00Z", "12:00"])
def test_parse_iso_rejects_text_that_is_not_an_iso_time_with_a_readable_value_error(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_iso(text)
    assert repr(text) in str(info.value)


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31),
                    timezones=st.just(UTC)))
def test_iso_text_parses_back_to_the_same_millisecond(value: datetime) -> None:
    assert parse_iso(iso(value)) == ms_precision(value)


@pytest.mark.parametrize("year", [1, 999])
def test_iso_text_of_a_year_before_1000_is_still_iso_8601(year: int) -> None:
    value = datetime(year, 3, 1, 12, 0, tzinfo=UTC)
    text = iso(value)
    assert text == f"{year:04d}-03-01T12:00:00.000Z"
    assert parse_iso(text) == value


def test_to_ms_counts_milliseconds_since_the_unix_epoch() -> None:
    assert to_ms(EPOCH) == 0
    assert to_ms(datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC)) == 1_700_000_000_123
    assert to_ms(datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)) == -1


def test_to_ms_drops_sub_millisecond_digits_towards_the_past() -> None:
    assert to_ms(EPOCH + timedelta(microseconds=1999)) == 1
    assert to_ms(EPOCH - timedelta(microseconds=1)) == -1


def test_to_ms_is_exact_far_from_1970() -> None:
    far = datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert to_ms(far) == 253_402_300_799_999
    assert from_ms(253_402_300_799_999) == far


def test_from_ms_returns_aware_utc_datetimes() -> None:
    value = from_ms(1_700_000_000_123)
    assert value == datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC)
    assert value.utcoffset() == timedelta(0)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(UTC)))
def test_milliseconds_round_trip_exactly(value: datetime) -> None:
    value = ms_precision(value)
    assert from_ms(to_ms(value)) == value


@given(st.integers(min_value=-62_135_596_800_000 + 86_400_000, max_value=253_402_300_799_999))
def test_every_stored_millisecond_value_maps_back_to_itself(ms: int) -> None:
    assert to_ms(from_ms(ms)) == ms


def test_now_is_utc_with_millisecond_precision() -> None:
    current = now()
    assert current.utcoffset() == timedelta(0)
    assert current.microsecond % 1000 == 0
    assert abs(current - datetime.now(UTC)) < timedelta(seconds=5)
