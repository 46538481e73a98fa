"""Hostile input (promise 9) and security (promise 10), against the real ``queuectl``.

Bad input: a fixed corpus (malformed, 10,000-deep and 10 MB JSON, NUL bytes, invalid
UTF-8, a BOM, NaN, +-Infinity, 2**64, years 0 and 9999, duplicate keys, unknown
options; corrupt, empty, directory, read-only and FIFO databases) and hypothesis-made
argv lists and JSON documents. Every run must exit 0, 1 or 2; print no traceback;
report each error as exactly one ``error: `` line that is not an ``internal error``
(queuectl's own name for a bug); leave the database as it was when it fails; and leave
a SQLite database that passes ``PRAGMA integrity_check``.

Security: files are owner-only under umask 022; others' write access is refused; 200+
hostile job ids are rejected by every command that takes an id and create no file
outside the data folder; shell and SQL metacharacters are stored literally and only
ever run by a worker, as the job.

Cost: a ``queuectl`` process takes ~0.12 s on SQLite and ~0.27 s on PostgreSQL. The
core corpus runs through the executable (on PostgreSQL: the cases that can reach the
store). The extended corpus and the checks that need thousands of calls (the hostile
ids) run the CLI's ``main()`` in one helper process -- the function the executable
calls, with the argv it would get -- and a sample is compared with the executable.
Database state is read directly (sqlite3/psycopg) after every case; ``status --json``
is compared with it at the end of each corpus. The hypothesis tests run
QUEUECTL_FUZZ_EXAMPLES examples (default 60) on SQLite; setting the variable (e.g. to
10000) makes the long run, which also fuzzes PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import PG_URL, QUEUECTL, Cli, wait_until

# --- running queuectl ------------------------------------------------------------------

Arg = str | bytes


@dataclass
class Outcome:
    argv: list[Arg]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        shown = [a if len(a) < 120 else a[:60] + (b"..." if isinstance(a, bytes) else "...")
                 for a in self.argv]
        return f"{shown!r} -> exit {self.code}, stdout {self.out[:200]!r}, stderr {self.err[:300]!r}"


def run(cli: Cli, *args: Arg, input: str | bytes | None = None, env: dict[str, str] | None = None,
        cwd: Path | None = None, umask: int | None = None, prefix: Sequence[str] = (),
        timeout: float = 30) -> Outcome:
    """Run the real executable; stdin is ``input`` (empty when None), never the terminal's."""
    argv: list[Arg] = [QUEUECTL, *args]
    if umask is not None:
        argv = ["sh", "-c", f'umask {umask:03o}; exec "$0" "$@"', *argv]
    argv = [*prefix, *argv]
    data = input.encode() if isinstance(input, str) else (input or b"")
    result = subprocess.run(argv, input=data, capture_output=True, env=env or cli.env, cwd=cwd,
                            timeout=timeout)
    return Outcome(list(args), result.returncode, result.stdout.decode("utf-8", "replace"),
                   result.stderr.decode("utf-8", "replace"))


WORKER_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def contract_problems(outcome: Outcome | tuple[Any, ...], allowed: Iterable[int] = (0, 1, 2)) -> list[str]:
    """What breaks the CLI contract: an exit code outside ``allowed``, a traceback, or an
    error that is not one ``error: `` line, or is an internal error (a bug, by queuectl's
    own definition)."""
    code, err = (outcome.code, outcome.err) if isinstance(outcome, Outcome) else outcome[:2]
    allowed = set(allowed)
    problems = []
    if code not in allowed:
        problems.append(f"exit {code}, expected one of {sorted(allowed)}")
    if "Traceback" in err:
        problems.append("a traceback on stderr")
    if code != 0:
        # A worker's timestamped log lines may come first; the error is one last line.
        lines = [line for line in err.splitlines() if not WORKER_LOG_LINE.match(line)]
        if len(lines) != 1 or not lines[0].startswith("error: ") or not err.splitlines()[-1] == lines[0]:
            problems.append(f"stderr is not one 'error: ' line: {err[-300:]!r}")
        elif lines[0].startswith("error: internal error"):
            problems.append(f"an internal error: {lines[0][:300]}")
    return problems


def sandbox(tmp_path: Path) -> Path:
    """The working directory of every process: relative paths and PWN files land here."""
    path = tmp_path / "cwd"
    path.mkdir(exist_ok=True)
    return path


# --- many calls in one process -------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]

#: Runs ``queuectl.cli.main(argv)`` -- what the ``queuectl`` executable runs -- once per
#: request, with its own stdin/stdout/stderr, and reports exit code, output and (when
#: asked) the database state after each. Arguments arrive as the executable would see
#: them: bytes that are not UTF-8 as surrogate escapes.
DRIVER = r"""
import io, json, os, sys
from queuectl.cli import main
from tests.e2e.test_hostile_input import db_state
request = json.load(sys.stdin)
url = os.environ["QUEUECTL_DB"]
real_stdout = sys.stdout
state = (lambda: db_state(url)) if request["state"] else (lambda: None)
report = {"initial": state(), "runs": []}
for argv, data in request["cases"]:
    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(b"" if data is None else data.encode("latin-1")))
    sys.stdout = io.TextIOWrapper(out, write_through=True)
    sys.stderr = io.TextIOWrapper(err, write_through=True)
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:
        code = -1
        err.write(("escaped main(): " + repr(exc)).encode())
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            stream.detach()
        sys.stdin, sys.stdout, sys.stderr = saved
    report["runs"].append([code, out.getvalue().decode("utf-8", "replace"),
                           err.getvalue().decode("utf-8", "replace"), state()])
json.dump(report, real_stdout)
"""


