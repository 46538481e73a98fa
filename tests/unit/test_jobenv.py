"""The environment jobs inherit: the worker's, minus its database secrets."""

from __future__ import annotations

from queuectl.paths import without_password
from queuectl.worker.jobenv import job_environment


def test_a_password_is_removed_from_a_database_url() -> None:
    assert without_password("postgresql://app:s3cret@db.example:5432/q?schema=x") == \
        "postgresql://app@db.example:5432/q?schema=x"
    assert without_password("postgresql://:s3cret@db/q") == "postgresql://db/q"
    assert without_password("postgresql://app@db/q") == "postgresql://app@db/q"
    assert without_password("/var/lib/queue.db") == "/var/lib/queue.db"


def test_jobs_get_the_workers_database_without_its_password_and_no_libpq_secrets() -> None:
    env = job_environment({"PATH": "/bin", "PGPASSWORD": "s3cret", "PGPASSFILE": "/p",
                           "QUEUECTL_DB": "postgresql://app:s3cret@db/q", "HOME": "/root"},
                          "postgresql://app:s3cret@db/q")
    assert env == {"PATH": "/bin", "HOME": "/root", "QUEUECTL_DB": "postgresql://app@db/q"}
    assert "s3cret" not in repr(env)


def test_jobs_learn_the_database_even_when_the_worker_got_it_from_an_option() -> None:
    assert job_environment({"PATH": "/bin"}, "/data/q.db")["QUEUECTL_DB"] == "/data/q.db"


def test_env_allow_patterns_choose_what_jobs_inherit() -> None:
    worker = {"PATH": "/bin", "HOME": "/root", "LANG": "C", "AWS_SECRET": "x", "AWS_REGION": "eu"}
    env = job_environment(worker, "/q.db", "PATH,LANG,AWS_REG*")
    assert env == {"PATH": "/bin", "LANG": "C", "AWS_REGION": "eu", "QUEUECTL_DB": "/q.db"}
    assert job_environment(worker, "/q.db")["HOME"] == "/root"  # the default lets all through
