"""Typed seams over asyncpg (it ships no types) and its errors at the store's boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, Protocol, cast

import asyncpg  # type: ignore[import-untyped]

from orchestrator.store.dialect import numbered
from schemas.errors import StoreUnavailable

# Advisory lock keys, in the two-int key space: (namespace, key). The single
# bigint key space is left to whoever else shares the database.
LOCK_NS = 0x55505343  # "UPSC"
EVENTS_LOCK = 1  # held from an event insert to its commit: seq follows commit order
MIGRATE_LOCK = 2  # held while migrations run
RECEIVED_LOCK = 3  # held while acknowledged callbacks are filed among the deliveries
BUDGET_NS = 0x55505344  # (BUDGET_NS, hashtext(provider/kind))
DEDUPE_NS = 0x55505345  # (DEDUPE_NS, hashtext(dedupe_key))

EVENTS_CHANNEL = "upscale_events"


class Row(Protocol):
    """What the store reads from an asyncpg.Record."""

    def __getitem__(self, key: str | int, /) -> Any: ...


class Conn(Protocol):
    """The subset of asyncpg.Connection the store uses."""

    async def execute(self, query: str, *args: object) -> str: ...

    async def fetch(self, query: str, *args: object) -> list[Row]: ...

    async def fetchrow(self, query: str, *args: object) -> Row | None: ...

    async def fetchval(self, query: str, *args: object) -> Any: ...

    def transaction(self) -> AbstractAsyncContextManager[object]: ...


class ListenConn(Conn, Protocol):
    """A dedicated connection that listens on a channel."""

    async def add_listener(
        self, channel: str, callback: Callable[[object, int, str, str], None]
    ) -> None: ...

    async def remove_listener(
        self, channel: str, callback: Callable[[object, int, str, str], None]
    ) -> None: ...

    def add_termination_listener(self, callback: Callable[[object], None]) -> None: ...

    def is_closed(self) -> bool: ...

    async def close(self, *, timeout: float | None = None) -> None: ...  # noqa: ASYNC109


class Pool(Protocol):
    def acquire(self) -> AbstractAsyncContextManager[Conn]: ...

    async def close(self) -> None: ...

    def terminate(self) -> None: ...


class PgTx:
    """One open transaction on a pooled connection; statements take ``?`` placeholders."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.announce = False

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return affected(await self.conn.execute(numbered(sql), *params))

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await self.conn.fetchrow(numbered(sql), *params)

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.conn.fetch(numbered(sql), *params)


# Errors that mean "the database could not do it now": connection trouble and
# anything the server refused that is not a constraint the caller handles.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
IntegrityError: type[Exception] = asyncpg.IntegrityConstraintViolationError
UniqueViolation: type[Exception] = asyncpg.UniqueViolationError


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn driver and socket errors into StoreUnavailable; integrity errors pass."""
    try:
        yield
    except IntegrityError:
        raise
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"database {what} failed: {exc}") from exc


async def create_pool(dsn: str, *, min_size: int, max_size: int) -> Pool:
    with translated("connect"):
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    return cast(Pool, pool)


async def connect(dsn: str) -> ListenConn:
    with translated("connect"):
        conn = await asyncpg.connect(dsn)
    return cast(ListenConn, conn)


@asynccontextmanager
async def one_connection(dsn: str) -> AsyncIterator[Conn]:
    conn = await connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


def affected(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 3`` or ``INSERT 0 2``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
