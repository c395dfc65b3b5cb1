"""The statements over jobs, their history and their events, written once for both
databases (``?`` placeholders; see ``dialect.py`` for what is spelled apart)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator.domain.states import DUE_STATES
from orchestrator.store.dialect import Dialect

DUE = tuple(state.value for state in DUE_STATES)


def marks(values: Iterable[Any]) -> str:
    """``?, ?, ?``: one placeholder per value, for an ``IN (...)`` list."""
    return ", ".join("?" for _ in values)


def where(conditions: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """A ``WHERE`` clause and its parameters from (condition, value) pairs; the
    conditions whose value is None are left out."""
    chosen = [(clause, value) for clause, value in conditions if value is not None]
    if not chosen:
        return "", []
    return "WHERE " + " AND ".join(c for c, _ in chosen), [v for _, v in chosen]


JOB_BY_ID = "SELECT * FROM jobs WHERE id = ?"
JOB_BY_KEY = "SELECT * FROM jobs WHERE idempotency_key = ?"
JOB_BY_PROVIDER_ID = "SELECT * FROM jobs WHERE provider = ? AND provider_job_id = ?"

INSERT_JOB = """
    INSERT INTO jobs (id, provider, state, scale, options, metadata, input_url, input_key,
                      idempotency_key, request_hash, created_at, updated_at, deadline_at,
                      next_check_at, retry_of, operation, prompt, mask_url, mask_key,
                      input_width, input_height, route, route_name, route_options,
                      max_cost, attempt_started_at)
    VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
            ?, ?, ?, ?, ?)
    RETURNING *
"""

INSERT_CREATED = """
    INSERT INTO job_history (job_id, at, from_state, to_state, event, cause)
    VALUES (?, ?, NULL, 'queued', 'created', 'api')
"""

INSERT_HISTORY = """
    INSERT INTO job_history (job_id, at, from_state, to_state, event, cause, detail)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""

# Spend of the day: parameters (provider, day, credits).
ADD_SPEND = """
    INSERT INTO provider_spend (provider, day, credits, jobs) VALUES (?, ?, ?, 1)
    ON CONFLICT (provider, day) DO UPDATE
    SET credits = provider_spend.credits + excluded.credits, jobs = provider_spend.jobs + 1
"""

HISTORY = "SELECT * FROM job_history WHERE job_id = ? ORDER BY id"


def update_job(columns: Iterable[str]) -> str:
    """Compare-and-set: the job's columns, if its version is still the one read."""
    assignments = ", ".join(f"{name} = ?" for name in columns)
    return (
        f"UPDATE jobs SET {assignments}, version = version + 1 "
        "WHERE id = ? AND version = ? RETURNING *"
    )


# Texts shorter than a trigram, which no trigram index serves (PostgreSQL: see
# migration 0009), match ids and provider job ids only: searching the metadata
# for one or two characters would read every job, and it rarely finds what was
# meant anyway. A statement of their own, so PostgreSQL's plan for the longer
# texts keeps its index.
SHORT_TEXT = 3


def job_text(dialect: Dialect, text: str) -> tuple[str, tuple[str, ...]]:
    """A job by its id or provider job id, or a piece of its metadata in any case
    (ASCII) when the text is at least ``SHORT_TEXT`` long: the condition and its
    parameters. No function applied per row."""
    if len(text) < SHORT_TEXT:
        return "(id = ? OR provider_job_id = ?)", (text, text)
    condition = f"(id = ? OR provider_job_id = ? OR metadata {dialect.like_any_case} ? ESCAPE '!')"
    return condition, job_text_params(text)


def job_text_params(text: str) -> tuple[str, str, str]:
    escaped = text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return text, text, f"%{escaped}%"


def list_jobs(clause: str) -> str:
    return f"SELECT * FROM jobs {clause} ORDER BY id DESC LIMIT ?"


# Jobs due for a check and not leased by anyone: parameters (now, *DUE, now).
DUE_UNLEASED = f"""
    next_check_at IS NOT NULL AND next_check_at <= ? AND state IN ({marks(DUE)})
    AND (lease_until IS NULL OR lease_until <= ?)
"""


def next_free(dialect: Dialect) -> str:
    """The first unleased job in due order: an ordered index read that stops at once."""
    return f"""
        SELECT next_check_at FROM jobs {dialect.index_hint("jobs_due")}
        WHERE next_check_at IS NOT NULL AND state IN ({marks(DUE)})
          AND (lease_until IS NULL OR lease_until <= next_check_at)
        ORDER BY next_check_at LIMIT 1
    """


# The first lease on a due job to run out (few rows).
NEXT_HELD = f"""
    SELECT MIN(lease_until) FROM jobs
    WHERE lease_until IS NOT NULL AND next_check_at IS NOT NULL
      AND lease_until > next_check_at AND state IN ({marks(DUE)})
"""

INTERRUPTED = """
    SELECT * FROM jobs WHERE state = 'submitting' AND (lease_until IS NULL OR lease_until <= ?)
"""

LEASE_JOB = "UPDATE jobs SET lease_until = ? WHERE id = ? AND version = ? RETURNING *"

CLEAR_JOB_LEASES = "UPDATE jobs SET lease_until = NULL WHERE state != 'submitting'"
CLEAR_OUTBOUND_LEASES = "UPDATE outbound SET lease_until = NULL WHERE status = 'pending'"

JOB_COUNTS = "SELECT state, provider, COUNT(*) AS n FROM jobs GROUP BY state, provider"


def job_counts_since(dialect: Dialect) -> str:
    """Counts of the jobs created since a time: a range of one covering index (SQLite's
    planner would rather walk the whole (state, provider) index to skip the sort)."""
    return f"""
        SELECT state, provider, COUNT(*) AS n FROM jobs {dialect.index_hint("jobs_created_counts")}
        WHERE created_at >= ? GROUP BY state, provider
    """


COUNT_STUCK = "SELECT COUNT(*) FROM jobs WHERE state = 'submitted' AND created_at < ?"
SUBMITTING = "SELECT 1 FROM jobs WHERE state = 'submitting' AND provider = ? LIMIT 1"

SCHEMA_VERSION = "SELECT MAX(version) FROM schema_version"

# events ----------------------------------------------------------------------

INSERT_EVENT = """
    INSERT INTO events (type, job_id, created_at, body) VALUES (?, ?, ?, ?) RETURNING seq
"""


def fan_out(dialect: Dialect) -> str:
    """One outbound delivery of a new event per live subscription that wants it:
    parameters (seq, job id, now, now, job id, type)."""
    wanted = dialect.json_array_has("s.types", "CAST(? AS TEXT)")
    return f"""
        INSERT INTO outbound (event_seq, subscription_id, job_id, status, next_attempt_at,
                              created_at)
        SELECT CAST(? AS BIGINT), s.id, CAST(? AS TEXT), 'pending',
               CAST(? AS DOUBLE PRECISION), CAST(? AS DOUBLE PRECISION)
        FROM subscriptions s
        WHERE s.disabled_at IS NULL
          AND (s.job_id IS NULL OR s.job_id = CAST(? AS TEXT))
          AND (s.types IS NULL OR {wanted})
    """


# Due jobs to lease, in due order: parameters (now, *DUE, now, limit).
PICK_DUE = f"SELECT id FROM jobs WHERE {DUE_UNLEASED} ORDER BY next_check_at LIMIT ?"
