-- Provider budgets kept in the database: one row per call granted, pruned past
-- the longest window, and a cooldown (Retry-After) per provider and kind.
CREATE TABLE budget_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX budget_calls_window ON budget_calls (provider, kind, at);

CREATE TABLE budget_cooldowns (
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (provider, kind)
);
