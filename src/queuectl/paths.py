"""Where things live: the database (``--db``, ``QUEUECTL_DB``, or the XDG data
folder) and the files kept beside it."""

from __future__ import annotations

import os
from pathlib import Path

ENV_DB = "QUEUECTL_DB"


def default_db() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "queuectl" / "queuectl.db"


def resolve_db(db: str | None = None) -> str:
    """The database URL or path to use: the argument, then ``$QUEUECTL_DB``, then the default."""
    return db or os.environ.get(ENV_DB) or str(default_db())


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents owner-only (0700) whatever the umask
    (``mkdir(parents=True)`` gives missing parents the default mode), then check it."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)
    check_private(path, "folder")
    return path


def check_private(path: Path, what: str) -> None:
    """Refuse a database or folder that another user owns or that group/others can write:
    whoever can write it can make our workers run any command.

    A shared folder with the sticky bit (like /tmp) is accepted as the database's folder:
    others cannot replace or remove our files in it."""
    from .errors import InvalidInput

    try:
        info = path.stat()
    except OSError:
        return  # not there (yet): the caller creates it owner-only
    if path.is_dir() and info.st_mode & 0o1000:
        return  # a shared sticky folder (/tmp): others cannot replace or remove our files
    if info.st_uid != os.geteuid():
        raise InvalidInput(f"refusing {what} {path}: it is owned by another user (uid {info.st_uid})")
    if info.st_mode & 0o022:
        raise InvalidInput(f"refusing {what} {path}: group or others can write it "
                           f"(mode {info.st_mode & 0o777:o}; chmod go-w)")


def without_password(url: str) -> str:
    """The URL with any password removed, safe to print or to hand to a job."""
    if "://" not in url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}" if parts.username else host))


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL or plain path; None for a server URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return Path(url).expanduser()
    return Path(rest).expanduser() if scheme.lower() == "sqlite" else None


def data_dir(url: str) -> Path:
    """The folder for files beside the database: the SQLite file's folder; for a server
    database, a folder of its own under the XDG one, so two queues never share logs."""
    path = sqlite_path(url)
    if path is not None:
        return path.parent
    import hashlib
    import re
    from urllib.parse import urlsplit

    parts = urlsplit(without_password(url))
    key = f"{without_password(url)}|{os.environ.get('QUEUECTL_PG_SCHEMA', '')}"
    label = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{parts.hostname or 'local'}-{parts.path.strip('/')}")
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return default_db().parent / f"{parts.scheme}-{label[:40]}-{digest}"


def log_dir(url: str) -> Path:
    """Attempt logs: ``logs/<job id>/<attempt>.stdout|.stderr`` beside the database."""
    return data_dir(url) / "logs"


def worker_log(url: str) -> Path:
    """Where ``worker start --detach`` writes its output."""
    path = sqlite_path(url)
    name = path.name if path is not None else "queuectl"
    return data_dir(url) / f"{name}.worker.log"
