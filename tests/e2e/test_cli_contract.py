"""The CLI contract: exit codes, one-line errors, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import QUEUECTL, Cli


def job_count(cli: Cli) -> int:
    return sum(cli.json("status")["jobs"].values())


def assert_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == ""


def test_enqueue_prints_the_id_alone_and_show_returns_every_field(cli: Cli) -> None:
    out = cli.ok("enqueue", '{"id": "job1", "command": "echo hi", "priority": -3, "max_retries": 1,'
                            ' "timeout": 2.5, "run_at": "2030-01-02T03:04:05Z"}')
    assert out == "job1\n"
    job = cli.job("job1")
    assert set(job) >= {"id", "command", "state", "attempts", "max_retries", "priority", "run_at",
                        "timeout", "created_at", "updated_at", "started_at", "finished_at",
                        "exit_code", "last_error", "worker_id"}
    assert job["state"] == "pending" and job["attempts"] == 0 and job["priority"] == -3
    assert job["max_retries"] == 1 and job["timeout"] == 2.5
    assert job["run_at"] == "2030-01-02T03:04:05.000Z"
    assert job["created_at"].endswith("Z") and job["started_at"] is None


def test_enqueue_without_an_id_generates_sortable_unique_ids(cli: Cli) -> None:
    ids = [cli.enqueue(command="true") for _ in range(5)]
    assert len(set(ids)) == 5 and ids == sorted(ids)


def test_max_retries_defaults_to_the_config_value_at_enqueue_time(cli: Cli) -> None:
    cli.config(**{"max-retries": 7})
    assert cli.job(cli.enqueue(command="true"))["max_retries"] == 7


def test_run_at_without_an_offset_is_local_time(cli: Cli) -> None:
    cli.env["TZ"] = "Asia/Tokyo"  # UTC+9, no daylight saving
    cli.ok("enqueue", '{"id": "local", "command": "true", "run_at": "2030-01-01T09:00:00"}')
    assert cli.job("local")["run_at"] == "2030-01-01T00:00:00.000Z"


@pytest.mark.parametrize("document, fragment", [
    ('{"command": "x", "colour": "red"}', "colour"),
    ('{"id": "a"}', "command"),
    ('{"command": ""}', "command"),
    ('{"command": 5}', "command"),
    ('{"command": "x", "max_retries": -1}', "max_retries"),
    ('{"command": "x", "max_retries": "3"}', "max_retries"),
    ('{"command": "x", "max_retries": true}', "max_retries"),
    ('{"command": "x", "priority": 1.5}', "priority"),
    ('{"command": "x", "priority": 18446744073709551616}', "priority"),
    ('{"command": "x", "timeout": 0}', "timeout"),
    ('{"command": "x", "timeout": -2}', "timeout"),
    ('{"command": "x", "timeout": NaN}', "NaN"),
    ('{"command": "x", "timeout": Infinity}', "Infinity"),
    ('{"command": "x", "run_at": "tomorrow"}', "run_at"),
    ('{"command": "x", "run_at": "0000-01-01T00:00:00Z"}', "run_at"),
    ('{"command": "x", "id": "../etc"}', "id"),
    ('{"command": "x", "id": ".hidden"}', "id"),
    ('{"command": "x", "id": ""}', "id"),
    ('{"command": "x", "command": "y"}', "duplicate key"),
    ('{"command": "x"', "line 1 column"),
    ('[{"command": "x"}]', "object"),
    ('"just a string"', "object"),
    ("[" * 10000, "JSON"),
])
def test_invalid_json_jobs_exit_2_naming_the_problem_and_write_nothing(cli: Cli, document: str,
                                                                     fragment: str) -> None:
    assert_error(cli("enqueue", document), 2, fragment)
    assert job_count(cli) == 0


def test_a_duplicate_id_exits_1_and_leaves_the_existing_job_untouched(cli: Cli) -> None:
    cli.enqueue(id="same", command="echo first")
    assert_error(cli("enqueue", '{"id": "same", "command": "echo second"}'), 1, "same", "exists")
    assert cli.job("same")["command"] == "echo first"
    assert job_count(cli) == 1


def test_enqueue_file_accepts_json_lines_and_prints_one_id_per_line(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"id": "a", "command": "true"}\n\n{"id": "b", "command": "true"}\n')
    assert cli.ok("enqueue", "--file", str(path)) == "a\nb\n"


def test_enqueue_file_accepts_a_json_array_from_stdin_with_a_bom(cli: Cli) -> None:
    out = cli.ok("enqueue", "--file", "-", input='\ufeff[{"id": "x", "command": "true"}, {"id": "y", "command": "true"}]')
    assert out == "x\ny\n"


@pytest.mark.parametrize("content, code, fragments", [
    ('{"id": "a", "command": "true"}\n{"id": "b", "command": ""}\n', 2, ("line 2", "command")),
    ('{"id": "a", "command": "true"}\nnot json\n', 2, ("line 2",)),
    ('[{"id": "a", "command": "true"}, {"id": "b", "bad": 1}]', 2, ("index 1", "bad")),
    ('{"id": "a", "command": "true"}\n{"id": "a", "command": "true"}\n', 1, ("a", "twice")),
])
def test_enqueue_file_is_all_or_nothing(cli: Cli, tmp_path: Path, content: str, code: int,
                                        fragments: tuple[str, ...]) -> None:
    path = tmp_path / "jobs"
    path.write_text(content)
    assert_error(cli("enqueue", "--file", str(path)), code, *fragments)
    assert job_count(cli) == 0


def test_enqueue_file_with_an_existing_id_enqueues_nothing(cli: Cli, tmp_path: Path) -> None:
    cli.enqueue(id="old", command="true")
    path = tmp_path / "jobs"
    path.write_text('{"id": "new", "command": "true"}\n{"id": "old", "command": "true"}\n')
    assert_error(cli("enqueue", "--file", str(path)), 1, "old", "exists")
    assert job_count(cli) == 1


def test_enqueue_file_rejects_invalid_utf8_and_a_missing_file(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b'{"command": "\xff"}\n')
    assert_error(cli("enqueue", "--file", str(path)), 2, "UTF-8")
    assert_error(cli("enqueue", "--file", str(tmp_path / "missing")), 2, "missing")
    assert job_count(cli) == 0


def test_enqueue_file_of_ten_thousand_jobs_goes_in_at_once(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"command": f"echo {i}"}) + "\n" for i in range(10000)))
    out = cli.ok("enqueue", "--file", str(path))
    assert len(out.split()) == 10000
    assert cli.json("status")["jobs"]["pending"] == 10000


def test_enqueue_flags_build_the_same_job(cli: Cli) -> None:
    out = cli.ok("enqueue", "--command", "echo flags", "--id", "f1", "--priority", "-2",
                 "--max-retries", "0", "--timeout", "1m", "--delay", "2h")
    assert out == "f1\n"
    job = cli.job("f1")
    assert (job["priority"], job["max_retries"], job["timeout"]) == (-2, 0, 60.0)
    assert job["run_at"] > job["created_at"]


@pytest.mark.parametrize("args, fragment", [
    (("--command", "true", "--delay", "soon"), "--delay"),
    (("--command", "true", "--timeout", "0"), "timeout"),
    (("--command", "true", "--run-at", "2030-01-01", "--delay", "5m"), "not both"),
    (("--command", "true", "--priority", "high"), "priority"),
    (('{"command": "true"}', "--priority", "1"), "--priority"),
    ((), "exactly one"),
])
def test_invalid_enqueue_flags_exit_2(cli: Cli, args: tuple[str, ...], fragment: str) -> None:
    assert_error(cli("enqueue", *args), 2, fragment)
    assert job_count(cli) == 0


def test_unknown_jobs_states_and_options(cli: Cli) -> None:
    assert_error(cli("show", "nope"), 1, "nope")
    assert_error(cli("logs", "nope"), 1, "nope")
    assert_error(cli("list", "--state", "sleeping"), 2, "sleeping", "pending")
    assert_error(cli("list", "--limit", "-1"), 2)
    assert_error(cli("frobnicate"), 2, "frobnicate")
    assert_error(cli("status", "--bogus"), 2, "--bogus")


def test_dlq_retry_of_a_job_that_is_not_dead_exits_1_naming_its_state_and_changes_nothing(cli: Cli) -> None:
    cli.enqueue(id="p", command="true")
    assert_error(cli("dlq", "retry", "p"), 1, "p", "pending")
    assert_error(cli("dlq", "retry", "ghost"), 1, "ghost")
    assert_error(cli("dlq", "retry"), 2)
    assert cli.job("p")["state"] == "pending"


def test_config_get_set_with_both_spellings_and_bare_values(cli: Cli) -> None:
    assert cli.ok("config", "get", "max-retries") == "3\n"
    assert cli.ok("config", "set", "max_retries", "5") == "max-retries = 5\n"
    assert cli.ok("config", "get", "max_retries") == "5\n"
    cli.ok("config", "set", "poll-interval", "0.25")
    cli.ok("config", "set", "max-log-bytes", "1MiB")
    values = cli.json("config", "get")
    assert values["poll-interval"] == 0.25 and values["max-log-bytes"] == 1048576
    assert set(values) == {"max-retries", "backoff-base", "max-backoff", "poll-interval",
                           "job-timeout", "lease-timeout", "max-log-bytes", "env-allow"}


@pytest.mark.parametrize("key, value, fragment", [
    ("colour", "red", "max-retries"),
    ("max-retries", "-1", ">= 0"),
    ("max-retries", "1.5", "whole number"),
    ("backoff-base", "0.5", ">= 1"),
    ("max-backoff", "-1", ">= 0"),
    ("poll-interval", "0", "> 0"),
    ("lease-timeout", "abc", "lease-timeout"),
    ("max-log-bytes", "lots", "size"),
])
def test_invalid_config_exits_2_listing_what_is_valid_and_changes_nothing(
        cli: Cli, key: str, value: str, fragment: str) -> None:
    before = cli.json("config", "get")
    assert_error(cli("config", "set", key, value), 2, fragment)
    assert cli.json("config", "get") == before


def test_a_postgresql_url_without_the_extra_says_what_to_install(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    blocker = tmp_path / "no-psycopg" / "psycopg"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('psycopg is not installed')\n")
    cli.env["PYTHONPATH"] = str(blocker.parent)
    assert_error(cli("--db", "postgresql://localhost/x", "status"), 1, "pip install 'queuectl[postgres]'")


def test_an_unreachable_postgresql_server_is_a_clear_error(sqlite_cli: Cli) -> None:
    cli = sqlite_cli
    assert_error(cli("--db", "postgresql://postgres@127.0.0.1:1/test", "status"), 1, "cannot connect")


def test_an_unknown_url_scheme_lists_the_valid_ones(sqlite_cli: Cli) -> None:
    cli = sqlite_cli
    assert_error(cli("--db", "mysql://localhost/x", "status"), 2, "mysql", "postgresql://")


def test_a_corrupt_or_directory_database_is_a_clear_error(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    assert_error(cli("--db", str(garbage), "status"), 1, "garbage.db")
    assert_error(cli("--db", str(tmp_path), "status"), 1, "directory")


def test_the_log_folder_is_owner_only(cli: Cli) -> None:
    cli.enqueue(id="j", command="echo hi")
    assert cli.run_until_empty().returncode == 0
    assert (cli.data_dir / "logs").stat().st_mode & 0o777 == 0o700
    assert (cli.data_dir / "logs" / "j").stat().st_mode & 0o777 == 0o700
    assert (cli.data_dir / "logs" / "j" / "1.stdout").stat().st_mode & 0o777 == 0o600


def test_the_database_file_is_owner_only(sqlite_cli: Cli) -> None:
    sqlite_cli.enqueue(command="true")
    assert (sqlite_cli.db.stat().st_mode & 0o777) == 0o600


def test_the_default_database_lives_in_the_xdg_data_folder(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    env = {k: v for k, v in cli.env.items() if k != "QUEUECTL_DB"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    subprocess.run([QUEUECTL, "enqueue", "--command", "true"], env=env, check=True, capture_output=True)
    assert (tmp_path / "xdg" / "queuectl" / "queuectl.db").exists()


def test_every_command_has_help_with_an_example(cli: Cli) -> None:
    for command in (["enqueue"], ["list"], ["show"], ["logs"], ["status"], ["worker", "start"],
                    ["worker", "stop"], ["worker", "list"], ["dlq", "list"], ["dlq", "retry"],
                    ["config", "get"], ["config", "set"]):
        out = cli.ok(*command, "--help")
        assert "Example" in out and "queuectl " + command[0] in out, command


def test_python_m_queuectl_is_the_same_program(cli: Cli) -> None:
    import sys

    result = subprocess.run([sys.executable, "-m", "queuectl", "status", "--json"],
                            env=cli.env, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["jobs"]["pending"] == 0


def test_status_json_has_the_documented_shape(cli: Cli) -> None:
    cli.enqueue(command="true")
    assert cli.json("status") == {"jobs": {"pending": 1, "processing": 0, "completed": 0,
                                           "failed": 0, "dead": 0}, "workers": {"active": 0}}


def test_human_output_is_plain_when_not_a_terminal(cli: Cli) -> None:
    cli.enqueue(id="plain", command="true")
    out = cli.ok("list")
    assert "\x1b[" not in out and "plain" in out and "pending" in out
