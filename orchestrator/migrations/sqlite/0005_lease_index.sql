-- The loop's next wake-up reads the earliest lease without scanning every job.
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE lease_until IS NOT NULL;
