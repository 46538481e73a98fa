"""The environment a job runs with: the worker's own, minus its secrets."""

from __future__ import annotations

from typing import Mapping

from ..paths import without_password

#: libpq reads these; a job has no business with the worker's database credentials.
SECRET_VARIABLES = ("PGPASSWORD", "PGSERVICEFILE", "PGPASSFILE")


def job_environment(worker_env: Mapping[str, str], db_url: str) -> dict[str, str]:
    """What every job inherits. ``QUEUECTL_DB`` names the worker's own database, without
    its password, so a job can enqueue follow-up jobs with a plain ``queuectl enqueue``."""
    env = {name: value for name, value in worker_env.items() if name not in SECRET_VARIABLES}
    env["QUEUECTL_DB"] = without_password(db_url)
    return env
