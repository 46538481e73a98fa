"""The benchmark's peers: the same workloads (drain, pickup, bulk enqueue) on
task-spooler, Huey, RQ and procrastinate. See README.md beside this file.

    from benchmarks.peers import PEERS, ensure_installed
    ensure_installed()
    peer = PEERS["rq"](workdir)
    try:
        if not peer.unavailable():
            peer.drain(2000, 4)
    finally:
        peer.close()
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

from .base import HERE, PY, VENV, Peer
from .huey_peer import Huey
from .procrastinate_peer import Procrastinate
from .rq_peer import Rq
from .tsp_peer import Tsp

__all__ = ["PEERS", "Peer", "ensure_installed"]

PEERS: dict[str, type[Peer]] = {"tsp": Tsp, "huey": Huey, "rq": Rq,
                                "procrastinate": Procrastinate}

REQUIREMENTS = HERE.parent / "requirements-peers.txt"
STAMP = VENV / ".requirements.sha256"


def ensure_installed() -> None:
    """Create benchmarks/.peers-venv from requirements-peers.txt and apt-install
    task-spooler if ``tsp`` is missing. Idempotent; quick when already done."""
    _ensure_venv()
    _ensure_tsp()


def _ensure_venv() -> None:
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print(f"peers: installing {REQUIREMENTS.name} into {VENV}", file=sys.stderr, flush=True)
    if not PY.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    (VENV / ".gitignore").write_text("*\n")  # never committed
    subprocess.run([str(PY), "-m", "pip", "install", "-qq", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(wanted + "\n")


def _ensure_tsp() -> None:
    if shutil.which("tsp"):
        return
    print("peers: apt-get install task-spooler", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "task-spooler"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL,
                       check=True)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=True)
