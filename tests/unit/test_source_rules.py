"""Rules the source of ``src/queuectl`` must keep (promise 10, Security), checked with ``ast``.

Shell rule
    No ``shell=`` argument other than ``shell=False``; no ``os.system``, ``os.popen``,
    ``os.exec*``, ``os.spawn*``, ``os.posix_spawn*``, ``pty.spawn`` or
    ``asyncio.create_subprocess_*`` anywhere. The ``subprocess`` module is imported
    only by ``worker/runner.py`` (which runs a job as ``["/bin/sh", "-c", COMMAND]``,
    the job's own and only shell) and ``worker/detach.py`` (which starts
    ``[sys.executable, "-m", "queuectl", ...]``); there, every subprocess call takes
    its program as a list display, never as one string. ``worker/spawn.py`` alone may
    call ``os.posix_spawn`` and import ``ctypes``, and from libc only the posix_spawn
    and sigset functions; the runner's one call into it takes a list display too.

SQL rule
    In ``store/**/*.py`` every string built by formatting -- an f-string, ``str % x``,
    ``str.format(...)``, ``+``/``+=`` on a string -- whose literal text looks like SQL
    may only interpolate *safe expressions*, and the SQL given to ``execute``,
    ``executemany``, ``executescript`` and ``copy`` must itself be a safe expression
    (values always travel separately, as parameters). An expression is safe when it is:

    1. a literal (``"?"``, ``0``);
    2. an ALL_CAPS name whose module-level definition (followed through
       ``from .module import NAME``) is itself safe, and which no function rebinds
       (``JOB_COLUMNS``, ``SQL_CLAIM``);
    3. a local variable all of whose assignments in its function are safe
       (``marks = ",".join("?" * len(chunk))``, ``sql = f"SELECT {JOB_COLUMNS} ..."``);
       never a function parameter;
    4. a name bound by a comprehension over a safe iterable, a method call on a safe
       value with safe arguments, ``+``/``*``/``%`` of safe operands, or a generator
       or comprehension of safe parts (``', '.join('j.' + c.strip() for c in
       JOB_COLUMNS.split(','))``);
    5. ``int(...)`` or ``len(...)`` of anything: an integer cannot carry SQL;
    6. a subscript of a dict/list/tuple display whose values are all safe -- the result
       is one of those values whatever the key (``{"stdout": "stdout_tail", ...}[stream]``);
    7. psycopg's composition ``sql.SQL(<safe>).format(sql.Identifier(x), ...)``, where
       every argument is ``sql.Identifier``/``sql.Literal``/``sql.Placeholder`` or safe.

    Anything else (an attribute of an object, a parameter, a call of an arbitrary
    function) is unsafe unless listed in ``ALLOWED`` with the reason it cannot carry
    user data; an ``ALLOWED`` entry that no longer occurs fails too, so the list
    stays exact. "Looks like SQL" means an upper-case SQL keyword (SELECT, INSERT,
    UPDATE, DELETE, PRAGMA, ...) or a lower-case ``select … from``, ``insert into``,
    ``update … set``, ``delete from``, ``pragma``, ``drop table``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "queuectl"
STORE = PACKAGE / "store"

SUBPROCESS_MODULES = {"worker/runner.py", "worker/detach.py"}
#: The job runner spawns through worker/spawn.py (os.posix_spawn, or glibc's through
#: ctypes), and nothing else does.
POSIX_SPAWN_MODULE = "worker/spawn.py"
#: What spawn.py may take from libc through ctypes.
LIBC_FUNCTIONS = re.compile(r"^(posix_spawn\w*|sigemptyset|sigaddset)$")
FORBIDDEN_OS = re.compile(r"^(system|popen|exec\w*|spawn\w*|posix_spawn\w*|fork\w*)$")

SQL_UPPER = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|CREATE|DROP|ALTER|WHERE|VALUES|"
                       r"RETURNING|LISTEN|NOTIFY|UNLISTEN|COPY|BEGIN|COMMIT|ROLLBACK|TRUNCATE|"
                       r"LIMIT|ORDER BY|GROUP BY|JOIN|SET)\b")
SQL_LOWER = re.compile(r"\bselect\b.*\bfrom\b|\binsert\s+into\b|\bupdate\b.*\bset\b|"
                       r"\bdelete\s+from\b|\bpragma\b|\bdrop\s+table\b", re.IGNORECASE | re.DOTALL)
EXECUTORS = {"execute", "executemany", "executescript", "copy"}
PSYCOPG_SAFE_PARTS = {"Identifier", "Literal", "Placeholder"}
INTEGER_CALLS = {"int", "len"}
CONSTANT_NAME = re.compile(r"^_?[A-Z][A-Z0-9_]*$")

#: (module, function, expression source) -> why it cannot carry user data.
ALLOWED = {
    ("store/sqlite.py", "_migrate", "migration.version"):
        "PRAGMA takes no parameters; Migration.version is int(...) of a packaged migration "
        "file's name (store/migrations/__init__.py), checked below to be an int",
    ("store/sqlite.py", "_migrate", "statement"):
        "a statement of a packaged migration file (store/migrations/sqlite/*.sql)",
    ("store/postgres.py", "_migrate", "migration.sql.encode()"):
        "a packaged migration file (store/migrations/postgres/*.sql), run as one script",
}


def source_files() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20, f"the scan found only {len(files)} modules under {PACKAGE}"
    return files


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for Name/Attribute chains, else ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


# --- the shell rule -----------------------------------------------------------------

def shell_violations(path: Path) -> Iterator[str]:
    return shell_violations_in(relative(path), parse(path))


def shell_violations_in(name: str, tree: ast.Module) -> Iterator[str]:
    os_aliases = {"os"}
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "os" and alias.asname:
                    os_aliases.add(alias.asname)
                if alias.name.split(".")[0] == "subprocess" and name not in SUBPROCESS_MODULES:
                    yield f"{where}: imports subprocess"
                if alias.name == "pty":
                    yield f"{where}: imports pty"
                if alias.name.split(".")[0] == "ctypes" and name != POSIX_SPAWN_MODULE:
                    yield f"{where}: imports ctypes"
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] == "subprocess" and name not in SUBPROCESS_MODULES:
                yield f"{where}: imports from subprocess"
            if module.split(".")[0] == "ctypes" and name != POSIX_SPAWN_MODULE:
                yield f"{where}: imports from ctypes"
            for alias in node.names:
                if module == "os" and FORBIDDEN_OS.match(alias.name):
                    yield f"{where}: imports os.{alias.name}"
                if module == "pty" or (module == "asyncio" and "subprocess" in alias.name):
                    yield f"{where}: imports {module}.{alias.name}"
        elif isinstance(node, ast.Attribute):
            if dotted(node.value) == "libc" and not LIBC_FUNCTIONS.match(node.attr):
                yield f"{where}: uses libc.{node.attr}"
        elif isinstance(node, ast.Call):
            func = dotted(node.func)
            head, _, attr = func.rpartition(".")
            if head in os_aliases and FORBIDDEN_OS.match(attr):
                if attr == "posix_spawn" and name == POSIX_SPAWN_MODULE:
                    pass  # it passes on the runner's argv, whose shape is checked below
                else:
                    yield f"{where}: calls {func}"
            if func == "getattr" and node.args and dotted(node.args[0]) == "libc":
                yield f"{where}: looks up a libc function by a computed name"
            if func in ("pty.spawn", "platform.popen") or func.startswith("asyncio.create_subprocess"):
                yield f"{where}: calls {func}"
            if func in ("__import__", "importlib.import_module") and node.args and isinstance(
                    node.args[0], ast.Constant) and str(node.args[0].value).split(".")[0] in (
                    "subprocess", "pty") and name not in SUBPROCESS_MODULES:
                yield f"{where}: imports {node.args[0].value} dynamically"
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant)
                                                   and keyword.value.value is False):
                    yield f"{where}: passes shell={ast.unparse(keyword.value)}"
            if func.startswith("subprocess.") and attr in ("Popen", "run", "call", "check_call",
                                                          "check_output", "getoutput",
                                                          "getstatusoutput"):
                if attr in ("getoutput", "getstatusoutput"):
                    yield f"{where}: calls {func}, which always uses a shell"
                elif not node.args or not isinstance(node.args[0], (ast.List, ast.Tuple)):
                    yield f"{where}: {func} is not given its program as a list display"


def test_no_module_runs_a_shell_or_a_program_except_the_job_runner_and_the_detacher() -> None:
    violations = [v for path in source_files() for v in shell_violations(path)]
    assert violations == [], "\n".join(violations)


@pytest.mark.parametrize("snippet", [
    "import os\nos.system('ls')",
    "import os as o\no.popen('ls')",
    "from os import system",
    "import os\nos.execvp('sh', ['sh'])",
    "import subprocess",
    "from subprocess import run",
    "import importlib\nimportlib.import_module('subprocess')",
    "import asyncio\nasyncio.create_subprocess_shell('ls')",
    "import pty",
    "import ctypes",
    "from ctypes import CDLL",
    "run(['ls'], shell=True)",
    "run(['ls'], shell=flag)",
])
def test_the_shell_rule_catches_each_forbidden_shape(snippet: str) -> None:
    assert list(shell_violations_in("cli/jobs.py", ast.parse(snippet))), snippet


@pytest.mark.parametrize("snippet", [
    "libc.system(b'ls')",
    "run = libc.execv",
    "getattr(libc, 'posix' + '_spawn')",
])
def test_the_spawn_module_takes_only_spawn_functions_from_libc(snippet: str) -> None:
    assert list(shell_violations_in(POSIX_SPAWN_MODULE, ast.parse(snippet))), snippet
    assert not list(shell_violations_in(POSIX_SPAWN_MODULE, ast.parse(
        "spawn = libc.posix_spawn\nlibc.sigaddset(s, 13)")))


def test_the_shell_rule_catches_a_program_given_as_one_string_even_in_the_runner() -> None:
    tree = ast.parse("import subprocess\nsubprocess.Popen('/bin/sh -c ' + command)")
    assert list(shell_violations_in("worker/runner.py", tree))
    assert not list(shell_violations_in("worker/runner.py", ast.parse(
        "import subprocess\nsubprocess.Popen(['/bin/sh', '-c', command], shell=False)")))


def test_the_job_runner_gives_the_command_to_sh_as_one_argument_and_detach_starts_queuectl() -> None:
    """Makes the shell rule non-vacuous: the two permitted callers are found and have
    exactly the expected shapes."""
    shapes = {}
    for name in sorted(SUBPROCESS_MODULES):
        calls = [node for node in ast.walk(parse(PACKAGE / name)) if isinstance(node, ast.Call)
                 and (dotted(node.func).startswith("subprocess.")
                      and dotted(node.func).rpartition(".")[2] in ("Popen", "run", "call",
                                                                  "check_call", "check_output")
                      or dotted(node.func) == "posix_spawn")]
        assert len(calls) == 1, (name, [ast.unparse(c) for c in calls])
        # subprocess takes argv first; posix_spawn takes the program, then argv.
        program = calls[0].args[1 if dotted(calls[0].func) == "posix_spawn" else 0]
        assert isinstance(program, ast.List), ast.unparse(program)
        shapes[name] = [ast.unparse(element) for element in program.elts]
    assert shapes["worker/runner.py"] == ["_SHELL", "'-c'", "spec.command"]
    from queuectl.worker import runner

    assert runner._SHELL == "/bin/sh"
    assert shapes["worker/detach.py"][:3] == ["sys.executable", "'-m'", "'queuectl'"]


# --- the SQL rule -------------------------------------------------------------------

def looks_like_sql(text: str) -> bool:
    return bool(SQL_UPPER.search(text) or SQL_LOWER.search(text))


def literal_text(node: ast.AST) -> str:
    """The literal parts of a string-building expression."""
    return " ".join(n.value for n in ast.walk(node)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str))


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    assignments: dict[str, list[ast.expr]]  # module-level NAME = value
    imports: dict[str, tuple[str, str]]  # NAME -> (module file, name there)
    rebound: set[str]  # names assigned inside some function


def module_file(current: Path, level: int, module: str | None) -> Path | None:
    base = current.parent
    for _ in range(level - 1):
        base = base.parent
    target = base.joinpath(*(module or "").split(".")) if module else base
    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


_MODULES: dict[Path, Module] = {}


def load_module(path: Path) -> Module:
    if path not in _MODULES:
        tree = parse(path)
        assignments: dict[str, list[ast.expr]] = {}
        imports: dict[str, tuple[str, str]] = {}
        for statement in tree.body:
            if isinstance(statement, ast.Assign):
                for target in statement.targets:
                    if isinstance(target, ast.Name):
                        assignments.setdefault(target.id, []).append(statement.value)
            elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) \
                    and statement.value is not None:
                assignments.setdefault(statement.target.id, []).append(statement.value)
            elif isinstance(statement, ast.ImportFrom) and statement.level:
                source = module_file(path, statement.level, statement.module)
                if source is not None:
                    for alias in statement.names:
                        imports[alias.asname or alias.name] = (str(source), alias.name)
        rebound = {target.id for function in ast.walk(tree)
                   if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for node in ast.walk(function)
                   for target in _targets(node) if isinstance(target, ast.Name)}
        _MODULES[path] = Module(relative(path), path, tree, assignments, imports, rebound)
    return _MODULES[path]


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return [t for target in node.targets for t in ast.walk(target) if isinstance(t, ast.Name)]
    if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.NamedExpr)):
        return [node.target]
    if isinstance(node, (ast.For, ast.AsyncFor)):
        return [t for t in ast.walk(node.target) if isinstance(t, ast.Name)]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [t for item in node.items if item.optional_vars is not None
                for t in ast.walk(item.optional_vars) if isinstance(t, ast.Name)]
    return []


class Checker:
    """Decides whether an expression is safe (see the module docstring)."""

    def __init__(self, module: Module, function: ast.FunctionDef | ast.AsyncFunctionDef | None) -> None:
        self.module = module
        self.function = function
        self._visiting: set[tuple[str, str]] = set()

    def unsafe_parts(self, node: ast.expr, bound: frozenset[str] = frozenset()) -> list[str]:
        """The sources of the unsafe sub-expressions of ``node`` ([] when safe)."""
        if self._allowed(node):
            return []
        if isinstance(node, ast.Constant):
            return []
        if isinstance(node, ast.Name):
            return [] if node.id in bound or self._name_is_safe(node.id) else [node.id]
        if isinstance(node, ast.JoinedStr):
            return [part for value in node.values for part in self.unsafe_parts(value, bound)]
        if isinstance(node, ast.FormattedValue):
            return self.unsafe_parts(node.value, bound)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult, ast.Mod)):
            return self.unsafe_parts(node.left, bound) + self.unsafe_parts(node.right, bound)
        if isinstance(node, (ast.Tuple, ast.List)):
            return [p for element in node.elts for p in self.unsafe_parts(element, bound)]
        if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
            names = set(bound)
            problems = []
            for generator in node.generators:
                problems += self.unsafe_parts(generator.iter, frozenset(names))
                names |= {t.id for t in ast.walk(generator.target) if isinstance(t, ast.Name)}
                for condition in generator.ifs:
                    problems += self.unsafe_parts(condition, frozenset(names))
            return problems + self.unsafe_parts(node.elt, frozenset(names))
        if isinstance(node, ast.Subscript) and isinstance(node.value, (ast.Dict, ast.List, ast.Tuple)):
            values = node.value.values if isinstance(node.value, ast.Dict) else node.value.elts
            return [p for value in values for p in self.unsafe_parts(value, bound)]
        if isinstance(node, ast.Call):
            return self._call_unsafe_parts(node, bound)
        return [ast.unparse(node)]

    def _call_unsafe_parts(self, node: ast.Call, bound: frozenset[str]) -> list[str]:
        if isinstance(node.func, ast.Name) and node.func.id in INTEGER_CALLS:
            return []
        func = dotted(node.func)
        if func in ("sql.SQL", "psycopg.sql.SQL"):
            return [p for arg in node.args for p in self.unsafe_parts(arg, bound)]
        if func.startswith(("sql.", "psycopg.sql.")) and func.rpartition(".")[2] in PSYCOPG_SAFE_PARTS:
            return []  # psycopg quotes an Identifier/Literal itself
        if isinstance(node.func, ast.Attribute):  # a method of a safe value, with safe arguments
            arguments = [*node.args, *(k.value for k in node.keywords)]
            return self.unsafe_parts(node.func.value, bound) + [
                p for arg in arguments for p in self.unsafe_parts(arg, bound)]
        return [ast.unparse(node)]

    def _allowed(self, node: ast.expr) -> bool:
        function = self.function.name if self.function is not None else ""
        key = (self.module.name, function, ast.unparse(node))
        if key in ALLOWED:
            USED_ALLOWANCES.add(key)
            return True
        return False

    def _name_is_safe(self, name: str) -> bool:
        if CONSTANT_NAME.match(name):
            return name not in self.module.rebound and self._constant_is_safe(self.module, name)
        if self.function is None:
            return False
        return self._local_is_safe(name)

    def _constant_is_safe(self, module: Module, name: str) -> bool:
        key = (str(module.path), name)
        if key in self._visiting:
            return True
        self._visiting.add(key)
        try:
            if name in module.assignments:
                checker = Checker(module, None)
                checker._visiting = self._visiting
                return all(not checker.unsafe_parts(value) for value in module.assignments[name])
            if name in module.imports:
                source, original = module.imports[name]
                return self._constant_is_safe(load_module(Path(source)), original)
            return False
        finally:
            self._visiting.discard(key)

    def _local_is_safe(self, name: str) -> bool:
        assert self.function is not None
        arguments = self.function.args
        parameters = {a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]}
        parameters |= {a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None}
        if name in parameters:
            return False
        key = (f"{self.module.path}:{self.function.name}", name)
        if key in self._visiting:
            return True  # x = <safe>; x += <safe>: each assignment is checked on its own
        self._visiting.add(key)
        try:
            values: list[ast.expr] = []
            for node in ast.walk(self.function):
                if any(isinstance(t, ast.Name) and t.id == name for t in _targets(node)):
                    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.NamedExpr)) \
                            and node.value is not None and _simple_target(node, name):
                        values.append(node.value)
                    else:  # a loop variable, a with-target, a tuple unpacking: unknown
                        return False
            return bool(values) and all(not self.unsafe_parts(value) for value in values)
        finally:
            self._visiting.discard(key)


def _simple_target(node: ast.AST, name: str) -> bool:
    if isinstance(node, ast.Assign):
        return all(isinstance(t, ast.Name) for t in node.targets)
    return isinstance(getattr(node, "target", None), ast.Name)


USED_ALLOWANCES: set[tuple[str, str, str]] = set()


def functions_of(tree: ast.Module) -> Iterator[tuple[ast.AST, ast.FunctionDef | ast.AsyncFunctionDef | None]]:
    """Every node with its innermost enclosing function (None at module level)."""
    def visit(node: ast.AST, function: ast.FunctionDef | ast.AsyncFunctionDef | None) -> Iterator[
            tuple[ast.AST, ast.FunctionDef | ast.AsyncFunctionDef | None]]:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            yield child, inner
            yield from visit(child, inner)
    yield from visit(tree, None)


def sql_violations(path: Path) -> Iterator[str]:
    module = load_module(path)
    for node, function in functions_of(module.tree):
        where = f"{module.name}:{getattr(node, 'lineno', '?')}"
        checker = Checker(module, function)
        built: ast.expr | None = None
        if isinstance(node, ast.JoinedStr) and looks_like_sql(literal_text(node)):
            built = node
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)) and (
                looks_like_sql(literal_text(node)) or _names_sql(node)):
            built = node
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Mod)) and (
                looks_like_sql(literal_text(node.value)) or _names_sql(node.value)):
            built = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "format" and looks_like_sql(literal_text(node.func.value)):
                built = node
            elif node.func.attr in EXECUTORS and node.args:
                problems = checker.unsafe_parts(node.args[0])
                if problems:
                    yield (f"{where}: {ast.unparse(node.func)}() is given SQL built from "
                           f"{', '.join(problems)}")
        if built is not None:
            problems = checker.unsafe_parts(built)
            if problems:
                yield f"{where}: SQL built from {', '.join(problems)}: {ast.unparse(built)[:120]}"


def _names_sql(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id.startswith("SQL_") for n in ast.walk(node))


def store_files() -> list[Path]:
    files = sorted(STORE.rglob("*.py"))
    assert {relative(f) for f in files} >= {"store/sqlite.py", "store/postgres.py", "store/rows.py"}
    return files


def test_store_modules_build_no_sql_from_anything_but_constants() -> None:
    USED_ALLOWANCES.clear()
    violations = [v for path in store_files() for v in sql_violations(path)]
    assert violations == [], "\n".join(violations)
    stale = set(ALLOWED) - USED_ALLOWANCES
    assert not stale, f"ALLOWED entries that no longer occur (remove them): {sorted(stale)}"


def test_the_sql_rule_finds_sql_built_from_user_data() -> None:
    """The checker itself: unsafe shapes are caught, the safe shapes used by the stores pass."""
    source = '''
from psycopg import sql
TABLE = "jobs"
BAD_TABLE = input()
COLUMNS = "id, command"
def good(conn, job_id, stream, ids):
    marks = ",".join("?" * len(ids))
    column = {"stdout": "stdout_tail", "stderr": "stderr_tail"}[stream]
    query = f"SELECT {COLUMNS}, {column} FROM {TABLE} WHERE id IN ({marks})"
    query += " LIMIT ?"
    conn.execute(query, ids)
    conn.execute(f"PRAGMA busy_timeout = {int(job_id)}")
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(job_id)))
    conn.execute(f"SELECT {', '.join('j.' + c.strip() for c in COLUMNS.split(','))} FROM jobs")
def bad1(conn, job_id):
    conn.execute(f"SELECT * FROM jobs WHERE id = '{job_id}'")
def bad2(conn, job_id):
    conn.execute("DELETE FROM jobs WHERE id = '%s'" % job_id)
def bad3(conn, job_id):
    conn.execute("UPDATE jobs SET state = 'x' WHERE id = {}".format(job_id))
def bad4(conn, job_id):
    query = "SELECT * FROM jobs WHERE id = '" + job_id + "'"
    conn.execute(query)
def bad5(conn, state):
    query = "SELECT * FROM jobs"
    query += " WHERE state = " + state
    conn.execute(query)
def bad6(conn):
    conn.execute(f"SELECT * FROM {BAD_TABLE}")
def bad7(conn, rows):
    for row in rows:
        conn.execute(row.text)
def bad8(conn, name):
    conn.execute(sql.SQL("LISTEN " + name))
'''
    path = STORE / "__rule_selftest__.py"
    tree = ast.parse(source)
    module = Module("store/__rule_selftest__.py", path, tree, {}, {}, set())
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            module.assignments[statement.targets[0].id] = [statement.value]  # type: ignore[attr-defined]
    module.rebound = {t.id for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                      for n in ast.walk(f) for t in _targets(n) if isinstance(t, ast.Name)}
    _MODULES[path] = module
    try:
        found = list(sql_violations(path))
    finally:
        del _MODULES[path]
    flagged = {int(v.split(":")[1]) for v in found}
    lines = source.splitlines()
    bad_functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)
                     and n.name.startswith("bad")}
    for name, function in bad_functions.items():
        assert any(function.lineno <= line <= (function.end_lineno or 0) for line in flagged), \
            (name, found)
    good = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "good")
    assert not [line for line in flagged if good.lineno <= line <= (good.end_lineno or 0)], \
        (found, lines[good.lineno - 1:good.end_lineno])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_allowed_exceptions_hold_migration_versions_are_ints_from_packaged_files(backend: str) -> None:
    from queuectl.store import migrations

    known = migrations.load(backend)
    assert known, backend
    assert all(type(m.version) is int for m in known)
    folder = STORE / "migrations" / backend
    assert sorted(m.sql for m in known) == sorted(
        p.read_text(encoding="utf-8") for p in folder.glob("*.sql"))
