"""The seam between the SQL store and a database: a few connection primitives.

The verbs (``sql_jobs.py``, ``sql_inbox.py``, ``sql_outbox.py``, ``sql_budgets.py``)
are written once over these; ``SQLiteStore`` and ``PostgresStore`` implement them
(procrastinate's connector). Statements use ``?`` placeholders: a connector
turns them into its own through its :class:`Dialect`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

from orchestrator.common.signals import Broadcast
from orchestrator.store.dialect import Dialect
from orchestrator.store.protocol import TransitionListener

# The unique constraints a verb handles itself; anything else is passed on.
Conflict = Literal["idempotency_key", "provider_job_id"]


class Row(Protocol):
    """A row whose columns are read by name or position (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str | int, /) -> Any: ...


class Tx(Protocol):
    """One open write transaction."""

    # Set when the transaction wrote something a follower of the event feed or
    # the outbound dispatcher waits for: ``events_written`` is told after commit.
    announce: bool

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the rows it touched."""
        ...

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


class Connector(ABC):
    """What a database gives the shared verbs: reads, writes, a transaction, and the
    few hooks where its concurrency differs (locks, announcing a commit)."""

    dialect: Dialect
    # Set whenever an event or outbound delivery is committed.
    events_written: Broadcast
    # Told of every committed transition: (job before, job after, cause).
    transition_listeners: list[TransitionListener]

    @abstractmethod
    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """One read in a statement of its own."""

    @abstractmethod
    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """One read in a statement of its own."""

    @abstractmethod
    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in a write transaction of its own; the rows it touched."""

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction; StoreUnavailable if it cannot commit. Integrity errors
        pass through for the verb to handle."""

    @abstractmethod
    def _conflict(self, exc: Exception) -> Conflict | None:
        """Which handled unique constraint ``exc`` violated, if it is such an error."""

    async def _lock_events(self, tx: Tx) -> None:
        """Called before an event is inserted or subscriptions change: where several
        writers run at once, hold them off until this transaction commits."""
        return None

    async def _lock_budget(self, tx: Tx, provider: str, kind: str) -> None:
        """Called before a budget decision: serialise the takers of one budget."""
        return None

    async def _lock_received(self, tx: Tx) -> None:
        """Called before acknowledged callbacks are filed: one filer at a time, so a
        duplicate is recognised whichever process files it."""
        return None

    async def _announce(self, tx: Tx) -> None:
        """This transaction wrote events or outbound deliveries: wake the followers
        once it commits (other processes too, where the database can tell them)."""
        tx.announce = True