def drive(env: dict[str, str], calls: Sequence[tuple[Sequence[Arg], bytes | None]], *, cwd: Path,
          state: bool, parts: int = 1) -> dict[str, Any]:
    """Run ``calls`` through DRIVER, split over ``parts`` processes (only without ``state``)."""
    assert parts == 1 or not state
    assert not any("start" in [_as_text(a) for a in argv] for argv, _ in calls), "no workers in main()"
    requests = [[[_as_text(a) for a in argv], None if data is None else data.decode("latin-1")]
                for argv, data in calls]
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}
    size = max(1, -(-len(requests) // parts))
    procs = []
    for start in range(0, len(requests), size):
        proc = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
        procs.append((proc, json.dumps({"state": state, "cases": requests[start:start + size]})))
    report: dict[str, Any] = {"initial": None, "runs": []}
    for proc, request in procs:
        out, err = proc.communicate(request.encode(), timeout=300)
        assert proc.returncode == 0, err.decode("utf-8", "replace")[-3000:]
        part = json.loads(out)
        report["initial"] = report["initial"] or part["initial"]
        report["runs"] += part["runs"]
    return report


def _as_text(arg: Arg) -> str:
    return os.fsdecode(arg) if isinstance(arg, bytes) else arg


# --- the database, read directly ----------------------------------------------------------

def db_state(url: str) -> dict[str, Any]:
    """Jobs per state, attempts and config rows: what a failed command must not change."""
    if "://" not in url:
        path = Path(url)
        if not path.is_file() or path.stat().st_size == 0:
            return {}
        conn = sqlite3.connect(path, timeout=10)
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone():
                return {}
            return _state_rows(conn.execute)
        finally:
            conn.close()
    import psycopg

    schema = parse_qs(urlsplit(url).query).get("schema", ["queuectl"])[0]
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        if conn.execute("SELECT to_regclass('jobs')").fetchone() == (None,):
            return {}
        return _state_rows(conn.execute)


def _state_rows(execute: Any) -> dict[str, Any]:
    return {
        "jobs": dict(execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()),
        "ids": list(execute("SELECT count(DISTINCT id), max(updated_at) FROM jobs").fetchone()),
        "attempts": execute("SELECT count(*) FROM attempts").fetchone()[0],
        "config": dict(execute("SELECT key, value FROM config").fetchall()),
    }


def total_jobs(state: dict[str, Any] | None) -> int:
    return sum((state or {}).get("jobs", {}).values())


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def assert_status_matches(cli: Cli, cwd: Path) -> None:
    """``status --json`` agrees with the direct reads the corpora use, and ``list`` still works."""
    status = run(cli, "status", "--json", cwd=cwd)
    assert status.code == 0, str(status)
    shown = {k: v for k, v in json.loads(status.out)["jobs"].items() if v}
    assert shown == db_state(cli.env["QUEUECTL_DB"]).get("jobs", {}), status.out
    listed = run(cli, "list", "--json", cwd=cwd)
    assert listed.code == 0, str(listed)
    assert len(json.loads(listed.out)) == sum(shown.values())
    table = run(cli, "list", cwd=cwd)
    assert table.code == 0 and not contract_problems(table), str(table)


def job(**fields: Any) -> str:
    return json.dumps(fields)


def seed(cli: Cli, cwd: Path) -> None:
    """A few jobs, so 'nothing changed' is checked against a database that has rows."""
    outcome = run(cli, "enqueue", "--file", "-", cwd=cwd,
                  input="".join(job(id=f"seed-{n}", command=f"echo {n}") + "\n" for n in range(3)))
    assert outcome.code == 0, str(outcome)


# --- promise 9: the fixed corpus ---------------------------------------------------------------

@dataclass
class Case:
    label: str
    args: tuple[Arg, ...]  # after "enqueue"; or a whole argv after "@"
    stdin: bytes | None = None
    expect: frozenset[int] = frozenset({2})
    adds: int | None = 0  # jobs added when it exits 0 (None: not checked)
    core: bool = True  # through the executable; else through main()

    @property
    def argv(self) -> list[Arg]:
        return list(self.args[1:]) if self.args[:1] == ("@",) else ["enqueue", *self.args]


def case(label: str, *args: Arg, stdin: bytes | None = None, expect: Iterable[int] = (2,),
         adds: int | None = 0, core: bool = True) -> Case:
    return Case(label, tuple(args), stdin, frozenset(expect), adds, core)


def extra(label: str, *args: Arg, **kwargs: Any) -> Case:
    return case(label, *args, core=False, **kwargs)


def cmd(label: str, *args: Arg, **kwargs: Any) -> Case:
    return case(label, "@", *args, **kwargs)


def xcmd(label: str, *args: Arg, **kwargs: Any) -> Case:
    return case(label, "@", *args, core=False, **kwargs)


DEEP = 10_000
TEN_MB = 10 * 1024 * 1024


def json_corpus(folder: Path) -> list[Case]:
    deep_array = "[" * DEEP + "]" * DEEP
    deep_object = '{"a":' * DEEP + "1" + "}" * DEEP
    return [
        case("unterminated object", '{"command": "x"'),
        case("unquoted keys", '{command: "x"}'),
        case("trailing comma", '{"command": "x",}'),
        case("empty argument", ""),
        case("two objects in one argument", '{"command": "x"} {"command": "y"}'),
        case("an array", '[{"command": "x"}]'),
        case("escaped NUL in command", '{"command": "a\\u0000b"}'),
        case("escaped NUL in id", '{"command": "x", "id": "a\\u0000"}'),
        case("lone surrogate escape in command", '{"command": "\\ud800"}'),
        case("duplicate command key", '{"command": "x", "command": "y"}'),
        case("duplicate key in a nested object", '{"command": "x", "id": {"k": 1, "k": 2}}'),
        case("10,000-deep array", deep_array),
        case("10,000-deep object", deep_object),
        case("BOM before an argument", '\ufeff{"command": "x"}', expect=(0, 2), adds=1),
        extra("single quotes", "{'command': 'x'}"),
        extra("blank argument", "  \t "),
        extra("JSON Lines in one argument", '{"command": "x"}\n{"command": "y"}'),
        extra("null", "null"), extra("a number", "0"), extra("a string", '"x"'),
        extra("escaped NUL as the whole command", '{"command": "\\u0000"}'),
        extra("escaped NUL in run_at", '{"command": "x", "run_at": "2030-01-01\\u0000"}'),
        extra("lone surrogate escape in id", '{"command": "x", "id": "\\udfff"}'),
        extra("duplicate id key with equal values", '{"command": "x", "id": "a", "id": "a"}'),
        extra("empty key", '{"": 1, "command": "x"}'),
        extra("command is an array", '{"command": ["x"]}'),
        extra("command is an object", '{"command": {"$(touch PWN)": 1}}'),
        extra("10,000-deep array as the id", '{"command": "x", "id": ' + deep_array + "}"),
        extra("every key null", job(command=None, id=None, priority=None, max_retries=None,
                                    run_at=None, timeout=None)),
    ]


def number_corpus(folder: Path) -> list[Case]:
    raw = '{"command": "x", "%s": %s}'
    return [
        case("timeout NaN", raw % ("timeout", "NaN")),
        case("timeout Infinity", raw % ("timeout", "Infinity")),
        case("timeout -Infinity", raw % ("timeout", "-Infinity")),
        case("timeout 1e400", raw % ("timeout", "1e400")),
        case("timeout 2**64", raw % ("timeout", 2**64)),
        case("priority NaN", raw % ("priority", "NaN")),
        case("priority 2**64", raw % ("priority", 2**64)),
        case("priority -2**64", raw % ("priority", -2**64)),
        case("max_retries 2**64", raw % ("max_retries", 2**64)),
        case("priority with 5,001 digits", raw % ("priority", "1" + "0" * 5000)),
        case("priority 2**63-1 is the largest accepted", raw % ("priority", 2**63 - 1),
             expect=(0,), adds=1),
        case("priority -2**63 is the smallest accepted", raw % ("priority", -2**63),
             expect=(0,), adds=1),
        case("--priority 2**64", "--command", "x", "--priority", str(2**64)),
        case("--timeout nan", "--command", "x", "--timeout", "nan"),
        case("--timeout inf", "--command", "x", "--timeout", "inf"),
        case("--delay 1e400", "--command", "x", "--delay", "1e400"),
        *[extra(f"{key} {text}", raw % (key, text))
          for key in ("timeout", "priority", "max_retries")
          for text in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "18446744073709551616",
                       "-18446744073709551616", "9223372036854775808", "1" + "0" * 5000,
                       '"1"', "true", "[]", "0x10", "nan", "inf")],
        extra("priority 1.5e1", raw % ("priority", "1.5e1")),
        extra("max_retries 1.0", raw % ("max_retries", "1.0")),
        extra("priority -2**63-1", raw % ("priority", -2**63 - 1)),
        extra("max_retries 2**63-1", raw % ("max_retries", 2**63 - 1), expect=(0, 2), adds=1),
        extra("timeout 5e-324", raw % ("timeout", "5e-324"), expect=(0, 2), adds=1),
        extra("timeout 1.5e1 is fifteen seconds", raw % ("timeout", "1.5e1"), expect=(0,), adds=1),
        extra("--priority -2**64", "--command", "x", "--priority", str(-2**64)),
        extra("--max-retries 2**64", "--command", "x", "--max-retries", str(2**64)),
        extra("--max-retries -1", "--command", "x", "--max-retries", "-1"),
        extra("--timeout -inf", "--command", "x", "--timeout", "-inf"),
        extra("--timeout 2**64", "--command", "x", "--timeout", str(2**64)),
        extra("--delay nan", "--command", "x", "--delay", "nan"),
        extra("--delay -1", "--command", "x", "--delay", "-1"),
        extra("--delay 2**64 seconds", "--command", "x", "--delay", str(2**64)),
    ]


def year_corpus(folder: Path) -> list[Case]:
    raw = '{"command": "x", "run_at": "%s"}'
    return [
        case("run_at year 0", raw % "0000-01-01T00:00:00Z"),
        case("run_at year 0 without offset", raw % "0000-01-01T00:00:00"),
        case("run_at year 1 is accepted", raw % "0001-01-01T00:00:00Z", expect=(0,), adds=1),
        case("run_at year 1 at +14:00 is before year 1", raw % "0001-01-01T00:00:00+14:00"),
        case("run_at year 9999 is accepted", raw % "9999-12-31T23:59:59.999Z", expect=(0,), adds=1),
        case("run_at year 9999 at -12:00 is after year 9999", raw % "9999-12-31T23:59:59-12:00"),
        case("run_at year 10000", raw % "10000-01-01T00:00:00Z"),
        case("--run-at year 0", "--command", "x", "--run-at", "0000-01-01"),
        case("--run-at year 9999 is accepted", "--command", "x", "--run-at", "9999-12-31T23:59:59Z",
             expect=(0,), adds=1),
        case("--run-at year 9999 local time", "--command", "x", "--run-at", "9999-12-31T23:59:59",
             expect=(0, 2), adds=1),
        extra("run_at year -1", raw % "-0001-01-01T00:00:00Z"),
        extra("run_at month 13", raw % "2030-13-01T00:00:00Z"),
        extra("run_at February 30", raw % "2030-02-30T00:00:00Z"),
        extra("run_at hour 25", raw % "2030-01-01T25:00:00Z"),
        extra("run_at offset +25:00", raw % "2030-01-01T00:00:00+25:00"),
        extra("run_at empty", raw % ""),
        extra("run_at a number", '{"command": "x", "run_at": 1700000000}'),
        extra("run_at 10,000 digits", raw % ("2" * 10_000)),
        extra("run_at year 1 local time", raw % "0001-01-01T00:00:00", expect=(0, 2), adds=1),
    ]


def argv_corpus(folder: Path) -> list[Case]:
    """Unknown options and out-of-range option values (whole argv, not only enqueue's)."""
    return [
        cmd("unknown command", "frobnicate"),
        cmd("unknown global option", "--frobnicate", "status"),
        cmd("unknown enqueue option", "enqueue", "--bogus", '{"command": "x"}'),
        cmd("unknown status option", "status", "--bogus"),
        cmd("--db without a value", "--db"),
        cmd("list --limit 2**64", "list", "--limit", str(2**64), expect=(0, 2)),
        cmd("worker start --count 0", "worker", "start", "--count", "0"),
        cmd("worker start --poll-interval nan", "worker", "start", "--stop-when-empty",
            "--poll-interval", "nan"),
        cmd("config set max-retries 2**64", "config", "set", "max-retries", str(2**64)),
        cmd("invalid UTF-8 command via argv", "enqueue", "--command", b"echo \xff\xfe"),
        cmd("invalid UTF-8 inside a JSON argument", "enqueue", b'{"command": "\xc3\x28"}'),
        cmd("invalid UTF-8 job id for show", "show", b"\xff", expect=(1, 2)),
        xcmd("option with a value on a flag", "status", "--json=1"),
        xcmd("show without an id", "show"),
        xcmd("show with two ids", "show", "a", "b"),
        xcmd("logs --attempt 0", "logs", "x", "--attempt", "0"),
        xcmd("logs --attempt 2**64", "logs", "x", "--attempt", str(2**64), expect=(1, 2)),
        xcmd("list --limit -1", "list", "--limit", "-1"),
        xcmd("list --limit 2**63", "list", "--limit", str(2**63), expect=(0, 2)),
        xcmd("list --limit 2**63-1", "list", "--limit", str(2**63 - 1), expect=(0, 2)),
        xcmd("list --state nonsense", "list", "--state", "sleeping"),
        xcmd("dlq retry with ids and --all", "dlq", "retry", "--all", "x"),
        xcmd("dlq retry with nothing", "dlq", "retry"),
        cmd("worker start --count 2**64", "worker", "start", "--count", str(2**64), core=False),
        cmd("worker start --poll-interval -1", "worker", "start", "--stop-when-empty",
            "--poll-interval", "-1", core=False),
        xcmd("worker stop --timeout nan", "worker", "stop", "--timeout", "nan", expect=(0, 2)),
        xcmd("worker stop --timeout -1", "worker", "stop", "--timeout", "-1"),
        xcmd("config set an unknown key", "config", "set", "colour", "red"),
        xcmd("config set max-retries 1e400", "config", "set", "max-retries", "1e400"),
        xcmd("config set poll-interval nan", "config", "set", "poll-interval", "nan"),
        xcmd("config set lease-timeout inf", "config", "set", "lease-timeout", "inf"),
        xcmd("config set max-log-bytes 2**64", "config", "set", "max-log-bytes", str(2**64),
             expect=(0, 2)),
        xcmd("config set without a value", "config", "set", "max-retries"),
        xcmd("config get an unknown key", "config", "get", "colour"),
        xcmd("enqueue with JSON and --command", "enqueue", '{"command": "x"}', "--command", "y"),
        xcmd("enqueue --id without --command", "enqueue", '{"command": "x"}', "--id", "a"),
        xcmd("overlong UTF-8 slash in --id", "enqueue", "--command", "x", "--id", b"a\xc0\xafb"),
        xcmd("invalid UTF-8 state", "list", "--state", b"\xff"),
        xcmd("invalid UTF-8 config key", "config", "set", b"\xff", "1"),
        xcmd("invalid UTF-8 job id for logs", "logs", b"job\xff", expect=(1, 2)),
        xcmd("invalid UTF-8 job id for dlq retry", "dlq", "retry", b"\xed\xa0\x80", expect=(1, 2)),
        xcmd("invalid UTF-8 --run-at", "enqueue", "--command", "x", "--run-at", b"2030\xff"),
    ]


def file_corpus(folder: Path) -> list[Case]:
    """Documents given through ``--file PATH`` and ``--file -`` (stdin): the ones too big
    for argv, and bytes that argv cannot carry."""
    big = ('{"command": "' + "x" * TEN_MB + '"}').encode()
    (folder / "big.json").write_bytes(big)
    (folder / "garbage.bin").write_bytes(bytes(range(256)) * (TEN_MB // 256))
    (folder / "over-limit.json").write_bytes(('{"command": "' + "x" * 131072 + '"}').encode())
    (folder / "at-limit.json").write_bytes(('{"command": "' + "x" * 131071 + '"}').encode())
    (folder / "deep.json").write_bytes(b"[" * 100_000)
    (folder / "dir").mkdir(exist_ok=True)

    def f(label: str, name: str, expect: Iterable[int] = (2,), adds: int | None = 0,
          core: bool = True) -> Case:
        return case(label, "--file", str(folder / name), expect=expect, adds=adds, core=core)

    def s(label: str, data: bytes, expect: Iterable[int] = (2,), adds: int | None = 0,
          core: bool = True) -> Case:
        return case(label, "--file", "-", stdin=data, expect=expect, adds=adds, core=core)

    return [
        f("10 MB command via --file", "big.json"),
        s("10 MB command via stdin", big),
        s("10 MB command in a JSON array via stdin", b"[" + big + b"]"),
        f("a command one byte over the exec limit", "over-limit.json"),
        f("a command at the exec limit is accepted", "at-limit.json", expect=(0,), adds=1),
        s("10,000-deep array via stdin", b"[" * DEEP + b"]" * DEEP),
        s("invalid UTF-8 on stdin", b'{"command": "\xff"}'),
        s("a raw NUL byte inside a string", b'{"command": "a\x00b"}'),
        s("NUL bytes only", b"\x00" * 64),
        s("a BOM on stdin is accepted", b'\xef\xbb\xbf{"command": "echo bom"}', expect=(0,), adds=1),
        s("empty stdin", b"", expect=(0,), adds=0),
        f("a directory as --file", "dir"),
        f("a missing --file", "missing.json"),
        s("10 MB command after a valid line via stdin", b'{"command": "ok"}\n' + big, core=False),
        f("10 MB of binary garbage via --file", "garbage.bin", core=False),
        f("100,000 open brackets via --file", "deep.json", core=False),
        s("10,000-deep object via stdin", b'{"a":' * DEEP + b"1" + b"}" * DEEP, core=False),
        s("invalid UTF-8 on the second line", b'{"command": "ok"}\n{"command": "\xc0\xaf"}', core=False),
        s("UTF-16 on stdin", '{"command": "x"}'.encode("utf-16"), core=False),
        s("a raw NUL between lines", b'{"command": "ok"}\n\x00\n', core=False),
        s("a BOM before a JSON array", b'\xef\xbb\xbf[{"command": "echo a"}]', expect=(0,), adds=1,
          core=False),
        s("two BOMs", b'\xef\xbb\xbf\xef\xbb\xbf{"command": "x"}', expect=(0, 2), adds=1, core=False),
        s("a BOM on the second line", b'{"command": "ok"}\n\xef\xbb\xbf{"command": "x"}',
          expect=(0, 2), adds=2, core=False),
        s("CRLF line ends", b'{"command": "a"}\r\n{"command": "b"}\r\n', expect=(0,), adds=2, core=False),
        s("U+2028 inside a command", '{"command": "echo a\u2028b"}'.encode(), expect=(0,), adds=1,
          core=False),
        s("duplicate keys on line 2", b'{"command": "a"}\n{"command": "b", "command": "c"}', core=False),
        s("NaN on line 2", b'{"command": "a"}\n{"command": "b", "timeout": NaN}', core=False),
        s("a duplicate id inside one batch", b'{"id": "d", "command": "a"}\n{"id": "d", "command": "b"}',
          expect=(1,), core=False),
        s("a JSON array with a non-object", b'[{"command": "a"}, 1]', core=False),
        s("an unterminated JSON array", b'[{"command": "a"}', core=False),
    ]


def _judge(item: Case, outcome: Outcome, before: Any, after: Any, how: str) -> list[str]:
    problems = contract_problems(outcome, item.expect)
    if outcome.code != 0 and after != before:
        problems.append(f"the database changed: {before} -> {after}")
    added = total_jobs(after) - total_jobs(before)
    if outcome.code == 0 and item.adds is not None and added != item.adds:
        problems.append(f"added {added} jobs, expected {item.adds}")
    return [f"{item.label} ({how}): {'; '.join(problems)}\n    {outcome}"] if problems else []


def run_corpus(cli: Cli, cases: list[Case], cwd: Path) -> list[str]:
    """Core cases through the executable (on PostgreSQL only those that can reach the
    store, i.e. may succeed); anything that could start a worker too; the rest through
    ``main()`` in one process, with the database read after each."""
    url = cli.env["QUEUECTL_DB"]
    failures = []
    by_exe = [c for c in cases if (c.core and (cli.is_sqlite or 0 in c.expect))
              or "start" in c.argv]
    for item in by_exe:
        before = db_state(url)
        outcome = run(cli, *item.argv, input=item.stdin, cwd=cwd, timeout=60)
        failures += _judge(item, outcome, before, db_state(url), "executable")
    driven = [c for c in cases if not any(c is e for e in by_exe)]
    if driven:
        report = drive(cli.env, [(c.argv, c.stdin) for c in driven], cwd=cwd, state=True)
        before = report["initial"]
        for item, (code, out, err, after) in zip(driven, report["runs"]):
            failures += _judge(item, Outcome(item.argv, code, out, err), before, after, "main()")
            before = after
    return failures


def test_bad_documents_numbers_years_options_and_files_fail_cleanly_and_change_nothing(
        cli: Cli, tmp_path: Path) -> None:
    """One database for the whole corpus (a fresh one per theme would cost a process
    or two each); every failure is listed with its case's label."""
    cwd = sandbox(tmp_path)
    seed(cli, cwd)
    folder = tmp_path / "inputs"
    folder.mkdir()
    cases = [item for corpus in (json_corpus, number_corpus, year_corpus, argv_corpus, file_corpus)
             for item in corpus(folder)]
    assert len(cases) > 150
    failures = run_corpus(cli, cases, cwd)
    assert_status_matches(cli, cwd)  # and list --json renders years 1 and 9999
    if cli.is_sqlite:
        assert integrity(cli.db) == "ok"
    assert not failures, f"{len(failures)} cases broke the contract:\n" + "\n".join(failures)


# --- promise 9: unusable database files (SQLite) ------------------------------------------------

def _garbage(path: Path, good: Path) -> None:
    path.write_bytes(b"this is not a sqlite database\n" * 200)


def _truncated(path: Path, good: Path) -> None:
    path.write_bytes(good.read_bytes()[:3000])


def _smashed(path: Path, good: Path) -> None:
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema page, header left intact
    path.write_bytes(bytes(data))


def _smashed_later_page(path: Path, good: Path) -> None:
    data = bytearray(good.read_bytes())
    data[8192:8192 + 2048] = b"\xa5" * 2048
    path.write_bytes(bytes(data))


def _directory(path: Path, good: Path) -> None:
    path.mkdir()


def _fifo(path: Path, good: Path) -> None:
    os.mkfifo(path, 0o600)


def _foreign(path: Path, good: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")
    conn.execute("INSERT INTO accounts VALUES (1, 100)")
    conn.commit()
    conn.close()


def _newer_schema(path: Path, good: Path) -> None:
    shutil.copyfile(good, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()


def _parent_is_a_file(path: Path, good: Path) -> None:
    path.parent.rmdir()
    path.parent.write_text("a file where the data folder should be\n")


UNUSABLE = {"garbage": _garbage, "truncated": _truncated, "smashed schema page": _smashed,
            "smashed data page": _smashed_later_page, "directory": _directory, "fifo": _fifo,
            "another application's database": _foreign, "newer schema": _newer_schema,
            "parent is a file": _parent_is_a_file}


def _fingerprint(path: Path) -> Any:
    if path.is_file():
        return ("file", path.read_bytes())
    if path.exists():
        info = path.stat()
        return (stat.S_IFMT(info.st_mode), sorted(os.listdir(path)) if path.is_dir() else None)
    return None


@pytest.mark.parametrize("kind", list(UNUSABLE))
def test_an_unusable_database_is_one_clear_error_and_is_left_as_it_was(
        sqlite_cli: Cli, tmp_path: Path, kind: str) -> None:
    cli = sqlite_cli
    cwd = sandbox(tmp_path)
    seed(cli, cwd)
    target = tmp_path / "bad" / "queue.db"
    target.parent.mkdir()
    UNUSABLE[kind](target, cli.db)
    watched = target if target.parent.is_dir() else target.parent
    before = _fingerprint(watched)
    neighbours = sorted(os.listdir(target.parent)) if target.parent.is_dir() else None
    env = {**cli.env, "QUEUECTL_DB": str(target)}
    # Only some statements touch a smashed data page: those may succeed, and write.
    partly_usable = kind == "smashed data page"
    failures = []
    for args in (("status",), ("enqueue", "--command", "true"), ("worker", "start", "--stop-when-empty")):
        try:
            outcome = run(cli, *args, env=env, cwd=cwd, timeout=6)
        except subprocess.TimeoutExpired:  # run() has SIGKILLed it
            failures.append(f"{args} did not finish within 6 s")
            continue
        problems = contract_problems(outcome, (0, 1, 2) if partly_usable else (1, 2))
        if problems:
            failures.append(f"{'; '.join(problems)}\n    {outcome}")
    if not partly_usable:
        assert _fingerprint(watched) == before, f"the unusable database was modified; {failures}"
        if neighbours is not None:
            assert sorted(os.listdir(target.parent)) == neighbours, "files appeared beside it"
    assert not failures, "\n".join(failures)


def test_a_zero_byte_database_file_is_set_up_as_a_new_database(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    cwd = sandbox(tmp_path)
    empty = tmp_path / "empty" / "queue.db"
    empty.parent.mkdir(mode=0o700)
    os.close(os.open(empty, os.O_CREAT | os.O_WRONLY, 0o600))
    env = {**cli.env, "QUEUECTL_DB": str(empty)}
    outcome = run(cli, "enqueue", "--command", "true", env=env, cwd=cwd)
    assert outcome.code == 0 and not contract_problems(outcome), str(outcome)
    assert db_state(str(empty))["jobs"] == {"pending": 1}
    assert integrity(empty) == "ok"


def test_a_read_only_database_fails_cleanly_or_works_but_never_half_writes(
        sqlite_cli: Cli, tmp_path: Path) -> None:
    """chmod 0400 (root may still write it, so success is allowed), then a read-only bind
    mount of its folder in a private mount namespace, where every write must fail."""
    cli = sqlite_cli
    cwd = sandbox(tmp_path)
    seed(cli, cwd)
    cli.db.chmod(0o400)
    checks: list[tuple[tuple[Arg, ...], tuple[str, ...]]] = [
        (("status",), ()), (("enqueue", "--command", "true"), ()),
        (("config", "set", "max-retries", "1"), ())]
    folder = str(cli.db.parent)
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0:
        bind = ("unshare", "-m", "sh", "-c", f'mount --bind -o ro "{folder}" "{folder}" && exec "$0" "$@"')
        checks += [(("enqueue", "--command", "true"), bind), (("status",), bind),
                   (("worker", "start", "--stop-when-empty"), bind)]
    failures = []
    for args, prefix in checks:
        before = db_state(cli.url)
        outcome = run(cli, *args, cwd=cwd, prefix=prefix, timeout=20)
        problems = contract_problems(outcome)
        if prefix and args[0] != "status" and outcome.code == 0:
            problems.append("a write to a read-only file system succeeded")
        if outcome.code != 0 and db_state(cli.url) != before:
            problems.append("the database changed")
        if problems:
            failures.append(f"{'; '.join(problems)} (read-only mount: {bool(prefix)})\n    {outcome}")
    assert not failures, "\n".join(failures)
    assert integrity(cli.db) == "ok"


# --- promise 9: hypothesis ---------------------------------------------------------------------

LONG_RUN = "QUEUECTL_FUZZ_EXAMPLES" in os.environ
FUZZ_EXAMPLES = int(os.environ.get("QUEUECTL_FUZZ_EXAMPLES", "60"))
settings.register_profile(
    "queuectl-fuzz", max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=not LONG_RUN,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much],
    # Each example is a process; shrinking a failure could take minutes, so the default
    # run reports the failing example as found and the long run shrinks it.
    phases=list(Phase) if LONG_RUN else [Phase.explicit, Phase.reuse, Phase.generate])
FUZZ = settings.get_profile("queuectl-fuzz")

SUBCOMMANDS = [[], ["enqueue"], ["list"], ["show"], ["logs"], ["status"], ["worker"],
               ["worker", "stop"], ["worker", "list"], ["dlq"], ["dlq", "list"], ["dlq", "retry"],
               ["config"], ["config", "get"], ["config", "set"]]
OPTIONS = ["--json", "--state", "--limit", "--file", "-f", "--command", "-c", "--id", "--priority",
           "--max-retries", "--timeout", "--run-at", "--delay", "--stderr", "--attempt", "--all",
           "--host", "--help", "-h", "--version", "--count", "-n", "--poll-interval", "--", "-",
           "--bogus", "-x", "--json=1", "--limit=5", "--file=-"]
VALUES = ["known", "0", "-1", "1", "2", str(2**64), str(-2**63 - 1), str(2**63), "nan", "inf",
          "-inf", "1e400", "0.0", "5m", "1h", "pending", "dead", "PENDING", "max-retries",
          "poll-interval", "lease-timeout", "max-log-bytes", "backoff-base", "1MiB",
          "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z", "../../etc/x", "/etc/passwd", ".", "",
          " ", "$(touch PWN)", "'; DROP TABLE jobs;--", '{"command": "true"}',
          '{"command": "true", "id": "known"}', "[", "\u2025", "\uff0f", "\ufeff"]
GLOBAL_PREFIXES = [[], [], [], ["--db", "other.db"], ["--db", "mysql://x/y"], ["--help"],
                   ["--db", "sqlite:///dev/null/x.db"]]

argv_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20)
argv_bytes = st.binary(max_size=12).filter(lambda b: b"\0" not in b)
tokens = st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES), argv_text, argv_bytes)
argvs = st.builds(lambda prefix, sub, rest: [*prefix, *sub, *rest], st.sampled_from(GLOBAL_PREFIXES),
                  st.sampled_from(SUBCOMMANDS), st.lists(tokens, max_size=6))


#: Each example is a 0.3 s process on PostgreSQL, and parsing is the same code on both
#: backends: the default run tries this many examples there (the long run, all of them).
PG_SHORT_RUN_EXAMPLES = 12
_pg_examples: Counter[str] = Counter()


def _fuzz_backend(cli: Cli, test: str) -> bool:
    """Whether to run this example: always on SQLite; on PostgreSQL the first few."""
    if cli.is_sqlite or LONG_RUN:
        return True
    _pg_examples[test] += 1
    return _pg_examples[test] <= PG_SHORT_RUN_EXAMPLES


def _seed_known(cli: Cli, cwd: Path) -> None:
    if not db_state(cli.env["QUEUECTL_DB"]):
        assert run(cli, "enqueue", job(id="known", command="true"), cwd=cwd).code == 0


@given(argv=argvs, stdin=st.binary(max_size=64))
@FUZZ
def test_generated_argv_lists_never_crash_and_failures_change_nothing(
        cli: Cli, tmp_path: Path, argv: list[Arg], stdin: bytes) -> None:
    if not _fuzz_backend(cli, "1"):
        return
    # `worker start` would run generated commands as jobs; nothing else may run anything.
    assume("start" not in [_as_text(a) for a in argv])
    cwd = sandbox(tmp_path)
    _seed_known(cli, cwd)
    url = cli.env["QUEUECTL_DB"]
    before = db_state(url)
    outcome = run(cli, *argv, input=stdin, cwd=cwd, timeout=30)
    problems = contract_problems(outcome)
    if outcome.code != 0 and db_state(url) != before:
        problems.append("the database changed")
    assert not problems, f"{problems}\n{outcome}"
    assert not list(cwd.glob("PWN*"))


EDGE_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -2**63, -2**63 - 1, 2**64, 10**30]
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(EDGE_INTS),
                         st.floats(), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
run_at_values = st.one_of(
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(lambda d: d.isoformat()),
    st.sampled_from(["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999-14:00",
                     "0001-01-01T00:00:00+14:00", "2030-02-30T00:00:00Z", "2030-01-01T24:00:00Z",
                     "+10000-01-01", "2030-01-01T00:00:00+99:00", "2030-W01-1", "20300101T000000Z"]),
    json_values)
field_values = {
    "id": st.one_of(st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,130}", fullmatch=True),
                    st.text(max_size=20), json_values),
    "command": st.one_of(st.text(min_size=1, max_size=40), json_values),
    "priority": st.one_of(st.integers(), st.sampled_from(EDGE_INTS), json_values),
    "max_retries": st.one_of(st.integers(min_value=-2, max_value=2**64), json_values),
    "timeout": st.one_of(st.floats(), st.integers(), json_values),
    "run_at": run_at_values,
    "colour": json_values,
}
jobs_docs = st.fixed_dictionaries({}, optional=field_values)
#: Mostly valid jobs at the edges of each field's range, so the success path is fuzzed too.
plausible_jobs = st.fixed_dictionaries({"command": st.text(min_size=1, max_size=40)}, optional={
    "id": st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}", fullmatch=True),
    "priority": st.integers(-2**63, 2**63 - 1), "max_retries": st.integers(0, 2**63 - 1),
    "timeout": st.floats(min_value=1e-3, max_value=1e9), "run_at": run_at_values})
