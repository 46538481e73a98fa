"""Durability: an enqueuer SIGKILLed at random points inside its batches. Every id it
printed is in the database, and each batch is there whole or not at all.
QUEUECTL_DURABILITY_RUNS sets the number of kills (the issue's long form: 1,000)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

from tests.conftest import QUEUECTL, Cli

RUNS = int(os.environ.get("QUEUECTL_DURABILITY_RUNS", "30"))
BATCH = 300


def test_a_killed_enqueuer_never_leaves_a_partial_batch_or_loses_a_printed_id(cli: Cli) -> None:
    rng = random.Random(11)
    printed: set[str] = set()
    batches = []
    for run in range(RUNS):
        ids = [f"r{run}-{n}" for n in range(BATCH)]
        batches.append(ids)
        proc = subprocess.Popen([QUEUECTL, "enqueue", "--file", "-"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=cli.env)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("".join(json.dumps({"id": i, "command": "true"}) + "\n" for i in ids))
        proc.stdin.close()
        time.sleep(rng.uniform(0, 0.4))  # start-up, parsing, the transaction, or printing
        proc.send_signal(signal.SIGKILL)
        printed.update(proc.stdout.read().split())
        proc.stdout.close()
        proc.wait()
    stored = {job["id"] for job in cli.json("list")}
    assert printed <= stored, sorted(printed - stored)[:5]
    whole = 0
    for ids in batches:
        present = stored.intersection(ids)
        assert len(present) in (0, BATCH), f"a partial batch: {len(present)} of {BATCH}"
        whole += bool(present)
    # Both outcomes happened, so the kills did land inside and after batches.
    assert 0 < whole < RUNS, whole
