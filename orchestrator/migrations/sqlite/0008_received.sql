-- Callbacks as acknowledged: appended and committed before the 200, with no index
-- but the key, so the ack costs one small insert. The inbox pass files them among
-- the deliveries (duplicate check, indexes) and deletes them here.
CREATE TABLE received (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    provider TEXT NOT NULL,
    claimed_job_id TEXT,
    received_at REAL NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    dedupe_key TEXT NOT NULL,
    source TEXT NOT NULL
);
