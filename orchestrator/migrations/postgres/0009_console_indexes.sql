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
-- The jobs list's text search (an id, a provider job id, or any text of the
-- metadata): the ids by their indexes, the metadata by a trigram index when the
-- pg_trgm extension may be created here. Without it the search still works, by
-- reading every job.
CREATE INDEX jobs_provider_job_id ON jobs (provider_job_id);
DO $$
DECLARE
    home TEXT;
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    SELECT n.nspname INTO home FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    EXECUTE format(
        'CREATE INDEX jobs_metadata_trgm ON jobs USING gin (metadata %I.gin_trgm_ops)',
        home
    );
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'no trigram index for the jobs text search: %', SQLERRM;
END $$;
