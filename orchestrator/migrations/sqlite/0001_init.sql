CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    scale REAL NOT NULL,
    options TEXT NOT NULL,
    metadata TEXT,
    input_url TEXT,
    input_key TEXT,
    provider_job_id TEXT,
    result_url TEXT,
    failure_reason TEXT,
    failure_message TEXT,
    result TEXT,
    cost REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    refetches INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    deadline_at REAL NOT NULL,
    next_check_at REAL,
    lease_until REAL
);
CREATE UNIQUE INDEX jobs_provider_job ON jobs (provider, provider_job_id)
    WHERE provider_job_id IS NOT NULL;
CREATE INDEX jobs_due ON jobs (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX jobs_state ON jobs (state, id);

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    claimed_job_id TEXT,
    received_at REAL NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    dedupe_key TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'live',
    status TEXT NOT NULL,
    job_id TEXT,
    provider_job_id TEXT,
    error TEXT,
    processed_at REAL
);
CREATE INDEX deliveries_status ON deliveries (status, received_at);
CREATE INDEX deliveries_dedupe ON deliveries (dedupe_key);
CREATE INDEX deliveries_job ON deliveries (job_id);
CREATE INDEX deliveries_claimed ON deliveries (claimed_job_id);
CREATE INDEX deliveries_provider_job ON deliveries (provider, provider_job_id);

CREATE TABLE job_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    at REAL NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    event TEXT NOT NULL,
    cause TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX job_history_job ON job_history (job_id, id);
