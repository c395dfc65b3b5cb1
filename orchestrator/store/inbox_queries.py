"""The callback inbox's statements, written once for both stores.

Placeholders are ``?``; a connector turns them into its database's own (see
``dialect.py``). Each statement is one SQL statement, so it reads one snapshot
of the database in either store.
"""

from __future__ import annotations

from typing import Any

from orchestrator.domain.states import SUBMIT_PENDING_STATES
from orchestrator.store.protocol import DeliveryMark
from orchestrator.store.rows import DELIVERY_COLUMNS, RECEIVED_COLUMNS

# Which job a callback names by its provider job id, and, in the same snapshot,
# whether a submit call to that provider is in flight (a job in ``submitting``),
# whose answer may still bring the id.
MATCH_CALLBACK = """
    SELECT j.*, EXISTS (
               SELECT 1 FROM jobs s WHERE s.provider = ? AND s.state = 'submitting'
           ) AS submit_in_flight
    FROM (SELECT 1 AS probe) AS one
    LEFT JOIN jobs j ON j.provider = ? AND j.provider_job_id = ?
"""

# A delivery's outcome. A delivery left pending by it waits for its job's submit
# answer: it has been looked at, so the inbox loop does not pick it up again.
MARK_DELIVERY = """
    UPDATE deliveries SET status = ?, processed_at = ?,
           job_id = COALESCE(?, job_id),
           provider_job_id = COALESCE(?, provider_job_id), error = ?
    WHERE id = ?
"""


# Deliveries left waiting for a submit answer whose job has that answer now (it
# left ``queued``/``submitting``) yet are still pending: the process that stored
# the answer died before it applied them. The inbox loop picks them up again.
STRANDED_WAITING = """
    SELECT d.* FROM deliveries d
    WHERE d.status = 'pending' AND d.processed_at IS NOT NULL
      AND EXISTS (
          SELECT 1 FROM jobs j
          WHERE (j.id = d.claimed_job_id OR j.id = d.job_id
                 OR (j.provider = d.provider AND j.provider_job_id = d.provider_job_id))
            AND j.state NOT IN (?, ?)
      )
    ORDER BY d.received_at, d.id
    LIMIT ?
"""


def stranded_params(limit: int) -> tuple[Any, ...]:
    return (*(state.value for state in SUBMIT_PENDING_STATES), limit)


def match_params(provider: str, provider_job_id: str) -> tuple[Any, ...]:
    return (provider, provider, provider_job_id)


def mark_params(mark: DeliveryMark) -> tuple[Any, ...]:
    return (
        mark.status.value,
        mark.at.timestamp(),
        mark.job_id,
        mark.provider_job_id,
        mark.error,
        mark.delivery_id,
    )


DELIVERY_BY_ID = "SELECT * FROM deliveries WHERE id = ?"

# Stored and not looked at yet, oldest first (ties in the order they were written).
PENDING = """
    SELECT * FROM deliveries WHERE status = 'pending' AND processed_at IS NULL
    ORDER BY received_at, id LIMIT ?
"""

# Deliveries waiting for one job: claimed by it, or naming its provider job id.
WAITING_FOR = """
    SELECT * FROM deliveries WHERE status = 'pending'
    AND (claimed_job_id = ? OR (provider = ? AND provider_job_id = ?))
    ORDER BY received_at, id
"""


# Keyset pagination: the deliveries after the one named, in the list's order (an
# unknown id compares as NULL: an empty page).
AFTER_DELIVERY = "(received_at, id) < (SELECT a.received_at, a.id FROM deliveries a WHERE a.id = ?)"


def list_deliveries(clause: str) -> str:
    return f"SELECT * FROM deliveries {clause} ORDER BY received_at DESC, id DESC LIMIT ?"


REQUEUE = """
    UPDATE deliveries SET status = 'pending', processed_at = NULL, error = NULL,
           replays = replays + 1
    WHERE id = ?
"""

# Looked at, still claimed by no job of ours, and older than the wait allows.
EXPIRE_WAITING = """
    UPDATE deliveries SET status = 'unmatched', processed_at = ?,
           error = 'no job of ours claimed this callback'
    WHERE status = 'pending' AND job_id IS NULL AND claimed_job_id IS NULL
      AND processed_at IS NOT NULL AND received_at < ?
"""


def count_deliveries(clause: str) -> str:
    return f"SELECT COUNT(*) FROM deliveries {clause}"


# Is a delivery with this dedupe key stored already?
SEEN = "SELECT 1 FROM deliveries WHERE dedupe_key = ? LIMIT 1"

# One new delivery's row (``rows.delivery_values``).
INSERT_DELIVERIES = f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES "
INSERT_DELIVERY = INSERT_DELIVERIES + "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

# The append-only table of callbacks as acknowledged, and its filing into deliveries.
INSERT_RECEIVED = f"INSERT INTO received ({RECEIVED_COLUMNS}) VALUES "
RECEIVED_MARKS = "(?, ?, ?, ?, ?, ?, ?, ?)"
DELIVERY_MARKS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
OLDEST_RECEIVED = f"SELECT seq, {RECEIVED_COLUMNS} FROM received ORDER BY seq LIMIT ?"
RECEIVED_BY_ID = f"SELECT {RECEIVED_COLUMNS} FROM received WHERE id = ?"


def count_received(clause: str) -> str:
    """Acknowledged callbacks not filed among the deliveries yet."""
    return f"SELECT COUNT(*) FROM received {clause}"


# Rows per multi-row statement: below SQLite's oldest limit on bound parameters (999).
ROWS_PER_STATEMENT = 90


def insert_rows(head: str, marks: str, count: int) -> str:
    """``head`` followed by ``count`` rows of ``marks``: one multi-row INSERT."""
    return head + ",".join([marks] * count)


def seen_keys(count: int) -> str:
    """Which of ``count`` dedupe keys are stored among the deliveries already."""
    return f"SELECT DISTINCT dedupe_key FROM deliveries WHERE dedupe_key IN ({marks(count)})"


def forget_received(count: int) -> str:
    return f"DELETE FROM received WHERE seq IN ({marks(count)})"


def marks(count: int) -> str:
    return ", ".join("?" * count)