documents = st.one_of(jobs_docs, plausible_jobs, plausible_jobs, json_values)


@st.composite
def serialised(draw: st.DrawFn) -> tuple[str, bytes]:
    """(how it is given: argv, stdin or file; the bytes)."""
    docs = draw(st.lists(documents, min_size=1, max_size=3))
    text = "\n".join(json.dumps(d, ensure_ascii=draw(st.booleans())) for d in docs)
    mutation = draw(st.sampled_from(["none", "none", "truncate", "duplicate", "bom", "array"]))
    if mutation == "truncate":
        text = text[:draw(st.integers(0, max(0, len(text) - 1)))]
    elif mutation == "duplicate" and text.startswith("{") and len(text) > 2:
        text = '{"command": "echo dup", ' + text[1:]
    elif mutation == "bom":
        text = "\ufeff" + text
    elif mutation == "array":
        text = "[" + ",".join(json.dumps(d) for d in docs) + "]"
    how = draw(st.sampled_from(["argv", "stdin", "file"]) if len(docs) == 1 and mutation != "array"
               else st.sampled_from(["stdin", "file"]))
    return how, text.encode("utf-8", "surrogatepass")


@given(document=serialised())
@FUZZ
def test_generated_json_documents_are_enqueued_whole_or_rejected_cleanly(
        cli: Cli, tmp_path: Path, document: tuple[str, bytes]) -> None:
    if not _fuzz_backend(cli, "2"):
        return
    how, data = document
    cwd = sandbox(tmp_path)
    _seed_known(cli, cwd)
    url = cli.env["QUEUECTL_DB"]
    before = db_state(url)
    if how == "argv":
        outcome = run(cli, "enqueue", data, cwd=cwd)
    elif how == "stdin":
        outcome = run(cli, "enqueue", "--file", "-", input=data, cwd=cwd)
    else:
        path = tmp_path / "doc.jsonl"
        path.write_bytes(data)
        outcome = run(cli, "enqueue", "--file", str(path), cwd=cwd)
    after = db_state(url)
    problems = contract_problems(outcome)
    if outcome.code != 0 and after != before:
        problems.append("the database changed")
    if outcome.code == 0 and total_jobs(after) - total_jobs(before) != len(outcome.out.split()):
        problems.append(f"printed {len(outcome.out.split())} ids but added "
                        f"{total_jobs(after) - total_jobs(before)} jobs")
    assert not problems, f"{problems}\n{outcome}"


