"""worker/spawn.py: glibc's posix_spawn through ctypes and the os.posix_spawn fallback
give the child exactly the same start."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl.worker import spawn


@pytest.fixture(params=["libc", "os.posix_spawn"])
def implementation(request: pytest.FixtureRequest,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "os.posix_spawn":
        monkeypatch.setattr(spawn, "_libc", None)
    yield request.param


def run(argv: list[str], env: spawn.Environment, extra: dict[str, str] | None = None,
        reset: tuple[signal.Signals, ...] = ()) -> tuple[int, bytes]:
    """Spawn, wait; return (exit status, stdout)."""
    out_r, out_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = spawn.posix_spawn(argv[0], argv, env, extra or {}, stdin=devnull, stdout=out_w,
                                stderr=out_w, reset_signals=reset)
    finally:
        os.close(out_w)
        os.close(devnull)
    with os.fdopen(out_r, "rb") as output:
        data = output.read()
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), data


def test_glibc_machines_take_the_path_that_releases_the_interpreter_lock() -> None:
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except ValueError:  # the C library does not know the name: not glibc
        glibc = None
    if not glibc:
        pytest.skip("not glibc: os.posix_spawn is the only path")
    assert spawn._libc is not None


def test_argv_and_environment_reach_the_child_literally(implementation: str,
                                                         tmp_path: Path) -> None:
    env = spawn.Environment({"KEEP": "a b", "MINE": "stale"}, per_job=("MINE",))
    code, out = run(["/usr/bin/env"], env, {"MINE": "é"})
    assert code == 0
    assert sorted(out.decode().splitlines()) == ["KEEP=a b", "MINE=é"]
    hostile = f"x$(touch {tmp_path}/PWN)`touch {tmp_path}/PWN`"
    code, out = run(["/bin/sh", "-c", 'printf "%s" "$0"', hostile], env)
    assert (code, out.decode()) == (0, hostile)
    assert not (tmp_path / "PWN").exists()


def test_the_child_leads_a_new_session_with_the_given_descriptors(implementation: str) -> None:
    env = spawn.Environment({"PATH": os.environ["PATH"]})
    # /proc/PID/stat: field 5 is the process group, field 6 the session.
    script = "cut -d' ' -f5,6 /proc/$$/stat; echo $$; readlink /proc/$$/fd/0; echo to-stderr >&2"
    code, out = run(["/bin/sh", "-c", script], env)
    assert code == 0
    ids, pid, stdin, stderr = out.decode().splitlines()
    pgid, sid = ids.split()
    assert sid == pgid == pid
    assert (stdin, stderr) == (os.devnull, "to-stderr")


def test_listed_signals_are_reset_to_their_default(implementation: str) -> None:
    env = spawn.Environment({"PATH": os.environ["PATH"]})
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python's own setting
    code, out = run(["/bin/sh", "-c", "yes | head -n 1"], env, reset=(signal.SIGPIPE,))
    assert (code, out) == (0, b"y\n")  # an ignored SIGPIPE would add "Broken pipe"


def test_a_missing_program_and_a_nul_byte_raise_in_the_parent(implementation: str) -> None:
    env = spawn.Environment({})
    with pytest.raises(OSError) as missing:
        run(["/no/such/shell", "-c", "true"], env)
    assert missing.value.errno == errno.ENOENT
    with pytest.raises(ValueError):
        run(["/bin/sh", "-c", "echo a\0b"], env)
    with pytest.raises(ValueError):
        run(["/bin/sh", "-c", "true"], env, {"X": "a\0b"})
