"""The SQL store: every shared verb, once, over the connector seam (``connector.py``).

``SQLiteStore`` and ``PostgresStore`` are this plus their connection primitives,
their migrations, and the few verbs whose concurrency is theirs: storing a
callback, and leasing due jobs and outbound deliveries.
"""

from __future__ import annotations

from orchestrator.store.sql_budgets import SqlBudgets
from orchestrator.store.sql_inbox import SqlInbox
from orchestrator.store.sql_jobs import SqlJobs
from orchestrator.store.sql_outbox import SqlOutbox
from orchestrator.store.sql_routing import SqlRouting


class SqlStore(SqlJobs, SqlInbox, SqlOutbox, SqlBudgets, SqlRouting):
    """The verbs of ``protocol.Store`` written once; a connector subclass adds the rest."""
