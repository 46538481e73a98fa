-- queuectl schema 1. Times are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,            -- enqueue order
    id               TEXT    NOT NULL UNIQUE,
    command          TEXT    NOT NULL,
    state            TEXT    NOT NULL
                     CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL,
    timeout          REAL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    exit_code        INTEGER,
    last_error       TEXT,
    worker_id        TEXT,
    lease_token      TEXT,                           -- set while processing; fences results
    lease_expires_at INTEGER
);

-- Serves the claim exactly: waiting jobs in priority, run_at, enqueue order.
CREATE INDEX jobs_due ON jobs (priority, run_at, seq) WHERE state IN ('pending', 'failed');
-- Serves "is anything due?" and "when is the next job due?" for idle workers.
CREATE INDEX jobs_waiting ON jobs (run_at) WHERE state IN ('pending', 'failed');
-- Serves `list --state`, `dlq list` and the per-state counts.
CREATE INDEX jobs_state ON jobs (state, seq);

CREATE TABLE attempts (
    job_id      TEXT    NOT NULL,
    number      INTEGER NOT NULL,                    -- never reset, so log files are never overwritten
    worker_id   TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    exit_code   INTEGER,
    error       TEXT,
    stdout_path TEXT,
    stderr_path TEXT,
    PRIMARY KEY (job_id, number)
) WITHOUT ROWID;

CREATE TABLE supervisors (
    id             TEXT    PRIMARY KEY,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    pid_start      INTEGER,
    started_at     INTEGER NOT NULL,
    heartbeat_at   INTEGER NOT NULL,
    slots          INTEGER NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE workers (
    id            TEXT    PRIMARY KEY,
    supervisor_id TEXT    NOT NULL REFERENCES supervisors (id) ON DELETE CASCADE,
    slot          INTEGER NOT NULL,
    current_job   TEXT
);

CREATE TABLE config (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
