"""Opening a store: the URL's scheme picks the backend, whose driver is imported lazily."""

from __future__ import annotations

from ..errors import InvalidInput
from .base import Claim, Heartbeat, HeldJob, Store

__all__ = ["Claim", "Heartbeat", "HeldJob", "Store", "open_store", "SCHEMES"]

SCHEMES = ("a file path", "sqlite:///PATH", "postgresql://USER@HOST/DB", "postgres://…")


def open_store(url: str) -> Store:
    """Open (creating and migrating on first use) the database at ``url``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        from .sqlite import SqliteStore

        return SqliteStore(url)
    scheme = scheme.lower()
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(rest)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise InvalidInput(f"unknown database URL scheme {scheme!r}; use one of: {', '.join(SCHEMES)}")
