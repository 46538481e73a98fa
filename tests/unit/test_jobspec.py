"""Validation of jobs as users write them: fields, ids, strict JSON and job files."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest

from queuectl import jobspec
from queuectl.errors import InvalidInput
from queuectl.jobspec import (
    ALLOWED_KEYS,
    MAX_COMMAND_BYTES,
    build,
    check_id,
    loads,
    loads_object,
    new_id,
    parse_batch,
)

UTC = timezone.utc
NOW = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def job(**fields: Any) -> jobspec.NewJob:
    fields.setdefault("command", "echo hi")
    return build(fields, default_max_retries=3, now=NOW)


def invalid(**fields: Any) -> str:
    with pytest.raises(InvalidInput) as info:
        job(**fields)
    assert info.value.exit_code == 2
    return info.value.message


@pytest.fixture
def local_time_utc_plus_3() -> Iterator[None]:
    """The process's local time zone set to UTC+3 (a POSIX TZ string needs no tz database)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "XYZ-3"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


# --- build: defaults ------------------------------------------------------------

def test_a_job_with_only_a_command_gets_every_default() -> None:
    built = job(command="echo hi")
    assert built.command == "echo hi"
    assert built.max_retries == 3
    assert built.priority == 0
    assert built.run_at == NOW
    assert built.timeout is None
    assert len(built.id) == 26 and set(built.id) <= CROCKFORD


def test_explicit_fields_are_kept() -> None:
    built = job(id="nightly-backup.1", command="make backup", max_retries=5, priority=-2,
                run_at="2030-01-02T03:04:05Z", timeout=600)
    assert (built.id, built.command, built.max_retries, built.priority) == \
        ("nightly-backup.1", "make backup", 5, -2)
    assert built.run_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert built.timeout == 600.0 and isinstance(built.timeout, float)


def test_none_means_unset_for_every_optional_field() -> None:
    built = job(id=None, max_retries=None, priority=None, run_at=None, timeout=None)
    assert (built.max_retries, built.priority, built.run_at, built.timeout) == (3, 0, NOW, None)


def test_max_retries_zero_is_kept_rather_than_replaced_by_the_default() -> None:
    assert job(max_retries=0).max_retries == 0


# --- build: rejections ----------------------------------------------------------

def test_an_unknown_key_is_rejected_naming_it_and_the_allowed_keys() -> None:
    message = invalid(retries=3)
    assert "'retries'" in message
    for key in ALLOWED_KEYS:
        assert key in message


def test_a_missing_command_is_rejected() -> None:
    with pytest.raises(InvalidInput) as info:
        build({"id": "x"}, default_max_retries=3, now=NOW)
    assert info.value.message == "command: required"


@pytest.mark.parametrize("command", ["", " ", "\t\n  "])
def test_an_empty_or_blank_command_is_rejected(command: str) -> None:
    assert invalid(command=command) == "command: must not be empty"


@pytest.mark.parametrize(("command", "kind"), [(None, "null"), (5, "integer"), (["ls"], "array"),
                                               (True, "boolean")])
def test_a_command_that_is_not_a_string_is_rejected_naming_its_type(command: object, kind: str) -> None:
    assert invalid(command=command) == f"command: expected a string, got {kind}"


def test_a_command_with_a_nul_byte_is_rejected() -> None:
    assert "NUL" in invalid(command="echo a\0b")


def test_a_command_that_is_not_encodable_text_is_rejected() -> None:
    assert "Unicode" in invalid(command="echo \ud800")


def test_the_longest_command_a_shell_can_take_is_accepted_and_one_byte_more_is_not() -> None:
    assert len(job(command="x" * MAX_COMMAND_BYTES).command) == MAX_COMMAND_BYTES
    message = invalid(command="x" * (MAX_COMMAND_BYTES + 1))
    assert message.startswith("command: ") and str(MAX_COMMAND_BYTES) in message