# --- promise 10: owner-only files --------------------------------------------------------------

@pytest.fixture
def fresh(cli: Cli, tmp_path: Path) -> Iterator[Cli]:
    """``cli`` with a data folder that does not exist yet, so queuectl creates it."""
    if not cli.is_sqlite:
        yield cli
        return
    other = Cli(str(tmp_path / "private" / "queue.db"), tmp_path)
    yield other
    other.cleanup()


def _modes(folder: Path) -> dict[str, tuple[str, int]]:
    found = {".": ("dir", folder.stat().st_mode & 0o777)}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = path.lstat()
            kind = "dir" if stat.S_ISDIR(info.st_mode) else "fifo" if stat.S_ISFIFO(info.st_mode) \
                else "file" if stat.S_ISREG(info.st_mode) else "other"
            found[str(path.relative_to(folder))] = (kind, info.st_mode & 0o777)
    return found


def _wait_gone(pid: int, timeout: float = 15) -> None:
    def gone() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
        except OSError:
            return True
    wait_until(gone, timeout, 0.05, message=f"detached worker {pid} to exit")


def test_every_file_queuectl_creates_is_0600_in_0700_folders_even_under_umask_022(
        fresh: Cli, tmp_path: Path) -> None:
    cli = fresh
    cwd = sandbox(tmp_path)
    assert not (cli.db.parent if cli.is_sqlite else tmp_path / "xdg").exists()
    # The job looks at -wal and -shm while the worker holds the database open.
    probe = ('for f in "$QUEUECTL_DB" "$QUEUECTL_DB-wal" "$QUEUECTL_DB-shm"; do stat -c "%a %n" "$f"; '
             'done; echo to-stderr >&2') if cli.is_sqlite else "echo to-stdout; echo to-stderr >&2"
    assert run(cli, "enqueue", "--id", "perm", "--command", probe, cwd=cwd, umask=0o022).code == 0
    worker = run(cli, "worker", "start", "--stop-when-empty", cwd=cwd, umask=0o022)
    assert worker.code == 0, str(worker)
    # A job keeps the detached worker busy past its registration (it exits when done).
    assert run(cli, "enqueue", "--id", "hold", "--command", "sleep 0.3", cwd=cwd).code == 0
    detached = run(cli, "worker", "start", "--detach", "--stop-when-empty", cwd=cwd, umask=0o022)
    assert detached.code == 0, str(detached)
    _wait_gone(int(detached.out.split()[0]))
    data = cli.data_dir
    if cli.is_sqlite:
        lines = (data / "logs" / "perm" / "1.stdout").read_text().splitlines()
        assert lines == [f"600 {cli.db}", f"600 {cli.db}-wal", f"600 {cli.db}-shm"], lines
    modes = _modes(data)
    required = {".", "logs", "logs/perm", "logs/perm/1.stdout", "logs/perm/1.stderr",
                cli.worker_log.name} | ({cli.db.name} if cli.is_sqlite else set())
    assert required <= set(modes), (sorted(required - set(modes)), modes)
    wrong = {name: f"{kind} {mode:o}" for name, (kind, mode) in modes.items()
             if mode != (0o700 if kind == "dir" else 0o600)}
    assert not wrong, f"not owner-only under umask 022 in {data} (folders 700, files 600): {wrong}"


