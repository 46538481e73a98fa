"""The short chaos run, on every backend (`make chaos` runs the long one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, _drop_schema, _pg_schema_url

CHAOS = Path(__file__).with_name("chaos.py")


@pytest.mark.parametrize("backend", BACKENDS)
def test_jobs_survive_random_sigkills_with_no_overlap_and_nothing_lost(backend: str,
                                                                      tmp_path: Path) -> None:
    args = [sys.executable, str(CHAOS), "--jobs", "300", "--seconds", "60", "--seed", "7"]
    schema = None
    if backend == "postgres":
        url, schema = _pg_schema_url()
        args += ["--db", url]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    finally:
        if schema:
            _drop_schema(schema)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "overlaps=0 lost=0" in result.stdout and "FAILED" not in result.stdout
