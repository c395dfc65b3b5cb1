-- The transactional outbox: one row per job event, written in the same
-- transaction as the transition it reports.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_job ON events (job_id, seq);

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    types TEXT,
    job_id TEXT,
    secrets TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled_at REAL,
    disabled_reason TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);

-- One row per (event, subscription): what must be delivered, and how it went.
CREATE TABLE outbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq INTEGER NOT NULL REFERENCES events (seq),
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    job_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    lease_until REAL,
    last_error TEXT,
    last_status INTEGER,
    delivered_at REAL,
    created_at REAL NOT NULL
);
CREATE INDEX outbound_due ON outbound (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbound_order ON outbound (subscription_id, job_id, event_seq);
CREATE INDEX outbound_event ON outbound (event_seq);

CREATE TABLE outbound_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    outbound_id INTEGER NOT NULL REFERENCES outbound (id),
    at REAL NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms REAL
);
CREATE INDEX outbound_attempts_outbound ON outbound_attempts (outbound_id, id);