REFUSALS = ["database file group-writable", "database file other-writable",
            "database file owned by another user", "data folder writable by others",
            "log folder group-writable", "log folder owned by another user"]


@pytest.mark.parametrize("setup", REFUSALS)
def test_a_database_or_log_folder_others_can_write_or_own_is_refused_with_exit_2(
        sqlite_cli: Cli, tmp_path: Path, setup: str) -> None:
    cli = sqlite_cli
    cwd = sandbox(tmp_path)
    seed(cli, cwd)
    logs = cli.data_dir / "logs"
    logs.mkdir(mode=0o700)
    target, change = {
        "database file group-writable": (cli.db, lambda p: p.chmod(0o660)),
        "database file other-writable": (cli.db, lambda p: p.chmod(0o606)),
        "database file owned by another user": (cli.db, lambda p: os.chown(p, 65534, 65534)),
        "data folder writable by others": (cli.data_dir, lambda p: p.chmod(0o777)),
        "log folder group-writable": (logs, lambda p: p.chmod(0o770)),
        "log folder owned by another user": (logs, lambda p: os.chown(p, 65534, 65534)),
    }[setup]
    original_mode = target.stat().st_mode & 0o777
    change(target)
    try:
        before = db_state(cli.url)
        args = ("worker", "start", "--stop-when-empty") if target == logs else ("enqueue", "--command", "true")
        outcome = run(cli, *args, cwd=cwd, timeout=20)
        assert not contract_problems(outcome, (2,)), f"{contract_problems(outcome, (2,))}\n{outcome}"
        assert target.name in outcome.err, outcome.err
        assert db_state(cli.url) == before
    finally:
        os.chown(target, 0, 0)
        target.chmod(original_mode)


