-- Operator work: replayed deliveries are counted, retried jobs link to the original.
ALTER TABLE deliveries ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN retry_of TEXT;
CREATE INDEX deliveries_received ON deliveries (received_at);
CREATE INDEX jobs_created ON jobs (created_at);
