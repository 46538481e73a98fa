"""How a PostgreSQL URL becomes a connection: schema, options, password, data folder."""

from __future__ import annotations

import pytest

from queuectl.errors import InvalidInput
from queuectl.paths import data_dir

pytest.importorskip("psycopg", reason="the postgres extra is not installed")
from queuectl.store.postgres import parse_url  # noqa: E402


def test_the_schema_comes_from_the_url_then_the_environment_then_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUEUECTL_PG_SCHEMA", raising=False)
    assert parse_url("postgresql://h/db")[1] == "queuectl"
    monkeypatch.setenv("QUEUECTL_PG_SCHEMA", "from_env")
    assert parse_url("postgresql://h/db")[1] == "from_env"
    conninfo, schema, options = parse_url("postgresql://h/db?schema=from_url&sslmode=disable")
    assert (conninfo, schema, options) == ("postgresql://h/db?sslmode=disable", "from_url",
                                           "-c search_path=from_url")


def test_the_urls_own_server_options_are_kept() -> None:
    options = parse_url("postgresql://h/db?options=-c%20statement_timeout%3D5000")[2]
    assert options == "-c statement_timeout=5000 -c search_path=queuectl"


@pytest.mark.parametrize("schema", ["Upper", "has-dash", "1digit", "x" * 64, "a;drop"])
def test_an_unsafe_schema_name_is_refused(schema: str) -> None:
    with pytest.raises(InvalidInput, match="schema"):
        parse_url(f"postgresql://h/db?schema={schema}")


def test_each_server_queue_gets_its_own_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUEUECTL_PG_SCHEMA", raising=False)
    a = data_dir("postgresql://u:secret@db.example/q?schema=a")
    b = data_dir("postgresql://u@db.example/q?schema=b")
    assert a != b and a.parent == b.parent
    assert a.name.startswith("postgresql-db.example-q-") and "secret" not in str(a)
    assert data_dir("postgresql://u:other@db.example/q?schema=a") == a  # the password is not identity