# --- promise 10: hostile job ids -----------------------------------------------------------------

def hostile_ids(tmp_path: Path) -> list[Arg]:
    dots = ["..", ".", "%2e%2e", "%2E%2E", "%252e%252e", ".%2e", "\uff0e\uff0e", "\u2025",
            "\u2024\u2024", "\u2026"]
    separators = ["/", "\\", "%2f", "%2F", "%5c", "%255c", "\uff0f", "\u2215", "\u2044", "\u29f8",
                  "\uff3c", "\ufe68"]
    ids: list[Arg] = [f"{d}{s}{d}{s}etc{s}x" for d in dots for s in separators]
    ids += [
        "/etc/x", "/etc/passwd", "//etc/x", f"/tmp/queuectl-hostile-{uuid.uuid4().hex}",
        str(tmp_path / "abs-escape"), "/proc/self/cwd/x", "~/x", "~root/x", "$HOME/x",
        "file:///etc/x", "C:\\Windows\\x", "\\\\server\\share\\x", "../../../../../../../../etc/x",
        ".", "..", "...", "./x", ".hidden", "./", "../", "..\\", "x/..", "x/../..", "a/b", "a\\b",
        "%00", "%0a", "%2e", "..%00/x", "..%c0%af", "..%ef%bc%8f", "%2e%2e%2f", "%2e%2e%2fetc%2fx",
        "a\nb", "\n", "x\n", "\r", "a\rb", "a\tb", "\x1b[31mred", "\x7f", "\x01", " ", "a b",
        " x", "x ", "", "x" * 129, "x" * 10240, "../" * 3414, "a" * 128 + "/",
        "\u202etxt.exe", "x\u200b", "\ufeffx", "\uff58", "j\u043eb", "x\u2028y", "x\u0338",
        "\u2215etc\u2215x", "\uff0e", "\u2024", "..\u2044..\u2044x",
        "$(touch PWN)", "`touch PWN`", "'; DROP TABLE jobs;--", "x;rm -rf x", "x|y", "x&y",
        "*", "?", "[a]", "{a,b}", "x:y", 'x"y', "x'y", "<x>", "x%s", "x%n", "{0}",
        "a\0b", "\0", "../\0/etc/x", "x\0",
        b"\xff", b"..\xc0\xaf..\xc0\xafetc", b"\xc0\xae\xc0\xae/x", b"\xed\xa0\x80", b"x\x80",
        b"\xe0\x80\xaf", b"..\xef\xbc\x8f..\xef\xbc\x8fx",
    ]
    unique = list(dict.fromkeys(ids))
    assert len(unique) >= 200, len(unique)
    return unique


