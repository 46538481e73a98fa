"""The environment a job runs with: the worker's own, minus its secrets."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Mapping

from ..paths import without_password

#: libpq reads these; a job has no business with the worker's database credentials.
SECRET_VARIABLES = ("PGPASSWORD", "PGSERVICEFILE", "PGPASSFILE")


def job_environment(worker_env: Mapping[str, str], db_url: str, allow: str = "*") -> dict[str, str]:
    """What every job inherits: the variables config ``env-allow`` lets through (comma-
    separated names or patterns), never the database secrets. ``QUEUECTL_DB`` names the
    worker's own database, without its password, so a job can enqueue follow-up jobs
    with a plain ``queuectl enqueue``."""
    patterns = allow.split(",")
    env = {name: value for name, value in worker_env.items()
           if name not in SECRET_VARIABLES and any(fnmatchcase(name, p) for p in patterns)}
    env["QUEUECTL_DB"] = without_password(db_url)
    return env
