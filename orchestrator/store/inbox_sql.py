"""The callback inbox's statements, written once for both stores.

Placeholders are ``?`` (SQLite's); the PostgreSQL store numbers them with
:func:`numbered`. Each statement is one SQL statement, so it reads one snapshot
of the database in either store.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator.states import SUBMIT_PENDING_STATES
from orchestrator.store.protocol import DeliveryMark

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


_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str) -> str:
    """The statement with PostgreSQL's placeholders: ``$1``, ``$2``, ... in order."""
    count = 0

    def next_number(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(next_number, sql)