def test_command_length_is_measured_in_utf8_bytes() -> None:
    assert "command:" in invalid(command="é" * (MAX_COMMAND_BYTES // 2 + 1))


@pytest.mark.parametrize("key", ["max_retries", "priority"])
@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_accepted_as_an_integer(key: str, value: bool) -> None:
    assert invalid(**{key: value}) == f"{key}: expected an integer, got boolean"


@pytest.mark.parametrize("key", ["max_retries", "priority"])
@pytest.mark.parametrize(("value", "kind"), [(1.0, "number"), ("3", "string"), ([], "array")])
def test_integer_fields_reject_other_types(key: str, value: object, kind: str) -> None:
    assert invalid(**{key: value}) == f"{key}: expected an integer, got {kind}"


def test_a_negative_max_retries_is_rejected() -> None:
    assert invalid(max_retries=-1) == "max_retries: must be >= 0, got -1"


def test_a_negative_priority_is_allowed() -> None:
    assert job(priority=-100).priority == -100


def test_integers_are_accepted_up_to_the_int64_bounds() -> None:
    assert job(priority=2**63 - 1).priority == 2**63 - 1
    assert job(priority=-(2**63)).priority == -(2**63)
    assert job(max_retries=2**63 - 1).max_retries == 2**63 - 1


@pytest.mark.parametrize(("key", "value"), [("priority", 2**63), ("priority", -(2**63) - 1),
                                            ("max_retries", 2**63), ("priority", 10**30)])
def test_integers_outside_int64_are_rejected(key: str, value: int) -> None:
    assert invalid(**{key: value}).startswith(f"{key}: must be ")


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf])
def test_a_timeout_must_be_a_finite_number_above_zero(value: float) -> None:
    assert invalid(timeout=value).startswith("timeout: must be a number of seconds > 0")


@pytest.mark.parametrize(("value", "kind"), [(True, "boolean"), ("10", "string"), ([1], "array")])
def test_a_timeout_that_is_not_a_number_is_rejected(value: object, kind: str) -> None:
    assert invalid(timeout=value) == f"timeout: expected a number of seconds, got {kind}"


def test_a_fractional_timeout_is_allowed() -> None:
    assert job(timeout=0.25).timeout == 0.25


def test_a_timeout_beyond_ten_years_is_rejected() -> None:
    assert "at most" in invalid(timeout=10 * 365 * 86400 + 1)


# --- run_at ---------------------------------------------------------------------

def test_run_at_with_z_is_utc() -> None:
    assert job(run_at="2030-06-01T08:30:00Z").run_at == datetime(2030, 6, 1, 8, 30, tzinfo=UTC)


def test_run_at_with_an_offset_is_converted_to_utc() -> None:
    run_at = job(run_at="2030-06-01T08:30:00.500+02:00").run_at
    assert run_at == datetime(2030, 6, 1, 6, 30, 0, 500_000, tzinfo=UTC)
    assert run_at.utcoffset() == timedelta(0)


def test_run_at_without_an_offset_is_local_time(local_time_utc_plus_3: None) -> None:
    assert job(run_at="2030-06-01T08:30:00").run_at == datetime(2030, 6, 1, 5, 30, tzinfo=UTC)


