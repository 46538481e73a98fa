-- queuectl schema 1 for PostgreSQL, created inside the queuectl schema (search_path).
-- Times are integer milliseconds since the Unix epoch (UTC), as in the SQLite store,
-- so both stores share one row format and one set of rules.

CREATE TABLE jobs (
    seq              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- enqueue order
    id               TEXT    NOT NULL UNIQUE,
    command          TEXT    NOT NULL,
    state            TEXT    NOT NULL
                     CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      BIGINT  NOT NULL,
    priority         BIGINT  NOT NULL DEFAULT 0,
    run_at           BIGINT  NOT NULL,
    timeout          DOUBLE PRECISION,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    exit_code        INTEGER,
    last_error       TEXT,
    worker_id        TEXT,
    lease_token      TEXT,
    lease_expires_at BIGINT
);

-- The claim walks this index in order and stops at the first due rows, so its cost
-- stays flat however many finished jobs accumulate.
CREATE INDEX jobs_due ON jobs (priority, run_at, seq) WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_waiting ON jobs (run_at) WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_state ON jobs (state, seq);
CREATE INDEX jobs_lease ON jobs (lease_token) WHERE state = 'processing';

CREATE TABLE attempts (
    job_id      TEXT    NOT NULL,
    number      INTEGER NOT NULL,
    worker_id   TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT,
    exit_code   INTEGER,
    error       TEXT,
    stdout_path TEXT,
    stderr_path TEXT,
    stdout_tail BYTEA,  -- the last 64 KiB of each stream, so `logs` works from any host
    stderr_tail BYTEA,
    PRIMARY KEY (job_id, number)
);

CREATE TABLE supervisors (
    id             TEXT    PRIMARY KEY,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    pid_start      BIGINT,
    started_at     BIGINT  NOT NULL,
    heartbeat_at   BIGINT  NOT NULL,
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
    key        TEXT   PRIMARY KEY,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