def _id_calls(job_id: Arg) -> list[tuple[list[Arg], frozenset[int]]]:
    if isinstance(job_id, bytes):
        document: Arg = b'{"id": "' + job_id + b'", "command": "true"}'
    else:
        document = json.dumps({"id": job_id, "command": "true"})
    calls: list[tuple[list[Arg], frozenset[int]]] = [(["enqueue", document], frozenset({2}))]
    if "\0" not in _as_text(job_id):  # exec cannot pass a NUL
        calls += [(["enqueue", "--command", "true", "--id", job_id], frozenset({2}))]
        calls += [([*command, job_id], frozenset({1, 2}))
                  for command in (["show"], ["logs"], ["dlq", "retry"])]
    return calls


def _tree(root: Path) -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.join(folder, name))
    return found


def _escape_targets(ids: Iterable[Arg], bases: Iterable[Path], inside: Path) -> dict[str, Any]:
    """Paths outside ``inside`` that an id could name if it were used as a path."""
    targets = {}
    for job_id in ids:
        text = _as_text(job_id)
        for variant in {text, text.replace("\\", "/"), unquote(text), unquote(unquote(text)),
                        os.path.expanduser(text)}:
            if "\0" in variant or ("/" not in variant and "\\" not in variant):
                continue
            for base in bases:
                path = os.path.normpath(os.path.join(base, variant))
                if not path.startswith(str(inside) + os.sep) and len(path) < 4000:
                    targets[path] = _stat(path)
    return targets


def _stat(path: str) -> Any:
    """A file's identity; for a folder only that it is one (other processes add to /tmp)."""
    try:
        info = os.lstat(path)
    except (OSError, ValueError):
        return None
    if stat.S_ISDIR(info.st_mode):
        return "dir"
    return (info.st_mode, info.st_size, info.st_mtime_ns)


