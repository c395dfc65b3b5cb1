-- The operator console's lists stay fast with a long history: each filter reads
-- an index in the list's order instead of walking every row (jobs newest first by
-- id, deliveries newest first by received time), and the overview's counts of
-- recent jobs read one covering index range.
CREATE INDEX jobs_provider ON jobs (provider, id);
CREATE INDEX jobs_operation ON jobs (operation, id);
-- Provider first: a state-only filter keeps reading jobs_state in id order.
CREATE INDEX jobs_provider_state ON jobs (provider, state, id);
-- Same leading column as jobs_created, which it replaces.
CREATE INDEX jobs_created_counts ON jobs (created_at, state, provider);
DROP INDEX jobs_created;
CREATE INDEX deliveries_provider_received ON deliveries (provider, received_at, id);
CREATE INDEX outbound_subscription ON outbound (subscription_id, id);
