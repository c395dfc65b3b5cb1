"""PostgreSQL for the tests: a throwaway database per session, emptied per test.

The server is the one at ``UPSCALE_TEST_POSTGRES_DSN`` (by default the local
one CI starts, trust auth). When it cannot be reached the tests that need it
fail, unless ``UPSCALE_SKIP_POSTGRES=1`` says to skip them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

ADMIN_DSN = os.environ.get(
    "UPSCALE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
T = TypeVar("T")


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a loop of its own, away from the test's loop."""

    async def runner() -> T:
        return await factory()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, runner()).result()


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def with_search_path(dsn: str, schema: str) -> str:
    """The same database with ``schema`` as the only schema on the search path."""
    parts = urlsplit(dsn)
    query = f"{parts.query}&search_path={schema}" if parts.query else f"search_path={schema}"
    return urlunsplit(parts._replace(query=query))


def unreachable(exc: BaseException) -> None:
    message = (
        f"PostgreSQL is not reachable at {ADMIN_DSN} ({type(exc).__name__}: {exc}). "
        "Start it (CI: pg_ctlcluster <version> main start), point "
        "UPSCALE_TEST_POSTGRES_DSN at a server, or set UPSCALE_SKIP_POSTGRES=1 "
        "to skip the PostgreSQL store tests."
    )
    if os.environ.get("UPSCALE_SKIP_POSTGRES") == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


async def create_database() -> str:
    name = f"upscale_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(ADMIN_DSN, name)


async def drop_database(dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def empty_tables(dsn: str) -> None:
    """Every table but ``schema_version`` emptied, identities restarted at 1."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        names = await conn.fetch(
            "SELECT tablename FROM pg_tables "
            "WHERE schemaname = current_schema() AND tablename <> 'schema_version'"
        )
        if names:
            tables = ", ".join(f'"{r["tablename"]}"' for r in names)
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def create_schema(dsn: str) -> str:
    """A new, empty schema in the database; the DSN that works in it."""
    schema = f"s_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    return with_search_path(dsn, schema)


async def migrated_and_empty(dsn: str) -> str:
    """The database migrated to this release, every table emptied: ready for one test."""
    from orchestrator.store.postgres import PostgresStore

    await PostgresStore(dsn).migrate()
    await empty_tables(dsn)
    return dsn
