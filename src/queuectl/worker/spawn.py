"""Start a job's shell with posix_spawn, letting the supervisor's other threads run
while the child starts.

``os.posix_spawn`` holds the interpreter lock for the whole call, and the call lasts
until the child has exec'd (glibc spawns with ``CLONE_VFORK``): a quarter to half a
millisecond per job in which the supervisor's loop can neither reap, read output nor
commit. Profiled under a drain of short jobs, more than half of the samples that held
the lock were inside that call. A call through ctypes releases the lock, so on glibc
the same libc function is called that way; anywhere else (or if libc cannot be
loaded) ``os.posix_spawn`` does the same job with the lock held.

The child gets exactly what ``os.posix_spawn`` would give it: the program and argv,
the environment given, three descriptors dup'd onto 0, 1 and 2 (every other
descriptor of ours is close-on-exec), a new session (so a new process group), and
the listed signals reset to their default disposition.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Collection, Mapping, Sequence

#: glibc's flag values (spawn.h); only used where glibc is the C library.
_SETSIGDEF = 0x04
_SETSID = 0x80


class Environment:
    """The environment every job starts from, encoded once for all the spawns that use
    it. ``per_job`` names the variables each spawn sets itself (dropped from ``env``)."""

    def __init__(self, env: Mapping[str, str], per_job: Collection[str] = ()) -> None:
        self.mapping = {key: value for key, value in env.items() if key not in per_job}
        self.entries = [_encoded(f"{key}={value}") for key, value in self.mapping.items()]


def posix_spawn(path: str, argv: Sequence[str], env: Environment, extra: Mapping[str, str], *,
                stdin: int, stdout: int, stderr: int,
                reset_signals: Sequence[signal.Signals]) -> int:
    """Spawn ``path`` with ``argv`` in a new session; ``extra`` (among ``env``'s
    ``per_job`` names) is added to ``env``. Returns the child's pid; raises OSError if
    it could not start, ValueError for a NUL byte in an argument or variable."""
    if _libc is None:
        merged = {**env.mapping, **extra}
        return os.posix_spawn(path, list(argv), merged, file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ], setsid=True, setsigdef=reset_signals)
    return _libc.spawn(path, argv, env, extra, (stdin, stdout, stderr), reset_signals)


class _Libc:
    """glibc's posix_spawn and its helpers, called through ctypes (which releases the
    interpreter lock for the duration of each call)."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        libc = ctypes.CDLL(None)  # the C library this process runs on
        pointer = ctypes.c_void_p
        self._init_actions = libc.posix_spawn_file_actions_init
        self._add_dup2 = libc.posix_spawn_file_actions_adddup2
        self._destroy_actions = libc.posix_spawn_file_actions_destroy
        self._init_attr = libc.posix_spawnattr_init
        self._set_flags = libc.posix_spawnattr_setflags
        self._set_sigdefault = libc.posix_spawnattr_setsigdefault
        self._destroy_attr = libc.posix_spawnattr_destroy
        self._sigemptyset = libc.sigemptyset
        self._sigaddset = libc.sigaddset
        self._spawn = libc.posix_spawn
        for function in (self._init_actions, self._destroy_actions, self._init_attr,
                         self._destroy_attr, self._sigemptyset):
            function.argtypes = [pointer]
        self._add_dup2.argtypes = [pointer, ctypes.c_int, ctypes.c_int]
        self._set_flags.argtypes = [pointer, ctypes.c_short]
        self._set_sigdefault.argtypes = [pointer, pointer]
        self._sigaddset.argtypes = [pointer, ctypes.c_int]
        self._spawn.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, pointer, pointer,
                                pointer, pointer]
        # The opaque glibc types, with room to spare (x86_64: 80, 336 and 128 bytes),
        # as 8-byte words so they are aligned like the structs they stand for.
        self._actions_type = ctypes.c_uint64 * 64
        self._attr_type = ctypes.c_uint64 * 128
        self._sigset_type = ctypes.c_uint64 * 32

    def spawn(self, path: str, argv: Sequence[str], env: Environment, extra: Mapping[str, str],
              descriptors: Sequence[int], reset_signals: Sequence[signal.Signals]) -> int:
        ctypes = self.ctypes
        args = [_encoded(arg) for arg in argv]
        entries = env.entries + [_encoded(f"{key}={value}") for key, value in extra.items()]
        c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
        c_envp = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
        actions, attr, sigset = self._actions_type(), self._attr_type(), self._sigset_type()
        pid = ctypes.c_int()
        _checked(self._init_actions(actions))
        try:
            for target, fd in enumerate(descriptors):
                _checked(self._add_dup2(actions, fd, target))
            _checked(self._init_attr(attr))
            try:
                self._sigemptyset(sigset)
                for signum in reset_signals:
                    self._sigaddset(sigset, int(signum))
                _checked(self._set_sigdefault(attr, sigset))
                _checked(self._set_flags(attr, _SETSIGDEF | _SETSID))
                _checked(self._spawn(ctypes.byref(pid), _encoded(path), actions, attr,
                                     c_argv, c_envp))
            finally:
                self._destroy_attr(attr)
        finally:
            self._destroy_actions(actions)
        return pid.value


def _encoded(text: str) -> bytes:
    data = os.fsencode(text)
    if b"\0" in data:  # a C string would silently end there
        raise ValueError("embedded null byte")
    return data


def _checked(error: int) -> None:
    """The posix_spawn family returns an error number instead of setting errno."""
    if error:
        raise OSError(error, os.strerror(error))


def _load() -> _Libc | None:
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return _Libc()
    except (ImportError, OSError, ValueError, AttributeError):
        return None


_libc = _load()