def test_hostile_job_ids_are_rejected_by_every_command_and_create_no_file_outside_the_data_folder(
        cli: Cli, tmp_path: Path) -> None:
    env = dict(cli.env)
    if cli.is_sqlite:
        data = tmp_path / "srv" / "data"  # the SQLite file's folder
        env["QUEUECTL_DB"] = str(data / "queue.db")
    else:
        data = tmp_path / "xdg" / "queuectl"  # the queue's own folder is made in it
    cwd = tmp_path / "srv" / "a" / "b" / "cwd"
    cwd.mkdir(parents=True)
    victim = run(cli, "enqueue", job(id="victim", command="echo victim"), env=env, cwd=cwd)
    assert victim.code == 0, str(victim)
    ids = hostile_ids(tmp_path)
    targets = _escape_targets(ids, [cwd, data, data / "logs", data / "logs" / "victim"], tmp_path)
    tree = _tree(tmp_path)
    state = db_state(env["QUEUECTL_DB"])
    calls = [(job_id, argv, allowed) for job_id in ids for argv, allowed in _id_calls(job_id)]
    assert len(calls) > 1000
    report = drive(env, [(argv, None) for _, argv, _ in calls], cwd=cwd, state=False,
                   parts=1 if cli.is_sqlite else 2)
    failures = []
    for (job_id, argv, allowed), (code, _out, err, _) in zip(calls, report["runs"]):
        problems = contract_problems((code, err), allowed)
        if problems:
            failures.append(f"{argv[:-1]} {job_id[:60]!r}: {'; '.join(problems)} -- {err[:200]!r}")
    # The driver is main() itself; a sample through the executable must answer the same.
    if cli.is_sqlite:
        sample = {"\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc\uff0fx", b"..\xc0\xaf..\xc0\xafetc"}
        for (job_id, argv, _), (code, _out, err, _) in zip(calls, report["runs"]):
            if job_id in sample:
                outcome = run(cli, *argv, env=env, cwd=cwd)
                assert (outcome.code, outcome.err) == (code, err), (argv, outcome, code, err)
    assert db_state(env["QUEUECTL_DB"]) == state
    # Only a worker turns an id into a path: run one over what is in the queue.
    worker = run(cli, "worker", "start", "--stop-when-empty", env=env, cwd=cwd)
    assert worker.code == 0, str(worker)
    logs = (data if cli.is_sqlite else cli.data_dir) / "logs"
    assert (logs / "victim" / "1.stdout").read_text() == "victim\n"
    created = sorted(p for p in _tree(tmp_path) - tree  # the data folder, its contents and parents
                     if not (p == str(data) or p.startswith(str(data) + os.sep)
                             or str(data).startswith(p + os.sep)))
    assert created == [], f"files created outside the data folder {data}: {created}"
    changed = {path: (before, _stat(path)) for path, before in targets.items() if _stat(path) != before}
    assert changed == {}, f"paths outside {tmp_path} changed: {changed}"
    assert not failures, f"{len(failures)} of {len(calls)} calls broke the contract:\n" + "\n".join(
        failures[:60])


# --- promise 10: shell and SQL metacharacters ---------------------------------------------------

METACHARACTERS = ["$(touch PWN1)", "`touch PWN2`", "'; DROP TABLE jobs;--", '"; DROP TABLE jobs; --',
                  "x'); DELETE FROM jobs; --", "$(touch PWN3); `touch PWN4`", "%(now)s %s ? :id $1",
                  "{0} {command} {{", "\\'; touch PWN5 #", "; touch PWN6", "&& touch PWN7",
                  "| touch PWN8", "\ntouch PWN9\n", "'$(touch PWN10)'", "\"$(touch PWN11)\""]


def _pwn(root: Path) -> list[str]:
    return sorted(p for p in _tree(root) if os.path.basename(p).startswith("PWN"))


def test_shell_and_sql_metacharacters_are_stored_literally_and_never_run_by_queuectl(
        cli: Cli, tmp_path: Path) -> None:
    cwd = sandbox(tmp_path)
    url = cli.env["QUEUECTL_DB"]
    batch = "".join(job(id=f"m{n}", command=value) + "\n" for n, value in enumerate(METACHARACTERS))
    assert run(cli, "enqueue", "--file", "-", input=batch, cwd=cwd).code == 0
    flagged = run(cli, "enqueue", "--command", METACHARACTERS[0], "--id", "flag", cwd=cwd)
    assert flagged.code == 0, str(flagged)
    listed = run(cli, "list", "--json", cwd=cwd)
    assert listed.code == 0, str(listed)
    commands = {j["id"]: j["command"] for j in json.loads(listed.out)}
    expected = {f"m{n}": value for n, value in enumerate(METACHARACTERS)} | {"flag": METACHARACTERS[0]}
    assert commands == expected
    shown = run(cli, "show", "m2", "--json", cwd=cwd)
    assert json.loads(shown.out)["command"] == METACHARACTERS[2], str(shown)
    for args in (("list",), ("status",)):
        outcome = run(cli, *args, cwd=cwd)
        assert outcome.code == 0 and not contract_problems(outcome), str(outcome)
    # Every other field that takes text: rejected, never interpreted.
    calls: list[tuple[list[Arg], frozenset[int]]] = []
    for value in METACHARACTERS:
        calls += [
            (["enqueue", job(command="true", id=value)], frozenset({2})),
            (["enqueue", job(command="true", run_at=value)], frozenset({2})),
            (["enqueue", "--command", "true", "--id", value], frozenset({2})),
            (["enqueue", "--command", "true", "--run-at", value], frozenset({2})),
            (["enqueue", "--command", "true", "--delay", value], frozenset({2})),
            (["enqueue", "--command", "true", "--timeout", value], frozenset({2})),
            (["show", value], frozenset({1, 2})), (["logs", value], frozenset({1, 2})),
            (["dlq", "retry", value], frozenset({1, 2})), (["list", "--state", value], frozenset({2})),
            (["config", "set", "max-retries", value], frozenset({2})),
            (["config", "set", value, "1"], frozenset({2})), (["config", "get", value], frozenset({2})),
            (["worker", "stop", "--host", value], frozenset({0})),
        ]
    before = db_state(url)
    report = drive(cli.env, [(argv, None) for argv, _ in calls], cwd=cwd, state=False)
    failures = [f"{argv}: {problems}" for (argv, allowed), (code, _o, err, _s) in zip(calls, report["runs"])
                if (problems := contract_problems((code, err), allowed))]
    assert not failures, "\n".join(failures)
    assert db_state(url) == before
    assert before["jobs"] == {"pending": len(expected)}
    assert _pwn(tmp_path) == []


def test_a_worker_runs_a_quoted_command_substitution_as_literal_text(cli: Cli, tmp_path: Path) -> None:
    cwd = sandbox(tmp_path)
    jobs = [("literal", "echo '$(touch PWN)'"), ("ticks", "echo '`touch PWN2`'"), ("control", "touch RAN")]
    batch = "".join(job(id=job_id, command=command) + "\n" for job_id, command in jobs)
    assert run(cli, "enqueue", "--file", "-", input=batch, cwd=cwd).code == 0
    for args in (("list",), ("show", "literal"), ("status",)):
        assert run(cli, *args, cwd=cwd).code == 0
    assert _pwn(tmp_path) == [] and not (cwd / "RAN").exists()
    worker = run(cli, "worker", "start", "--stop-when-empty", cwd=cwd)
    assert worker.code == 0, str(worker)
    assert (cwd / "RAN").exists()  # jobs run in the worker's folder: a PWN would appear here
    assert _pwn(tmp_path) == []
    assert run(cli, "logs", "literal", cwd=cwd).out == "$(touch PWN)\n"
    assert run(cli, "logs", "ticks", cwd=cwd).out == "`touch PWN2`\n"
