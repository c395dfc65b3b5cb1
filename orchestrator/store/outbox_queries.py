"""The statements of the event outbox (events, subscriptions, outbound deliveries),
written once for both databases (``?`` placeholders; see ``dialect.py``)."""

from __future__ import annotations

from orchestrator.store.dialect import Dialect


def list_events(clause: str) -> str:
    return f"SELECT * FROM events {clause} ORDER BY seq LIMIT ?"


EVENT_BY_SEQ = "SELECT * FROM events WHERE seq = ?"
LAST_EVENT_SEQ = "SELECT MAX(seq) FROM events"

# subscriptions ---------------------------------------------------------------

INSERT_SUBSCRIPTION = """
    INSERT INTO subscriptions (id, url, types, job_id, secrets, created_at)
    VALUES (?, ?, ?, ?, ?, ?)
"""
SUBSCRIPTION_BY_ID = "SELECT * FROM subscriptions WHERE id = ?"
JOB_SUBSCRIPTION = "SELECT * FROM subscriptions WHERE job_id = ? ORDER BY created_at, id LIMIT 1"


def list_subscriptions(*, include_job_hooks: bool) -> str:
    clause = "" if include_job_hooks else "WHERE job_id IS NULL"
    return f"SELECT * FROM subscriptions {clause} ORDER BY created_at, id"


# Deleting a subscription, in this order, in one transaction.
CANCEL_PENDING = """
    UPDATE outbound SET status = 'cancelled', next_attempt_at = NULL
    WHERE subscription_id = ? AND status = 'pending'
"""
DELETE_ATTEMPTS = """
    DELETE FROM outbound_attempts
    WHERE outbound_id IN (SELECT id FROM outbound WHERE subscription_id = ?)
"""
DELETE_OUTBOUND = "DELETE FROM outbound WHERE subscription_id = ?"
DELETE_SUBSCRIPTION = "DELETE FROM subscriptions WHERE id = ?"

SET_SECRETS = "UPDATE subscriptions SET secrets = ? WHERE id = ?"
ENABLE = """
    UPDATE subscriptions SET disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0
    WHERE id = ?
"""

# outbound deliveries -----------------------------------------------------------

# Due deliveries (alias ``o``, subscription ``s``) whose earlier events (same
# subscription and job) are settled, and none of whose job's deliveries is in
# flight: parameters (now, now, now).
READY = """
    o.status = 'pending' AND o.next_attempt_at <= ?
    AND (o.lease_until IS NULL OR o.lease_until <= ?)
    AND s.disabled_at IS NULL
    AND NOT EXISTS (
        SELECT 1 FROM outbound p
        WHERE p.subscription_id = o.subscription_id AND p.job_id = o.job_id
          AND p.id <> o.id AND p.status = 'pending'
          AND (p.event_seq < o.event_seq OR p.lease_until > ?))
"""
READY_ORDER = "o.next_attempt_at, o.event_seq"

# What a leased delivery is sent with, from ``o`` (outbound), ``e`` and ``s``.
TASK_COLUMNS = """
    o.id AS o_id, o.attempts AS o_attempts,
    e.seq AS e_seq, e.type AS e_type, e.job_id AS e_job_id,
    e.created_at AS e_created_at, e.body AS e_body, s.*
"""


def next_outbound_due(dialect: Dialect) -> str:
    """When ``lease_outbound`` may next hand something out. A delivery behind an
    earlier pending one of its job counts only through that one; one whose job
    has a delivery in flight, no sooner than that lease runs out."""
    in_flight = """COALESCE(
        (SELECT MAX(f.lease_until) FROM outbound f
         WHERE f.subscription_id = o.subscription_id AND f.job_id = o.job_id
           AND f.status = 'pending'), 0)"""
    return f"""
        SELECT MIN({dialect.greatest("o.next_attempt_at", in_flight)})
        FROM outbound o JOIN subscriptions s ON s.id = o.subscription_id
        WHERE o.status = 'pending' AND o.next_attempt_at IS NOT NULL
          AND s.disabled_at IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM outbound p
              WHERE p.subscription_id = o.subscription_id AND p.job_id = o.job_id
                AND p.event_seq < o.event_seq AND p.status = 'pending')
    """


OLDEST_PENDING = """
    SELECT MIN(o.created_at) FROM outbound o JOIN subscriptions s ON s.id = o.subscription_id
    WHERE o.status = 'pending' AND s.disabled_at IS NULL
"""

INSERT_ATTEMPT = """
    INSERT INTO outbound_attempts (outbound_id, at, status_code, error, duration_ms)
    VALUES (?, ?, ?, ?, ?)
"""
AFTER_ATTEMPT = """
    UPDATE outbound SET status = ?, attempts = attempts + 1, lease_until = NULL,
           next_attempt_at = ?, last_status = ?, last_error = ?, delivered_at = ?
    WHERE id = ?
"""
SUBSCRIPTION_OK = "UPDATE subscriptions SET consecutive_failures = 0 WHERE id = ?"
# One more failure in a row; at the limit (parameters: limit, now, limit, id) the
# subscription is disabled, once.
SUBSCRIPTION_FAILED = """
    UPDATE subscriptions SET consecutive_failures = consecutive_failures + 1,
           disabled_at = CASE WHEN consecutive_failures + 1 >= CAST(? AS INTEGER)
                              AND disabled_at IS NULL THEN CAST(? AS DOUBLE PRECISION)
                              ELSE disabled_at END,
           disabled_reason = CASE WHEN consecutive_failures + 1 >= CAST(? AS INTEGER)
                              AND disabled_at IS NULL
                              THEN 'too many failed deliveries in a row'
                              ELSE disabled_reason END
    WHERE id = ?
"""

# An event again, to one subscription: parameters (now, now, seq, subscription id).
REDELIVER_TO = """
    INSERT INTO outbound (event_seq, subscription_id, job_id, status, next_attempt_at,
                          created_at)
    SELECT e.seq, s.id, e.job_id, 'pending', CAST(? AS DOUBLE PRECISION),
           CAST(? AS DOUBLE PRECISION)
    FROM events e, subscriptions s
    WHERE e.seq = ? AND s.id = ?
"""
# An event again, to every subscription it went to: parameters (now, now, seq).
REDELIVER_ALL = """
    INSERT INTO outbound (event_seq, subscription_id, job_id, status, next_attempt_at,
                          created_at)
    SELECT DISTINCT event_seq, subscription_id, job_id, 'pending',
           CAST(? AS DOUBLE PRECISION), CAST(? AS DOUBLE PRECISION)
    FROM outbound WHERE event_seq = ?
"""


def list_outbound(clause: str) -> str:
    return f"""
        SELECT o.*, e.type AS event_type FROM outbound o
        JOIN events e ON e.seq = o.event_seq {clause}
        ORDER BY o.id DESC LIMIT ?
    """


ATTEMPTS = "SELECT * FROM outbound_attempts WHERE outbound_id = ? ORDER BY id"


def pick_ready(columns: str) -> str:
    """Ready deliveries to lease, in order: parameters (now, now, now, limit)."""
    return f"""
        SELECT {columns} FROM outbound o
        JOIN events e ON e.seq = o.event_seq
        JOIN subscriptions s ON s.id = o.subscription_id
        WHERE {READY}
        ORDER BY {READY_ORDER} LIMIT ?
    """
