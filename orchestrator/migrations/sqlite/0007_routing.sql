-- Routing across providers. The job row holds its current attempt (provider,
-- provider job id, cost, failure, as before) and, in past_attempts, the ended
-- ones as a JSON list, written in the same compare-and-set as the move to the
-- next provider: a job has one current attempt, never two.
ALTER TABLE jobs ADD COLUMN route TEXT;
ALTER TABLE jobs ADD COLUMN route_name TEXT;
ALTER TABLE jobs ADD COLUMN route_options TEXT;
ALTER TABLE jobs ADD COLUMN max_cost REAL;
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN attempt_started_at REAL;
ALTER TABLE jobs ADD COLUMN past_attempts TEXT;

-- Each provider's health, shared by every worker: failures in a row, the
-- cool-down they started, the one probe job let through after it, and counters.
CREATE TABLE provider_health (
    provider TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    cooldown_s REAL NOT NULL DEFAULT 0,
    until REAL,
    probe_job TEXT,
    probe_until REAL,
    total_failures INTEGER NOT NULL DEFAULT 0,
    cooldowns INTEGER NOT NULL DEFAULT 0
);

-- What each provider reported it cost, per UTC day, added when an attempt ends.
CREATE TABLE provider_spend (
    provider TEXT NOT NULL,
    day TEXT NOT NULL,
    credits REAL NOT NULL DEFAULT 0,
    jobs INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, day)
);