def test_run_at_as_an_aware_datetime_is_accepted() -> None:
    when = datetime(2030, 6, 1, 8, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert job(run_at=when).run_at == datetime(2030, 6, 1, 13, 30, tzinfo=UTC)


def test_run_at_as_a_naive_datetime_is_local_time(local_time_utc_plus_3: None) -> None:
    assert job(run_at=datetime(2030, 6, 1, 8, 30)).run_at == datetime(2030, 6, 1, 5, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["tomorrow", "2030-13-01T00:00:00Z", "2030-06-01 25:00", "",
                                  "2030/06/01"])
def test_an_unparseable_run_at_is_rejected(text: str) -> None:
    assert invalid(run_at=text).startswith("run_at: ")


def test_a_run_at_of_the_wrong_type_is_rejected() -> None:
    assert invalid(run_at=1700000000) == "run_at: expected an ISO-8601 time string, got integer"


def test_a_run_at_out_of_range_is_invalid_input_not_a_crash() -> None:
    assert invalid(run_at="9999-12-31T23:59:59-05:00").startswith("run_at: ")


# --- ids ------------------------------------------------------------------------

@pytest.mark.parametrize("job_id", ["a", "A" * 128, "job-1", "job_1", "v1.2.3", "_private",
                                    "-dash", "0123456789", "a.b.c"])
def test_valid_ids_are_accepted(job_id: str) -> None:
    assert check_id(job_id) == job_id
    assert job(id=job_id).id == job_id


@pytest.mark.parametrize("job_id", ["a" * 129, ".hidden", ".", "..", "a/b", "../etc", "", "a b",
                                    "tab\t", "new\nline", "ünï", "a*", "a\0"])
def test_invalid_ids_are_rejected(job_id: str) -> None:
    message = invalid(id=job_id)
    assert message.startswith("id: ")
    assert "1-128 characters" in message


def test_an_id_that_is_not_a_string_is_rejected() -> None:
    assert invalid(id=42) == "id: expected a string, got integer"


def test_generated_ids_are_unique_26_character_and_strictly_increasing() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert all(len(i) == 26 and set(i) <= CROCKFORD for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(a < b for a, b in zip(ids, ids[1:]))


def test_generated_ids_sort_by_creation_time_across_milliseconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobspec, "_last_id", [0, 0])
    clock = iter([1_800_000_000_001, 1_800_000_000_000, 1_800_000_000_002])
    monkeypatch.setattr(jobspec.time, "time_ns", lambda: next(clock) * 1_000_000)
    monkeypatch.setattr(jobspec.os, "urandom", lambda n: b"\x00" * n)
    first, during_clock_step_back, later = new_id(), new_id(), new_id()
    # The time part (10 characters) follows the clock; a clock stepping back never reorders ids.
    assert first[:10] < later[:10]
    assert first < during_clock_step_back < later


def test_generated_ids_stay_increasing_when_the_random_part_overflows_within_one_millisecond(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobspec, "_last_id", [0, 0])
    monkeypatch.setattr(jobspec.time, "time_ns", lambda: 1_800_000_000_000 * 1_000_000)
    monkeypatch.setattr(jobspec.os, "urandom", lambda n: b"\xff" * n)
    first, second = new_id(), new_id()
    assert first < second


# --- strict JSON ----------------------------------------------------------------

def test_loads_rejects_duplicate_keys() -> None:
    with pytest.raises(InvalidInput, match="duplicate key 'command'"):
        loads('{"command": "a", "command": "b"}')


def test_loads_rejects_duplicate_keys_in_nested_objects() -> None:
    with pytest.raises(InvalidInput, match="duplicate key 'x'"):
        loads('[{"x": 1, "x": 1}]')


@pytest.mark.parametrize("text", ['{"timeout": NaN}', '{"timeout": Infinity}', "[-Infinity]", "NaN"])
def test_loads_rejects_nan_and_infinity(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        loads(text)
    assert "not a valid JSON number" in info.value.message
    assert info.value.exit_code == 2


def test_loads_rejects_deep_nesting_without_crashing() -> None:
    with pytest.raises(InvalidInput, match="nested too deeply"):
        loads("[" * 10_000)


def test_loads_reports_the_line_and_column_of_a_syntax_error() -> None:
    with pytest.raises(InvalidInput) as info:
        loads('{"command": }')
    assert info.value.message == "invalid JSON: Expecting value at line 1 column 13"
    with pytest.raises(InvalidInput) as info:
        loads('{\n  "command": "x",\n}')
    assert "at line 3 column 1" in info.value.message


def test_loads_rejects_an_integer_with_thousands_of_digits_as_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="invalid JSON"):
        loads("1" * 5000)


def test_loads_accepts_ordinary_json() -> None:
    assert loads('{"command": "echo \\u00e9", "priority": -1, "timeout": 1.5}') == \
        {"command": "echo é", "priority": -1, "timeout": 1.5}


@pytest.mark.parametrize(("text", "kind"), [("[]", "array"), ('"x"', "string"), ("3", "integer"),
                                            ("null", "null"), ("true", "boolean")])
def test_loads_object_requires_an_object(text: str, kind: str) -> None:
    with pytest.raises(InvalidInput) as info:
        loads_object(text)
    assert info.value.message == f"expected a JSON object, got {kind}"


# --- job files ------------------------------------------------------------------

def test_json_lines_yield_each_object_labelled_with_its_line_skipping_blank_lines() -> None:
    text = '{"command": "a"}\n\n   \n{"command": "b"}\n{"command": "c"}\n'
    assert list(parse_batch(text)) == [("line 1", {"command": "a"}), ("line 4", {"command": "b"}),
                                       ("line 5", {"command": "c"})]


def test_json_lines_accept_a_byte_order_mark_and_crlf_line_ends() -> None:
    text = '\ufeff{"command": "a"}\r\n{"command": "b"}\r\n'
    assert list(parse_batch(text)) == [("line 1", {"command": "a"}), ("line 2", {"command": "b"})]


def test_an_invalid_json_line_is_reported_with_its_line_number() -> None:
    text = '{"command": "a"}\n\n{"command": }\n{"command": "d"}\n'
    with pytest.raises(InvalidInput) as info:
        list(parse_batch(text))
    assert info.value.message == "line 3: invalid JSON: Expecting value at line 1 column 13"


def test_a_json_line_that_is_not_an_object_is_rejected_with_its_line_number() -> None:
    with pytest.raises(InvalidInput) as info:
        list(parse_batch('{"command": "a"}\n7\n'))
    assert info.value.message == "line 2: expected a JSON object, got integer"


def test_a_json_line_with_a_duplicate_key_is_rejected_with_its_line_number() -> None:
    with pytest.raises(InvalidInput, match="^line 1: invalid JSON: duplicate key 'id'$"):
        list(parse_batch('{"id": "a", "id": "b", "command": "x"}'))


def test_a_json_lines_command_containing_a_unicode_line_separator_stays_one_entry() -> None:
    # JSON allows U+2028, U+2029 and U+0085 raw inside strings; only "\n" ends a JSON Lines record.
    text = '{"command": "echo a\u2028b"}\n{"command": "echo c\u0085d"}\n'
    assert list(parse_batch(text)) == [("line 1", {"command": "echo a\u2028b"}),
                                       ("line 2", {"command": "echo c\u0085d"})]


def test_a_json_array_yields_each_object_labelled_with_its_index() -> None:
    text = '[{"command": "a"},\n {"command": "b"}]'
    assert list(parse_batch(text)) == [("index 0", {"command": "a"}), ("index 1", {"command": "b"})]


def test_a_json_array_may_start_after_whitespace_and_a_byte_order_mark() -> None:
    assert list(parse_batch('\ufeff\n  [{"command": "a"}]')) == [("index 0", {"command": "a"})]


def test_a_json_array_entry_that_is_not_an_object_is_rejected_with_its_index() -> None:
    with pytest.raises(InvalidInput) as info:
        list(parse_batch('[{"command": "a"}, "echo b"]'))
    assert info.value.message == "index 1: expected a JSON object, got string"


def test_an_invalid_json_array_reports_the_position_of_the_error() -> None:
    with pytest.raises(InvalidInput) as info:
        list(parse_batch('[{"command": "a"},\n {"command": "b",}]'))
    assert "line 2 column" in info.value.message


def test_an_empty_job_file_yields_nothing() -> None:
    assert list(parse_batch("")) == []
    assert list(parse_batch("\n\n")) == []
    assert list(parse_batch("[]")) == []


def test_a_json_error_message_does_not_stutter_before_its_position() -> None:
    with pytest.raises(InvalidInput) as info:
        loads('{"command": "echo')
    assert info.value.message == \
        "invalid JSON: Unterminated string starting at line 1 column 13"
